"""Only master.cf: make tlsmgr active exactly once, then restart Postfix if it changed.

pyinfra inventories/sandbox.py deploys/tlsmgr.py --limit GROUP
"""

from postfix_pfs.deploys import tlsmgr

tlsmgr()
