"""Real DNS for the DANE tests: Debian's knot and unbound on loopback addresses.

knot is the authoritative server of `sandbox.test`: it signs the zone itself (DNSSEC,
ECDSA P-256, one combined key) and takes RFC 2136 updates signed with a TSIG key the
fixture makes. unbound is a validating resolver whose only trust anchor is that zone's
key (read from knot after signing) and that asks knot for `sandbox.test`; everything
else it refuses at once (no network here). The sandbox hosts that send with
`smtp_tls_security_level = dane` use unbound as their resolver. The fixture starts both
for the test session and stops them by pid.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

ZONE = "sandbox.test"
KEY_NAME = "pfs-update."
TTL = 2  # seconds: record TTL in the tests (default rollover wait = 2 x TTL = 4 s)


class Dns:
    def __init__(self, workdir: Path, net: str, hosts):
        self.dir = workdir
        self.auth = f"{net}253"  # knot
        self.resolver = f"{net}252"  # unbound
        self.hosts = hosts
        self.secret = base64.b64encode(secrets.token_bytes(32)).decode()
        self.knot: subprocess.Popen | None = None
        self.unbound: subprocess.Popen | None = None

    # --- knot ---------------------------------------------------------------------------

    def _knot_config(self) -> Path:
        d = self.dir
        (d / "knot-run").mkdir(exist_ok=True)
        (d / "knot-db").mkdir(exist_ok=True)
        conf = d / "knot.conf"
        conf.write_text(
            f"""server:
    rundir: "{d}/knot-run"
    listen: {self.auth}@53
log:
  - target: {d}/knot.log
    any: info
database:
    storage: "{d}/knot-db"
key:
  - id: {KEY_NAME}
    algorithm: hmac-sha256
    secret: {self.secret}
acl:
  - id: update
    key: {KEY_NAME}
    action: update
policy:
  - id: test
    algorithm: ecdsap256sha256
    single-type-signing: on
    dnskey-ttl: {TTL}
    zone-max-ttl: 60
    propagation-delay: 0
    ksk-lifetime: 0
    zsk-lifetime: 0
zone:
  - domain: {ZONE}
    file: {d}/{ZONE}.zone
    dnssec-signing: on
    dnssec-policy: test
    acl: update
    zonefile-sync: 0
    journal-content: changes
"""
        )
        records = [
            "$ORIGIN sandbox.test.",
            f"$TTL {TTL}",
            f"@ SOA ns.{ZONE}. hostmaster.{ZONE}. 1 60 60 3600 {TTL}",
            "@ NS ns",
            f"ns A {self.auth}",
        ]
        for h in self.hosts:  # each host: its address, and MX for its own name
            records += [f"{h.name} A {h.address}", f"{h.name} MX 10 {h.name}"]
        zone = d / f"{ZONE}.zone"
        if not zone.exists():  # a restart keeps the updates (zonefile-sync: 0 writes them)
            zone.write_text("\n".join(records) + "\n")
        return conf

    def start_knot(self) -> None:
        conf = self._knot_config()
        with open(self.dir / "knotd.out", "ab") as out:
            self.knot = subprocess.Popen(
                ["knotd", "-c", str(conf)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_port(self.auth, 53)
        _wait_for(lambda: self.dnskey() is not None, "knot never served a signed zone")

    def stop_knot(self) -> None:
        if self.knot is not None:
            self.knot.terminate()
            self.knot.wait(timeout=15)
            self.knot = None

    def dnskey(self) -> str | None:
        """The zone's key-signing key as a DNSKEY record (unbound's trust anchor)."""
        import dns.message
        import dns.query

        try:
            r = dns.query.tcp(dns.message.make_query(ZONE, "DNSKEY"), self.auth, timeout=3)
        except (OSError, EOFError):
            return None
        for rrset in r.answer:
            for rd in rrset:
                if getattr(rd, "flags", 0) == 257:
                    return f"{ZONE}. IN DNSKEY {rd.to_text()}"
        return None

    # --- unbound ------------------------------------------------------------------------

    def start_unbound(self) -> None:
        d = self.dir
        (d / "anchor.key").write_text(self.dnskey() + "\n")
        conf = d / "unbound.conf"
        conf.write_text(
            f"""server:
    interface: {self.resolver}
    port: 53
    access-control: 127.0.0.0/8 allow
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    logfile: "{d}/unbound.log"
    use-syslog: no
    do-not-query-localhost: no
    trust-anchor-file: "{d}/anchor.key"
    val-log-level: 2
    verbosity: 1
    qname-minimisation: no
    local-zone: "." refuse
    local-zone: "{ZONE}." transparent
    cache-max-negative-ttl: {TTL}
