"""tls_cert_source = acme against a real ACME CA (pebble) on the sandbox fleet.

Judged from outside: Python's ssl and openssl verify the served chains against
pebble's root with the host name; pebble's own log counts the requests it got.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import stat
import subprocess

import pytest

from tests.e2e.conftest import deploy, inventory_with, reset

CIPHERS = {"rsa": "ECDHE-RSA-AES128-GCM-SHA256", "ecdsa": "ECDHE-ECDSA-AES128-GCM-SHA256"}


def _reply(f) -> bytes:
    while True:
        line = f.readline()
        if not line or line[3:4] != b"-":
            return line


def verified(h, cafile, kind: str) -> bytes:
    """STARTTLS as a client offering only one key type: the served leaf (DER). With a
    cafile, raises ssl.SSLCertVerificationError unless the chain verifies with the host name."""
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    if cafile is None:
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS[kind])
    with socket.create_connection((h.address, 25), timeout=20) as sock:
        f = sock.makefile("rb")
        _reply(f)
        sock.sendall(b"EHLO tester.sandbox.test\r\n")
        _reply(f)
        sock.sendall(b"STARTTLS\r\n")
        assert _reply(f).startswith(b"220")
        with ctx.wrap_socket(sock, server_hostname=h.fqdn) as tls:
            return tls.getpeercert(binary_form=True)


def openssl_verifies(h, cafile) -> str:
    r = subprocess.run(
        ["openssl", "s_client", "-starttls", "smtp", "-connect", f"{h.address}:25"]
        + ["-servername", h.fqdn, "-verify_hostname", h.fqdn, "-CAfile", str(cafile)]
        + ["-verify_return_error", "-brief"],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
    )
    return r.stdout + r.stderr


def store_leaf(store, h, kind: str) -> bytes:
    chain = (store / h.name / f"{kind}.crt").read_text()  # leaf first, then the intermediate
    return ssl.PEM_cert_to_DER_cert(chain[: chain.index("-----END CERTIFICATE-----") + 25])


def test_first_run_obtains_certificates_that_verify(hosts, store, pebble):
    h = hosts[0]
    reset(h.name)
    data = pebble.data(acme_email="postmaster@sandbox.test")
    asked = pebble.requests()
    dry = deploy("--dry", "--limit", h.name, store=store, extra_data=data)
    assert dry.returncode == 0, dry.output[-3000:]
    assert f"acme: would request rsa, ecdsa for {h.fqdn} from {pebble.directory}" in dry.output
    assert pebble.requests() == asked, "a dry run contacted the CA"
    assert list(store.iterdir()) == [], "a dry run wrote to the key store"

    run = deploy("--limit", h.name, store=store, extra_data=data)
    assert run.returncode == 0, run.output[-3000:]
    assert pebble.requests() > asked
    for kind in ("rsa", "ecdsa"):
        assert verified(h, pebble.root, kind) == store_leaf(store, h, kind)
    assert "Verification: OK" in openssl_verifies(h, pebble.root)
    assert "PRIVATE KEY" not in dry.output + run.output
    account = next(store.glob("_acme/*/account.key"))
    for p in (account, store / h.name / "rsa.key", store / h.name / "ecdsa.key"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE(account.parent.stat().st_mode) == 0o700

    asked = pebble.requests()
    again = deploy("--limit", h.name, store=store, extra_data=data)
    assert again.returncode == 0 and again.totals()["changed"] == 0, again.output[-3000:]
    assert pebble.requests() == asked, "a run with valid certificates contacted the CA"


def test_a_run_inside_the_renewal_window_renews(hosts, store, pebble):
    h = hosts[-1]
    reset(h.name)
    first = deploy("--limit", h.name, store=store, extra_data=pebble.data())
    assert first.returncode == 0, first.output[-3000:]
    old = {k: verified(h, pebble.root, k) for k in ("rsa", "ecdsa")}
    near = pebble.data(tls_renew_days=45)  # pebble issues for 40 days: inside the window
    dry = deploy("--dry", "--limit", h.name, store=store, extra_data=near)
    assert dry.returncode == 0, dry.output[-3000:]
    assert "inside the 45-day renewal window" in dry.output
    assert "DANE: the TLSA 3 1 1 record of the rsa key changes" in dry.output
    run = deploy("--limit", h.name, store=store, extra_data=near)
    assert run.returncode == 0, run.output[-3000:]
    for kind in ("rsa", "ecdsa"):
        new = verified(h, pebble.root, kind)
        assert new != old[kind] and new == store_leaf(store, h, kind)
        fp = hashlib.sha256(new).hexdigest()[:12]
        assert h.ssh(f"ls /etc/postfix/tls/{kind}-*").stdout.split() == [
            f"/etc/postfix/tls/{kind}-{fp}.pem"
        ]


def test_a_refusing_ca_leaves_the_current_certificate(hosts, store, pebble, tmp_path):
    bad, good = hosts[0], hosts[1]
    reset(bad.name, good.name)
    first = deploy("--limit", bad.name, store=store, extra_data=pebble.data())
    assert first.returncode == 0, first.output[-3000:]
    served = verified(bad, pebble.root, "ecdsa")
    keys = {p.name: p.read_bytes() for p in (store / bad.name).iterdir()}
    pid = bad.master_pid()

    # the challenge fails: the hook publishes nothing; the other host renews as usual
    inv = inventory_with(
        tmp_path,
        {
            bad.name: pebble.data(tls_renew_days=45, acme_dns_hook=["true"]),
            good.name: pebble.data(),
        },
    )
    run = deploy("--limit", bad.name, "--limit", good.name, store=store, inventory=inv)
    assert run.returncode != 0
    assert f"FAILED {bad.name}: ACME ({pebble.directory}): the CA could not validate" in run.output
    assert "the current certificate stays" in run.output
    assert verified(bad, pebble.root, "ecdsa") == served and bad.master_pid() == pid
    assert {p.name: p.read_bytes() for p in (store / bad.name).iterdir()} == keys
    assert verified(good, pebble.root, "ecdsa") == store_leaf(store, good, "ecdsa")

    # the CA is down
    pebble.stop()
    try:
        down = deploy("--limit", bad.name, store=store, extra_data=pebble.data(tls_renew_days=45))
    finally:
        pebble.start()
    assert down.returncode != 0
    assert f"cannot reach {pebble.directory}: Connection refused" in down.output
    assert bad.master_pid() == pid
    with pytest.raises(ssl.SSLCertVerificationError):  # pebble's new root: only the cert stayed
        verified(bad, pebble.root, "ecdsa")
    assert verified(bad, None, "ecdsa") == served
