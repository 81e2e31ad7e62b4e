"""Only certificates: reuse or generate keys/certs, upload them, and switch main.cf to them.

main.cf is rendered whole (it names the files), so other main.cf drift is fixed too.

    pyinfra inventories/sandbox.py deploys/certificates.py --limit GROUP
"""

from postfix_pfs.deploys import certificates

certificates()