remote-control:
    control-enable: no
stub-zone:
    name: "{ZONE}."
    stub-addr: {self.auth}
"""
        )
        with open(d / "unbound.out", "ab") as out:
            self.unbound = subprocess.Popen(
                ["unbound", "-d", "-c", str(conf)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_for(lambda: self.validated(f"ns.{ZONE}.", "A") is not None, "unbound never answered")

    def stop(self) -> None:
        self.stop_knot()
        if self.unbound is not None:
            self.unbound.terminate()
            self.unbound.wait(timeout=15)
            self.unbound = None

    # --- what the tests ask -------------------------------------------------------------

    def validated(self, name: str, rdtype: str = "TLSA") -> set[str] | None:
        """Answer from the validating resolver: the records' text, only if DNSSEC-validated
        (AD flag); None when unbound does not answer or could not validate."""
        import dns.flags
        import dns.message
        import dns.query
        import dns.rcode

        q = dns.message.make_query(name, rdtype, want_dnssec=True)
        try:
            r = dns.query.udp(q, self.resolver, timeout=3)
        except (OSError, EOFError, dns.exception.Timeout):
            return None
        if not r.flags & dns.flags.AD or r.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return None
        return {
            rd.to_text()
            for rrset in r.answer
            if rrset.rdtype == q.question[0].rdtype
            for rd in rrset
        }

    def tlsa(self, hostname: str, via_resolver: bool = True) -> set[str] | None:
        """The 3 1 1 digests (lower-case hex) published for _25._tcp.HOSTNAME."""
        name = f"_25._tcp.{hostname}."
        if via_resolver:
            got = self.validated(name)
            if got is None:
                return None
            return {t.split()[3].lower() for t in got if t.startswith("3 1 1 ")}
        import dns.message
        import dns.query

        r = dns.query.tcp(dns.message.make_query(name, "TLSA"), self.auth, timeout=3)
        return {rd.cert.hex() for rrset in r.answer for rd in rrset if rrset.rdtype == 52}

    def clear_tlsa(self, hostname: str) -> None:
        """Delete every TLSA record at _25._tcp.HOSTNAME (tests start from an empty name)."""
        import dns.query
        import dns.rcode
        import dns.tsigkeyring
        import dns.update

        keyring = dns.tsigkeyring.from_text({KEY_NAME: ("hmac-sha256", self.secret)})
        u = dns.update.UpdateMessage(ZONE, keyring=keyring, keyname=KEY_NAME)
        u.delete(f"_25._tcp.{hostname}.", "TLSA")
        assert dns.query.tcp(u, self.auth, timeout=5).rcode() == dns.rcode.NOERROR

    def data(self, **extra) -> dict:
        """Inventory data that publishes the host's TLSA records at this knot."""
        return {
            "dane_server": self.auth,
            "dane_zone": ZONE,
            "dane_tsig_name": KEY_NAME,
            "dane_tsig_secret": self.secret,
            "dane_ttl": TTL,
            **extra,
        }

    def use_resolver(self, host) -> None:
        """Point a sandbox host (and its Postfix chroot) at the validating resolver.
        glibc passes the resolver's AD bit on only with `options trust-ad`."""
        conf = f"nameserver {self.resolver}\\noptions trust-ad timeout:1 attempts:2\\n"
        host.ssh(
            f"printf '{conf}' > /etc/resolv.conf && mkdir -p /var/spool/postfix/etc && "
            "cp /etc/resolv.conf /var/spool/postfix/etc/resolv.conf"
        )


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


def _wait_for(check, message: str, seconds: float = 20) -> None:
    end = time.monotonic() + seconds
    while not check():
        if time.monotonic() > end:
            raise AssertionError(message)
        time.sleep(0.2)


@pytest.fixture(scope="session")
def dns_servers(tmp_path_factory, hosts):
    """knot + unbound for the session (scripts/setup.sh installs them)."""
    if not (shutil.which("knotd") and shutil.which("unbound")):
        msg = "knot or unbound is not installed: run scripts/setup.sh"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    net = os.environ.get("PFS_SANDBOX_NET", "127.0.2.")
    d = Dns(tmp_path_factory.mktemp("dns"), net, hosts)
    try:
        d.start_knot()
        d.start_unbound()
        yield d
    finally:
        d.stop()
