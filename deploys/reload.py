"""Only activation: check the live configuration with Postfix, then reload it
(or start it if stopped) through the host's own init, and probe STARTTLS.

    pyinfra inventories/sandbox.py deploys/reload.py --limit GROUP
"""

from postfix_pfs.deploys import reload

reload()
