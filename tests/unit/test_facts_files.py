"""The facts command's file inspection, run for real on this machine (issue 18).

A stand-in `postconf` answers only what the script asks about paths; sha256sum,
grep, sed and openssl are the machine's own, openssl wrapped to log each call.
Lookup tables must be hashed and counted, never handed to openssl; possible TLS
material is parsed only when it is a configured file or a glob match and holds
a PEM marker.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess

import pytest

from postfix_pfs import facts, pki
from tests.unit.helpers import NOW

pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl")


@pytest.fixture
def host(tmp_path):
    """A host tree: conf dir, a table dir, configured key/cert, glob matches, a PATH."""
    conf, maps, home, bin_ = (tmp_path / d for d in ("conf", "maps", "home/u/cert", "bin"))
    for d in (conf, maps, home, bin_):
        d.mkdir(parents=True)
    (conf / "main.cf").write_text("myhostname = mx1.example.net\n")
    (conf / "master.cf").write_text("smtp inet n - y - - smtpd\n")
    m = pki.generate("rsa", ["mx1.example.net"], 90, NOW)
    (tmp_path / "server.crt").write_bytes(m.cert_pem)
    (tmp_path / "server.key").write_bytes(m.key_pem)
    (home / "new.pem").write_bytes(m.cert_pem)
    (home / "notes.txt").write_text("not a certificate\n" * 100)
    table = "# written by postfix-pfs\n" + "".join(f"u{i}@x.test m{i}\n" for i in range(500))
    (maps / "virtual").write_text(table + "-----BEGIN CERTIFICATE----- in a value\n")
    (maps / "virtual.db").write_bytes(b"\0binary" * 1000)
    postconf = f"""#!/bin/sh
case "$*" in
  "-h config_directory") echo {conf} ;;
  "-h queue_directory") echo {tmp_path}/spool ;;
  -xh*) echo {tmp_path}/server.crt; echo {tmp_path}/server.key ;;
  -x" "*) echo "config_directory = {conf}"; echo "queue_directory = {tmp_path}/spool"
        echo "smtpd_tls_cert_file = {tmp_path}/server.crt"
        echo "smtpd_tls_key_file = {tmp_path}/server.key" ;;
esac
"""
    (bin_ / "postconf").write_text(postconf)
    log = tmp_path / "openssl.log"
    real = shutil.which("openssl")
    (bin_ / "openssl").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    for f in ("postconf", "openssl"):
        (bin_ / f).chmod(0o755)
    return tmp_path, m


def run_facts(tmp_path) -> facts.HostFacts:
    script = facts.script(
        str(tmp_path / "tls"), table_dir=str(tmp_path / "maps"),
        globs=f"{tmp_path}/home/*/cert/*",
    )  # fmt: skip
    env = {**os.environ, "PATH": f"{tmp_path}/bin:{os.environ['PATH']}"}
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, check=True)
    return facts.parse(out.stdout.splitlines())


def test_tables_are_hashed_and_counted_never_parsed(host):
    tmp_path, m = host
    f = run_facts(tmp_path)
    calls = (tmp_path / "openssl.log").read_text().splitlines()
    assert not [c for c in calls if "/maps/" in c], calls
    table = f.file(f"{tmp_path}/maps/virtual")
    assert table.exists and len(table.sha256) == 64 and table.certs_pem == ""
    assert f.file(f"{tmp_path}/maps/virtual.db").exists
    assert f.table_entries == {f"{tmp_path}/maps/virtual": 501}


@pytest.mark.parametrize(
    "path, parsed, key",
    [
        ("server.crt", True, False),  # configured certificate
        ("server.key", True, True),  # configured key
        ("home/u/cert/new.pem", True, False),  # glob match with a PEM marker
        ("home/u/cert/notes.txt", False, False),  # glob match without one
        ("conf/main.cf", False, False),
        ("maps/virtual", False, False),
    ],
)
def test_only_possible_tls_material_is_parsed(host, path, parsed, key):
    """Only a private key goes to the host's openssl (its public half's digest: the key
    never leaves the host); a certificate's blocks are read out and judged here."""
    tmp_path, m = host
    f = run_facts(tmp_path)
    calls = (tmp_path / "openssl.log").read_text()
    assert (f"-in {tmp_path}/{path} " in calls) == key, calls
    got = f.file(f"{tmp_path}/{path}")
    assert bool(got.certs_pem or got.key_pub_sha256) == parsed
    if key:
        assert got.key_pub_sha256 == m.spki_sha256
    elif parsed:  # the certificate's public key, from its blocks: the same digest
        assert got.cert_pub_sha256 == m.spki_sha256
        assert got.certs_pem == m.cert_pem.decode()


def test_first_cert_pub_sha256_is_the_public_key_of_the_first_valid_certificate():
    """The host's openssl x509 -in FILE read the first certificate it could decode
    (OpenSSL 3 skips a broken block); the controller now does the same from the blocks."""
    a = pki.generate("rsa", ["a.example.net"], 90, NOW)
    b = pki.generate("ecdsa", ["b.example.net"], 90, NOW)
    bad = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    cases = [
        (a.cert_pem, a.spki_sha256),
        (b.cert_pem + a.cert_pem, b.spki_sha256),  # the first
        (bad + a.cert_pem, a.spki_sha256),  # a broken block skipped, as openssl does
        (b"no pem here", ""),
        (b"", ""),
    ]
    for pem, want in cases:
        certs = facts.certificates(base64.b64encode(pem).decode())
        assert facts.first_cert_pub_sha256(certs) == want, pem[:40]
