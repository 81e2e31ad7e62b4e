"""Keys and certificates made on the controller with `cryptography`.

The controller-side store keeps one directory per host (0700, files 0600), so
a re-run reuses what it made before and uploads nothing. A store that group or
others can read is refused. In a dry run nothing is written: material is made
in memory only to show what would be deployed.

Nothing in this module prints or logs key bytes; `Material.__repr__` hides them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

KINDS = ("rsa", "ecdsa")  # served together: RSA for old clients, ECDSA for speed


class StoreError(Exception):
    pass


@dataclass(frozen=True)
class Material:
    """One key and its certificate (chain), as PEM bytes."""

    kind: str
    key_pem: bytes = field(repr=False)
    cert_pem: bytes
    generated_now: bool = False

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.cert.public_bytes(serialization.Encoding.DER)).hexdigest()

    @property
    def spki_sha256(self) -> str:
        """TLSA 3 1 1 digest of the public key."""
        spki = self.cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(spki).hexdigest()

    @property
    def chain_pem(self) -> bytes:
        """Postfix 3.4+ chain file: the key first, then its certificate chain."""
        return self.key_pem + self.cert_pem


def cert_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        return [a.value.lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def needs_renewal(
    cert: x509.Certificate, names: list[str], now: dt.datetime, renew_days: int
) -> str | None:
    """Why this certificate must be replaced, or None to keep it."""
    if cert.not_valid_after_utc - dt.timedelta(days=renew_days) <= now:
        return f"expires {cert.not_valid_after_utc:%Y-%m-%d}, inside the {renew_days}-day renewal window"
    missing = [n for n in names if n.lower() not in cert_names(cert)]
    if missing:
        return f"does not name {', '.join(missing)}"
    return None


def generate(kind: str, names: list[str], days: int, now: dt.datetime) -> Material:
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sig = hashes.SHA256()
    elif kind == "ecdsa":
        key = ec.generate_private_key(ec.SECP256R1())
        sig = hashes.SHA256()
    else:
        raise ValueError(kind)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, sig)
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return Material(
        kind, key_pem, cert.public_bytes(serialization.Encoding.PEM), generated_now=True
    )


def check_store(root: Path) -> None:
    if root.exists():
        mode = stat.S_IMODE(root.stat().st_mode)
        if mode & 0o077:
            raise StoreError(
                f"key store {root} is readable by others (mode {mode:o}); chmod 700 it"
            )
        if root.stat().st_uid != os.geteuid():
            raise StoreError(f"key store {root} belongs to another user")


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def ensure(
    store: Path,
    host: str,
    names: list[str],
    days: int,
    renew_days: int,
    now: dt.datetime,
    dry: bool,
) -> tuple[list[Material], list[str]]:
    """Material for `host`, reused from the store or made anew; and notes on what happened."""
    check_store(store)
    with _host_lock(store, host, dry):
        return _ensure(store, host, names, days, renew_days, now, dry)


@contextlib.contextmanager
def _host_lock(store: Path, host: str, dry: bool):
    """Two runs on one controller agree on one key per host (dry runs write nothing)."""
    if dry:
        yield
        return
    store.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(store / f".{host}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _ensure(store, host, names, days, renew_days, now, dry):
    hdir = store / host
    out, notes = [], []
    for kind in KINDS:
        key_path, cert_path = hdir / f"{kind}.key", hdir / f"{kind}.crt"
        reason = "none in the store"
        if key_path.exists() and cert_path.exists():
            mat = Material(kind, key_path.read_bytes(), cert_path.read_bytes())
            reason = needs_renewal(mat.cert, names, now, renew_days)
            if reason is None:
                out.append(mat)
                continue
        mat = generate(kind, names, days, now)
        notes.append(f"{kind} certificate {'would be ' if dry else ''}generated ({reason})")
        if not dry:
            store.mkdir(mode=0o700, parents=True, exist_ok=True)
            hdir.mkdir(mode=0o700, exist_ok=True)
            _write_private(key_path, mat.key_pem)
            _write_private(cert_path, mat.cert_pem)
        out.append(mat)
    return out, notes
