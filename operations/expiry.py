"""Certificate expiry, whatever the source: days left, warnings, failures.

Pure. Every certificate the deploy serves is judged: inside `tls_renew_days` a
warning (days left) in the plan, the summary and the report; expired, a
problem that fails the host. Generated, fleet-CA and ACME material is renewed
inside the window by pki/acme; reused certificates (auto, existing, files) are
the admin's, so the warning is what tells them to renew.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

RENEWED_HERE = ("generate", "ca", "acme")  # sources whose material this deploy renews


def kind_of(cert: x509.Certificate) -> str:
    return "rsa" if isinstance(cert.public_key(), rsa.RSAPublicKey) else "ecdsa"


def days_left(cert: x509.Certificate, now: dt.datetime) -> int:
    """Whole days until the certificate expires (negative: expired that long ago)."""
    return (cert.not_valid_after_utc - now).days


def served_certs(cert_files: dict[str, str], pems: dict[str, str]) -> dict[str, x509.Certificate]:
    """kind -> leaf certificate of the files a plan serves (smtpd_tls_* param -> paths),
    pems: path -> the CERTIFICATE blocks read on the host."""
    out = {}
    for param, paths in cert_files.items():
        if "key_file" in param:
            continue
        for path in (p.strip() for p in paths.split(",")):
            if pems.get(path):
                cert = x509.load_pem_x509_certificate(pems[path].encode())
                out[kind_of(cert)] = cert
    return out


def judge(
    source: str, certs: dict[str, x509.Certificate], now: dt.datetime, renew_days: int
) -> tuple[dict[str, int], list[str], list[str]]:
    """(days left per kind, warnings, problems) of the certificates served."""
    days = {kind: days_left(c, now) for kind, c in sorted(certs.items())}
    warnings, problems = [], []
    for kind, left in days.items():
        expires = f"{certs[kind].not_valid_after_utc:%Y-%m-%d}"
        if left < 0:
            problems.append(f"the {kind} certificate expired on {expires}")
        elif left <= renew_days and source not in RENEWED_HERE:
            warnings.append(
                f"warning: the {kind} certificate ({source}) expires in {left} days on {expires}"
                f" (inside tls_renew_days = {renew_days}): renew it"
            )
    return days, warnings, problems
