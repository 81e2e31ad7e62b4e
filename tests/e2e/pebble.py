"""A real ACME CA for the tests: Debian's pebble and pebble-challtestsrv on a loopback address.

pebble is the CA (RFC 8555), challtestsrv its DNS: the deploy's dns-01 hook
(scripts/acme-hooks/challtestsrv.py) puts TXT records there and pebble looks
them up there. The fixture starts both for the test session and stops them by
pid. pebble makes a new root CA at every start; `root` is the current one.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import ROOT

VALIDITY_DAYS = 40  # outside the default 30-day renewal window; tls_renew_days > 40 renews


class Pebble:
    def __init__(self, workdir: Path, address: str):
        self.dir, self.address = workdir, address
        self.directory = f"https://{address}:14000/dir"
        self.management = f"http://{address}:8055"  # challtestsrv
        self.tls_ca = workdir / "tls-ca.pem"  # verifies pebble's own HTTPS (acme_ca_bundle)
        self.root = workdir / "root.pem"  # the root that signs issued certificates
        self.log = workdir / "pebble.log"
        self.procs: list[subprocess.Popen] = []

    def _write_config(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble test listener")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(self.address))]),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        self.tls_ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (self.dir / "tls-key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        config = {
            "listenAddress": f"{self.address}:14000",
            "managementListenAddress": f"{self.address}:15000",
            "certificate": str(self.tls_ca),
            "privateKey": str(self.dir / "tls-key.pem"),
            "httpPort": 5002,
            "tlsPort": 5001,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
            "certificateValidityPeriod": VALIDITY_DAYS * 86400,
        }
        (self.dir / "pebble.json").write_text(json.dumps({"pebble": config}))

    def start(self) -> None:
        if not (self.dir / "pebble.json").exists():
            self._write_config()
        # deterministic: no random waits, no random nonce rejection, and every order gets a
        # fresh authorization (a reused one would skip the challenge a test means to fail)
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        env["PEBBLE_AUTHZREUSE"] = "0"
        dns = f"{self.address}:8053"
        with open(self.log, "ab") as log, open(self.dir / "challtestsrv.log", "ab") as clog:
            self.procs = [
                subprocess.Popen(
                    ["pebble-challtestsrv", "-dns01", dns, "-management", f"{self.address}:8055"]
                    + ["-http01", "", "-https01", "", "-tlsalpn01", ""],
                    stdout=clog,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                ),
                subprocess.Popen(
                    ["pebble", "-config", str(self.dir / "pebble.json"), "-dnsserver", dns],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                ),
            ]
        for port in (8055, 14000, 15000):
            _wait_port(self.address, port)
        ctx = ssl.create_default_context(cafile=str(self.tls_ca))
        url = f"https://{self.address}:15000/roots/0"
        with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
            self.root.write_bytes(r.read())

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(timeout=10)
        self.procs = []

    def requests(self) -> int:
        """ACME requests pebble has answered so far (it logs one line per request)."""
        return len(re.findall(r" -> calling handler\(\)", self.log.read_text()))

    def data(self, **extra) -> dict:
        """Inventory data that points the deploy at this CA."""
        hook = [sys.executable, str(ROOT / "scripts/acme-hooks/challtestsrv.py"), self.management]
        return {
            "tls_cert_source": "acme",
            "acme_directory": self.directory,
            "acme_ca_bundle": str(self.tls_ca),
            "acme_dns_hook": hook,
            **extra,
        }


def _wait_port(address: str, port: int, seconds: float = 15) -> None:
    end = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection((address, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def pebble(tmp_path_factory):
    """pebble + challtestsrv for the session (scripts/setup.sh installs them)."""
    if not (shutil.which("pebble") and shutil.which("pebble-challtestsrv")):
        msg = "pebble is not installed: run scripts/setup.sh (apt-get install pebble)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    net = os.environ.get("PFS_SANDBOX_NET", "127.0.2.")
    p = Pebble(tmp_path_factory.mktemp("pebble"), f"{net}250")
    try:  # a start that fails half-way stops what it started too
        p.start()
        yield p
    finally:
        p.stop()
