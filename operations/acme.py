"""Certificates from an ACME v2 (RFC 8555) CA: tls_cert_source = acme.

The client is certbot's `acme` library on the controller, like every other key
source: keys are made and kept on the controller, hosts get no new software and
open no port. The challenge is DNS-01, answered by a hook command the admin
names (`acme_dns_hook`), run on the controller as

    HOOK... add    DOMAIN _acme-challenge.DOMAIN. VALUE
    HOOK... remove DOMAIN _acme-challenge.DOMAIN. VALUE

`add` must return once the TXT record is visible to the CA's resolvers.

Two phases, because pyinfra prepares every host before it executes anything and
prepare-only modes (--dry, a declined prompt, ...) must contact no CA:
- prepare (`prepare`): no network. The store's ACME certificates are reused
  while they name the host and lie outside tls_renew_days; for each key type
  that needs one, a new key is made in memory. Its public key is known, so the
  plan can show the new DANE TLSA digest; a placeholder self-signed certificate
  on it stands in for the certificate the CA will issue.
- execution (`issue`, from a python.call in pipeline.py): orders the
  certificates, saves keys and chains to the store (`save`), and only then is
  the host planned with the issued material, staged and activated. A failure
  changes nothing on the host.

The account key lives in the store (<pfs_store>/_acme/<directory>/account.key,
0600), is created at execution only, and never printed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import pki

CHALLENGES = ("dns-01",)
HOOK_TIMEOUT = 300  # seconds for one hook call (it may wait for DNS propagation)
ORDER_TIMEOUT = 180  # seconds for the CA to validate and issue one order
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
MARKER = "acme.json"  # per host in the store: which directory issued which certificate


class AcmeError(Exception):
    """The CA refused or could not be reached; the message says why (no secrets)."""


# --- settings -----------------------------------------------------------------------


def is_directory_url(v: str) -> str | None:
    if v == "" or re.fullmatch(r"https://[A-Za-z0-9.\-\[\]:]+(/\S*)?", v):
        return None
    return f"{v!r} is not an https:// ACME directory URL"


def is_email(v: str) -> str | None:
    if v == "" or re.fullmatch(r"[^@\s]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", v):
        return None
    return f"{v!r} is not an e-mail address"


def settings_problems(host: str, values: dict, origins: dict) -> list[str]:
    """What tls_cert_source = acme needs besides its own keys' checks."""
    if values.get("tls_cert_source") != "acme":
        return []
    out = []
    if not values.get("acme_directory"):
        out.append(
            f"{host}: acme_directory: tls_cert_source = acme needs the CA's directory URL "
            f"(Let's Encrypt: {LETS_ENCRYPT}, its staging CA: {LETS_ENCRYPT_STAGING})"
        )
    if values.get("acme_challenge") == "dns-01" and not values.get("acme_dns_hook"):
        out.append(
            f"{host}: acme_dns_hook: the dns-01 challenge needs a hook command that publishes "
            "the TXT record (see README, Certificates from an ACME CA)"
        )
    return out


# --- prepare: no network ---------------------------------------------------------------


