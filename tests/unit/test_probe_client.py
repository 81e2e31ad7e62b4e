"""The proof's TLS client on the host (tls_check.sh): what each handshake costs it.

The probes judge protocol, cipher, key exchange and the served certificate's
fingerprint, never the chain's verification, so the client does not load the trust
store (OpenSSL's default CA bundle) for them; an option the host's openssl does not
know is never passed (it would make every probe "untestable").
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from postfix_pfs import pki, verify
from tests.unit.helpers import run_probe

# `openssl s_client -help` as each version prints it (the lines that matter)
HELP = {
    "1.0.2": "usage: s_client args\n -CApath arg   - PEM format directory of CA's\n"
    " -CAfile arg   - PEM format file of CA's\n -reconnect    - Drop and re-make the connection\n",
    "1.1.1": "Usage: s_client [options]\n -CAfile infile             PEM format file of CA's\n"
    " -no-CAfile                 Do not load the default certificates file\n"
    " -no-CApath                 Do not load certificates from the default certificates directory\n",
    "3.0": "Usage: s_client [options] [host:port]\n"
    " -no-CAfile                 Do not load the default certificates file\n"
    " -no-CApath                 Do not load certificates from the default certificates directory\n"
    " -no-CAstore                Do not load certificates from the default certificates store\n",
}
HANDSHAKE = (
    "CONNECTED(00000003)\nNew, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384\n"
    "Negotiated TLS1.3 group: X25519\nProtocol  : TLSv1.3\n"
)


def run_probes(tmp_path: Path, help_text: str, twice: bool = False) -> tuple[list[list[str]], str]:
    """pfs_client_opts, then two probes, against a stub openssl that logs its arguments:
    (the arguments of each s_client handshake, the last @probe line)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "help").write_text(help_text)
    (tmp_path / "handshake").write_text(HANDSHAKE)
    stub = bin_dir / "openssl"
    stub.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" -help "*) echo help >> {tmp_path}/asked; cat {tmp_path}/help >&2; exit 1 ;; esac\n'
        f'echo "$*" >> {tmp_path}/calls\n'
        f"cat {tmp_path}/handshake\n"
    )
    stub.chmod(0o755)
    script = (
        verify.SCRIPT
        + "\npfs_client_opts" * (2 if twice else 1)
        + "\npfs_probe smtp 127.0.0.1 25 starttls tls1_2"
        + "\npfs_probe smtp 127.0.0.1 25 starttls tls1\n"
    )
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    r = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env=env)
    calls = [line.split() for line in (tmp_path / "calls").read_text().splitlines()]
    return calls, r.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "version,skipped",
    [
        ("1.0.2", []),  # knows none of them: the trust store is loaded, as before
        ("1.1.1", ["-no-CAfile", "-no-CApath"]),
        ("3.0", ["-no-CAfile", "-no-CApath", "-no-CAstore"]),
    ],
)
def test_probes_skip_the_trust_store_where_the_client_can(tmp_path, version, skipped):
    calls, last = run_probes(tmp_path, HELP[version])
    assert len(calls) == 2 and all(c[0] == "s_client" for c in calls)
    for args in calls:
        assert sorted(a for a in args if a.startswith("-no-CA")) == sorted(skipped)
    assert last.startswith("@probe|smtp|tls1|accepted|TLSv1.3|")  # still read as before


def test_the_client_is_asked_once_per_shell(tmp_path):
    """activate.sh's wait for the listener and pfs_verify both call pfs_client_opts."""
    run_probes(tmp_path, HELP["3.0"], twice=True)
    assert (tmp_path / "asked").read_text().count("help") == 1


def served(tmp_path: Path, certs: list[bytes], probe: str = "rsa") -> list[str]:
    """The lines pfs_probe prints for a handshake whose client output shows `certs` (PEM)."""
    body = b"".join(certs).decode()
    output = f"CONNECTED(00000003)\n---\nServer certificate\n{body}subject=CN = x\n---\n"
    return run_probe(tmp_path / probe, output + HANDSHAKE.split("\n", 1)[1], probe)


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
def test_the_served_certificate_is_named_by_its_der_sha256(tmp_path, kind):
    """The fingerprint the judge compares with the deployed certificate (pki.cert_sha256,
    computed by cryptography on the controller) and the @cert record of the same bytes;
    of a chain the client printed, the first certificate (the server's own) only."""
    now = dt.datetime.now(dt.UTC)
    leaf, other = (pki.generate(kind, [f"{n}.example.test"], 30, now) for n in ("mx", "ca"))
    pems = [m.cert.public_bytes(serialization.Encoding.PEM) for m in (leaf, other)]
    cert_line, probe_line = served(tmp_path, pems, kind)
    want = pki.cert_sha256(leaf.cert)
    assert probe_line.split("|")[8] == want
    tag, fp, b64 = cert_line.split("|")
    der = leaf.cert.public_bytes(serialization.Encoding.DER)
    assert (tag, fp, base64.b64decode(b64)) == ("@cert", want, der)
