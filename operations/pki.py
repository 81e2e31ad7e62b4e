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
import secrets
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

KINDS = ("rsa", "ecdsa")  # served together: RSA for old clients, ECDSA for speed


class StoreError(Exception):
    pass


def spki_der(key_or_cert) -> bytes:
    """DER SubjectPublicKeyInfo of a certificate's or a key's public key."""
    pub = key_or_cert.public_key()
    return pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def spki_sha256(cert: x509.Certificate) -> str:
    """sha256 of the public key: the DANE TLSA 3 1 1 digest."""
    return hashlib.sha256(spki_der(cert)).hexdigest()


def cert_sha256(cert: x509.Certificate) -> str:
    """sha256 of the certificate (DER): what the verify step compares."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class CA:
    """The fleet CA: signs host certificates in tls_cert_source = ca."""

    key: ec.EllipticCurvePrivateKey = field(repr=False)
    cert: x509.Certificate
    generated_now: bool = False  # made by this run, not yet in the store

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Material:
    """One key and its certificate (chain), as PEM bytes."""

    kind: str
    key_pem: bytes = field(repr=False)
    cert_pem: bytes
    generated_now: bool = False
    replaces: bytes = field(default=b"", repr=False)  # the store's certificate it replaces

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def fingerprint(self) -> str:
        return cert_sha256(self.cert)

    @property
    def spki_sha256(self) -> str:
        """TLSA 3 1 1 digest of the public key."""
        return spki_sha256(self.cert)

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


def generate(
    kind: str,
    names: list[str],
    days: int,
    now: dt.datetime,
    ca: CA | None = None,
    key_pem: bytes = b"",
) -> Material:
    """A new key (or the given one, `key_pem`: a DANE next key) and a certificate on it."""
    if key_pem:
        key = serialization.load_pem_private_key(key_pem, password=None)
    elif kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "ecdsa":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(kind)
    sig = hashes.SHA256()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject if ca else subject)
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
        .sign(ca.key if ca else key, sig)
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
    ca: CA | None = None,
) -> tuple[list[Material], list[str]]:
    """Material for `host`, reused from the store or made anew; and notes on what happened.
    With `ca`, certificates are signed by it (and self-signed ones are replaced)."""
    check_store(store)
    with _host_lock(store, host, dry):
        return _ensure(store, host, names, days, renew_days, now, dry, ca)


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


def _ensure(store, host, names, days, renew_days, now, dry, ca):
    hdir = store / host
    out, notes = [], []
    for kind in KINDS:
        key_path, cert_path = hdir / f"{kind}.key", hdir / f"{kind}.crt"
        reason = "none in the store"
        if key_path.exists() and cert_path.exists():
            mat = Material(kind, key_path.read_bytes(), cert_path.read_bytes())
            reason = needs_renewal(mat.cert, names, now, renew_days)
            issuer = ca.cert.subject if ca else mat.cert.subject
            if reason is None and mat.cert.issuer != issuer:
                reason = "signed by the fleet CA now" if ca else "no longer signed by the fleet CA"
            if reason is None:
                out.append(mat)
                continue
        old = cert_path.read_bytes() if cert_path.exists() else b""
        mat = replace(generate(kind, names, days, now, ca), replaces=old)
        notes.append(f"{kind} certificate {'to be ' if dry else ''}generated ({reason})")
        if not dry:
            store.mkdir(mode=0o700, parents=True, exist_ok=True)
            hdir.mkdir(mode=0o700, exist_ok=True)
            _write_private(key_path, mat.key_pem)
            _write_private(cert_path, mat.cert_pem)
        out.append(mat)
    return out, notes


def stored(store: Path, host: str) -> bool:
    """Does the store hold any key of this host?"""
    return any((store / host / f"{kind}.key").exists() for kind in KINDS)


def save(store: Path, host: str, material: list[Material]) -> None:
    """Write newly made material to the store (at execution time). Refuses when another
    run stored other material for this host since this run read the store."""
    new = [m for m in material if m.generated_now]
    if not new:
        return
    check_store(store)
    with _host_lock(store, host, dry=False):
        hdir = store / host
        hdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for m in new:
            cert_path = hdir / f"{m.kind}.crt"
            current = cert_path.read_bytes() if cert_path.exists() else b""
            if current not in (m.replaces, m.cert_pem):
                raise StoreError(
                    f"{host}: another deploy stored a new {m.kind} key in {store} meanwhile; "
                    "nothing was uploaded, run the deploy again"
                )
            _write_private(hdir / f"{m.kind}.key", m.key_pem)
            _write_private(cert_path, m.cert_pem)


def save_ca(store: Path, ca: CA) -> None:
    """Write a fleet CA made by this run to the store, unless another run made one."""
    check_store(store)
    cdir = store / "_fleet-ca"
    with _host_lock(store, "_fleet-ca", dry=False):
        if (cdir / "ca.crt").exists():
            if (cdir / "ca.crt").read_bytes() != ca.cert_pem:
                raise StoreError(
                    f"another deploy created a fleet CA in {cdir} meanwhile; run the deploy again"
                )
            return
        cdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = ca.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(cdir / "ca.key", key)
        _write_private(cdir / "ca.crt", ca.cert_pem)


def ensure_ca(store: Path, now: dt.datetime, dry: bool) -> tuple[CA, list[str]]:
    """The inventory's fleet CA in the store (made once, 10 years, key 0600)."""
    check_store(store)
    cdir = store / "_fleet-ca"
    key_path, cert_path = cdir / "ca.key", cdir / "ca.crt"
    if key_path.exists() and cert_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        return CA(key, x509.load_pem_x509_certificate(cert_path.read_bytes())), []
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"postfix-pfs fleet CA {now:%Y-%m-%d}")]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    ca = CA(key, cert, generated_now=True)
    if not dry:
        save_ca(store, ca)
    return ca, [f"fleet CA {'to be ' if dry else ''}created in {cdir}"]


