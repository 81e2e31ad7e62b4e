"""Only look: change nothing on any host. Prove the TLS policy now on every listener,
judge the served certificates (days left) and drift of the managed files, print one
line per host, write the JSON report, exit non-zero when a host fails.

    pyinfra -y inventories/sandbox.py deploys/check.py [--limit GROUP]
"""

from postfix_pfs.deploys import check

check()
