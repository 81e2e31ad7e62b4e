"""postfix-pfs: put every Postfix host in the inventory on TLS with forward secrecy.

    pyinfra inventories/sandbox.py deploy.py          # converge (asks before changing)
    pyinfra inventories/sandbox.py deploy.py --dry    # show what would change, touch nothing

Per host (postfix_pfs.deploys.postfix_tls, see operations/pipeline.py):
  1. settings   validate every host's inventory data (operations/settings.py)
  2. facts      one remote command reads Postfix, files, init (operations/facts.py)
  3. plan       pure decisions: what the host keeps (operations/adopt.py), certificate,
                main.cf, master.cf, activation (operations/plan.py)
  4. material   keys/certs made or reused on the controller (operations/pki.py)
  5. stage      changed files uploaded to a root-only staging dir (operations/host_ops.py)
  6. activate   Postfix checks them, switch by rename, reload/restart, STARTTLS probe,
                roll back on failure (operations/activate.sh)
Single stages: deploys/certificates.py, deploys/tlsmgr.py, deploys/reload.py.
In your own deploy file: see operations/deploys.py (README: Use it in your own deploy).
"""

from postfix_pfs.deploys import postfix_tls

postfix_tls()