def _marker(store: Path, host: str) -> dict:
    try:
        return json.loads((store / host / MARKER).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _stored(store: Path, host: str, kind: str) -> pki.Material | None:
    key, crt = store / host / f"{kind}.key", store / host / f"{kind}.crt"
    if key.exists() and crt.exists():
        return pki.Material(kind, key.read_bytes(), crt.read_bytes())
    return None


def prepare(
    store: Path, host: str, names: list[str], renew_days: int, directory: str, now: dt.datetime
) -> tuple[list[pki.Material], list[str]]:
    """The store's ACME material where it still serves, else a new key per key type to order
    at execution (generated_now=True, with a placeholder certificate); and why each is new."""
    pki.check_store(store)
    marker = _marker(store, host)
    out, notes = [], []
    for kind in pki.KINDS:
        old = _stored(store, host, kind)
        reason = "none in the store"
        if old is not None:
            reason = pki.needs_renewal(old.cert, names, now, renew_days)
            if marker.get("directory") != directory or marker.get(kind) != old.fingerprint:
                reason = f"the store's certificate was not issued through {directory}"
            if reason is None:
                out.append(old)
                continue
        placeholder = pki.generate(kind, names, 1, now)  # the key is the real one; the cert is not
        out.append(replace(placeholder, replaces=old.cert_pem if old else b""))
        notes.append(f"acme: {kind} certificate to be requested at execution ({reason})")
    return out, notes


def pending(material: list[pki.Material]) -> list[pki.Material]:
    """Material whose certificate the CA has yet to issue (see prepare)."""
    return [m for m in material if m.generated_now]


def annotate(view: dict, material: list[pki.Material], names: list[str], directory: str) -> None:
    """Make the readable plan say what an ACME run will do: no placeholder fingerprint shows."""
    waiting = pending(material)
    view["certificate"] = [  # from the store: the CA issued it on an earlier run
        "issued " + line[len("generated ") :] if line.startswith("generated ") else line
        for line in view["certificate"]
    ]
    if not waiting:
        return
    subst = {f"{m.kind}-{m.fingerprint[:12]}": f"{m.kind}-<issued>" for m in waiting}

    def fix(text: str) -> str:
        for old, new in subst.items():
            text = text.replace(old, new)
        return text

    for key, value in view.items():
        if isinstance(value, list):
            view[key] = [
                {k: fix(v) if isinstance(v, str) else v for k, v in item.items()}
                if isinstance(item, dict)
                else fix(item)
                if isinstance(item, str)
                else item
                for item in value
            ]
    kinds = ", ".join(m.kind for m in waiting)
    view["certificate"] = [
        f"acme: would request {kinds} for {', '.join(names)} from {directory} "
        "(dns-01 through acme_dns_hook, when the run executes)",
        *(
            line
            for line in view["certificate"]
            if not line.startswith(
                tuple(f"{verb} {m.kind}:" for verb in ("issued", "renewed") for m in waiting)
            )
        ),
    ]


# --- execution: the order -----------------------------------------------------------------

_ACCOUNTS: dict[tuple[str, str], object] = {}
_ACCOUNT_LOCK = threading.Lock()  # pyinfra runs hosts in greenlets (gevent-patched threading)


def _account_dir(store: Path, directory: str) -> Path:
    netloc = re.sub(r"[^A-Za-z0-9.-]+", "-", directory.split("/")[2])
    return store / "_acme" / f"{netloc}-{hashlib.sha256(directory.encode()).hexdigest()[:8]}"


def _account_key(store: Path, directory: str):
    """The store's account key for this directory, or a new one (kept once registered)."""
    import josepy as jose

    path = _account_dir(store, directory) / "account.key"
    if path.exists():
        return jose.JWKEC(key=serialization.load_pem_private_key(path.read_bytes(), None)), False
    return jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1())), True