def chain_problem(certs: list[x509.Certificate], now: dt.datetime) -> str | None:
    """Leaf first, each certificate issued by the next one, leaf not expired."""
    if not certs:
        return "holds no certificate"
    for i in range(len(certs) - 1):
        if certs[i].issuer != certs[i + 1].subject:
            return f"chain order: certificate {i + 2} did not issue certificate {i + 1} (the leaf must come first, then its issuers)"
    if certs[0].not_valid_after_utc <= now:
        return f"expired on {certs[0].not_valid_after_utc:%Y-%m-%d}"
    return None


def load_files(cert_path: Path, key_path: Path, now: dt.datetime) -> Material:
    """Material from the controller's files (tls_cert_source = files), validated; StoreError says why not."""
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError:
        raise StoreError(f"{key_path}: no such file") from None
    except TypeError:
        raise StoreError(
            f"{key_path}: the key is passphrase-protected; Postfix needs it unencrypted"
        ) from None
    except ValueError as e:
        raise StoreError(f"{key_path}: not a PEM private key ({e})") from None
    try:
        certs = x509.load_pem_x509_certificates(cert_path.read_bytes())
    except FileNotFoundError:
        raise StoreError(f"{cert_path}: no such file") from None
    except ValueError:
        raise StoreError(f"{cert_path}: holds no PEM certificate") from None
    pub = spki_der(key)
    if spki_der(certs[0]) != pub:
        where = next((i for i, c in enumerate(certs) if spki_der(c) == pub), None)
        if where is None:
            raise StoreError(f"{key_path} does not match the certificate in {cert_path}")
        raise StoreError(
            f"{cert_path}: chain order: the certificate of the key is number {where + 1}; the leaf must come first"
        )
    if problem := chain_problem(certs, now):
        raise StoreError(f"{cert_path}: {problem}")
    kind = "rsa" if isinstance(key, rsa.RSAPrivateKey) else "ecdsa"
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cert_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    return Material(kind, key_pem, cert_pem)


def digest_key(store: Path, host: str) -> tuple[bytes, bool]:
    """The host's digest key (`<store>/<host>/digest.key`, 0600) and whether it is new:
    the facts command digests secret files with it, so no output ever holds a plain,
    guessable digest of a key or a password table. A new one is made in memory and
    written only when the run executes (save_digest_key)."""
    check_store(store)
    path = store / host / "digest.key"
    if path.exists():
        return path.read_bytes(), False
    return secrets.token_hex(32).encode() + b"\n", True


def save_digest_key(store: Path, host: str, key: bytes) -> None:
    """At execution: keep a new digest key, unless another run stored one meanwhile (then
    the next run finds the host's key different and uploads the secret files again)."""
    check_store(store)
    with _host_lock(store, host, dry=False):
        path = store / host / "digest.key"
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_private(path, key)
