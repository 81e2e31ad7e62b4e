"""Verify: what a STARTTLS client actually gets from each host, and whether it is right.

The handshakes are made on the host by `tls_check.sh` (the host's own openssl,
against its own listener), once in the facts command (the state before the
run: drift shows up) and once by activate.sh after a switch. This module reads
their output and judges it: a host fails when a handshake has no forward
secrecy or serves a certificate other than the deployed one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from . import pki

SCRIPT = Path(__file__).with_name("tls_check.sh").read_text()


@dataclass
class Handshake:
    kind: str  # the key type asked for: rsa or ecdsa
    proto: str = ""
    cipher: str = ""
    group: str = ""
    fingerprint: str = ""  # sha256 of the served certificate (DER)
    subject: str = ""
    names: list[str] = field(default_factory=list)
    expires: str = ""
    key_type: str = ""
    tlsa: str = ""  # DANE 3 1 1: sha256 of the served public key
    error: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.proto)

    @property
    def forward_secret(self) -> bool:
        # TLS 1.3 key exchange is always ephemeral; before it only with a temp key
        return self.proto == "TLSv1.3" or bool(self.group)

    def to_dict(self) -> dict:
        return {**asdict(self), "forward_secret": self.forward_secret}


def describe(cert: x509.Certificate) -> dict:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key_type = f"RSA {key.key_size}"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key_type = f"ECDSA {key.curve.name}"
    else:
        key_type = type(key).__name__
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    return {
        "fingerprint": pki.cert_sha256(cert),
        "subject": cert.subject.rfc4514_string(),
        "names": names,
        "expires": f"{cert.not_valid_after_utc:%Y-%m-%d}",
        "key_type": key_type,
        "tlsa": pki.spki_sha256(cert),
    }


def parse(lines: list[str]) -> dict[str, Handshake]:
    """tls_check.sh output (possibly inside other output) -> handshakes by key type."""
    out: dict[str, Handshake] = {}
    cur: Handshake | None = None
    pem: list[str] = []

    def flush():
        if cur is not None and pem:
            cert = x509.load_pem_x509_certificate("\n".join(pem).encode())
            for k, v in describe(cert).items():
                setattr(cur, k, v)

    for line in lines:
        if line.startswith("@tls "):
            flush()
            cur, pem = Handshake(line[5:].strip()), []
            out[cur.kind] = cur
        elif cur is None:
            continue
        elif line.startswith(("proto=", "cipher=", "group=", "error=")):
            key, _, value = line.partition("=")
            setattr(cur, key, value.strip())
        elif line.startswith("-----BEGIN CERTIFICATE-----") or pem:
            if not pem or not pem[-1].startswith("-----END CERTIFICATE-----"):
                pem.append(line)
    flush()
    return out


def judge(handshakes: dict[str, Handshake], expected: dict[str, str]) -> list[str]:
    """Problems with what is served; expected maps key type -> certificate fingerprint."""
    problems = []
    if not any(h.ok for h in handshakes.values()):
        errors = "; ".join(h.error for h in handshakes.values() if h.error)
        return [f"no STARTTLS handshake succeeded{': ' + errors if errors else ''}"]
    for h in handshakes.values():
        if h.ok and not h.forward_secret:
            problems.append(f"{h.kind}: {h.proto} {h.cipher} has no forward secrecy")
    served = {h.fingerprint for h in handshakes.values() if h.ok}
    for kind, fp in expected.items():
        h = handshakes.get(kind)
        if h is None or not h.ok:
            problems.append(f"{kind}: the deployed {kind} certificate is not served")
        elif h.fingerprint != fp and fp not in served:
            problems.append(
                f"{kind}: serves certificate {h.fingerprint[:16]}, not the deployed {fp[:16]}"
            )
    return problems
