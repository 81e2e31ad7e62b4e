"""Package data of postfix_pfs (installed as postfix_pfs.templates): main.cf.j2 and the
RFC 7919 DH groups in dh/. Read with importlib.resources; no code here."""