def _keep_account_key(store: Path, directory: str, key) -> None:
    """Write a newly registered account key: 0600 in a 0700 directory, never printed."""
    adir = _account_dir(store, directory)
    for d in (store, adir.parent, adir):
        d.mkdir(mode=0o700, exist_ok=True)
    pem = key.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for name, data in (("account.key", pem), ("directory", directory.encode() + b"\n")):
        try:  # O_EXCL: another controller's run that registered first keeps its key
            fd = os.open(adir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(data)


def _network(key, ca_bundle: str, account=None):
    import josepy as jose
    from acme import client

    return client.ClientNetwork(
        key,
        account=account,
        alg=jose.ES256,
        verify_ssl=ca_bundle or True,
        user_agent="postfix-pfs",
    )


def _client(store: Path, directory: str, email: str, ca_bundle: str):
    """A client for one host, on the run's one account (registered once per run)."""
    from acme import client, errors, messages

    with _ACCOUNT_LOCK:
        cached = _ACCOUNTS.get((str(store), directory))
        if cached is None:
            key, new_key = _account_key(store, directory)
            net = _network(key, ca_bundle)
            ca = client.ClientV2(client.ClientV2.get_directory(directory, net), net)
            new = messages.NewRegistration.from_data(
                email=email or None, terms_of_service_agreed=True
            )
            try:
                regr = ca.new_account(new)
            except errors.ConflictError as e:  # the key is registered already: use that account
                regr = messages.RegistrationResource(uri=e.location, body=messages.Registration())
            if new_key:
                _keep_account_key(store, directory, key)
            cached = _ACCOUNTS[(str(store), directory)] = (key, regr)
    key, regr = cached
    net = _network(key, ca_bundle, account=regr)
    return client.ClientV2(client.ClientV2.get_directory(directory, net), net)


def _hook(hook: list[str], action: str, domain: str, record: str, value: str) -> None:
    try:
        r = subprocess.run(
            [*hook, action, domain, record, value],
            capture_output=True,
            text=True,
            timeout=HOOK_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AcmeError(f"acme_dns_hook {action} {record}: {e}") from None
    if r.returncode != 0:
        said = (r.stderr.strip() or r.stdout.strip()).splitlines()
        raise AcmeError(
            f"acme_dns_hook {action} {record} exited {r.returncode}"
            + (f": {said[-1]}" if said else "")
        )


def _order(ca, key_pem: bytes, names: list[str], hook: list[str]) -> str:
    """One order (one key type): publish the DNS-01 records, answer, finalize; the chain."""
    from acme import challenges, crypto_util, messages

    order = ca.new_order(crypto_util.make_csr(key_pem, names))
    published = []
    try:
        for authz in order.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue  # the CA still trusts an earlier validation of this name
            challb = next(
                (c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01)), None
            )
            domain = authz.body.identifier.value
            if challb is None:
                raise AcmeError(f"the CA offers no dns-01 challenge for {domain}")
            record = challb.chall.validation_domain_name(domain) + "."
            value = challb.chall.validation(ca.net.key)
            _hook(hook, "add", domain, record, value)
            published.append((domain, record, value))
            ca.answer_challenge(challb, challb.chall.response(ca.net.key))
        deadline = dt.datetime.now() + dt.timedelta(seconds=ORDER_TIMEOUT)
        return ca.poll_and_finalize(order, deadline).fullchain_pem
    finally:
        for domain, record, value in published:
            try:
                _hook(hook, "remove", domain, record, value)
            except AcmeError:
                pass  # a stale TXT record is harmless; the order's outcome matters


def _why(e: Exception, directory: str) -> str:
    """One line for the report: what the CA (or the way to it) said."""
    import requests
    from acme import errors, messages

    if isinstance(e, AcmeError):
        return str(e)
    if isinstance(e, requests.exceptions.SSLError):
        return f"cannot verify the TLS certificate of {directory} (acme_ca_bundle?)"
    if isinstance(e, requests.exceptions.RequestException):
        cause = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(e))
        return f"cannot reach {directory}: {cause.group(1) if cause else type(e).__name__}"
    if isinstance(e, errors.ValidationError):
        failed = [
            f"{a.body.identifier.value}: {c.error.detail or c.error.typ}"
            for a in e.failed_authzrs
            for c in a.body.challenges
            if c.error is not None
        ]
        return "the CA could not validate " + "; ".join(failed)
    if isinstance(e, errors.TimeoutError):
        return f"the CA did not finish within {ORDER_TIMEOUT} s"
    if isinstance(e, messages.Error | errors.Error):
        return f"the CA refused: {e}".replace("\n", " ")
    return f"{type(e).__name__}: {e}"


def check_issued(m: pki.Material, names: list[str], now: dt.datetime) -> str | None:
    """Is what the CA sent a usable chain for this key and these names?"""
    certs = x509.load_pem_x509_certificates(m.cert_pem)
    if pki.spki_der(certs[0]) != pki.spki_der(
        serialization.load_pem_private_key(m.key_pem, password=None)
    ):
        return "the issued certificate is not for the requested key"
    if problem := pki.chain_problem(certs, now):
        return f"the issued chain: {problem}"
    missing = [n for n in names if n.lower() not in pki.cert_names(certs[0])]
    return f"the issued certificate does not name {', '.join(missing)}" if missing else None


def issue(s, store: Path, waiting: list[pki.Material], now: dt.datetime) -> list[pki.Material]:
    """At execution: order a certificate for each waiting key (AcmeError says why not)."""
    names = [s.myhostname, *s.tls_cert_names]
    out = []
    try:
        ca = _client(store, s.acme_directory, s.acme_email, s.acme_ca_bundle)
        for m in waiting:
            chain = _order(ca, m.key_pem, names, s.acme_dns_hook)
            got = replace(m, cert_pem=chain.encode())
            if problem := check_issued(got, names, now):
                raise AcmeError(problem)
            out.append(got)
    except Exception as e:  # noqa: BLE001 - every failure becomes the host's one-line reason
        raise AcmeError(f"ACME ({s.acme_directory}): {_why(e, s.acme_directory)}") from None
    return out


def save(store: Path, host: str, directory: str, issued: list[pki.Material]) -> None:
    """Keys and chains to the store (pki.save's rules), and which directory issued them."""
    pki.save(store, host, issued)
    marker = _marker(store, host)
    if marker.get("directory") != directory:
        marker = {"directory": directory}
    marker.update({m.kind: m.fingerprint for m in issued})
    tmp = store / host / (MARKER + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(marker, f, indent=1)
    os.replace(tmp, store / host / MARKER)
