"""DANE end to end: TLSA records published by RFC 2136 (TSIG) at a real authoritative
server (knot, DNSSEC-signed zone), a real DANE sender (Postfix with
smtp_tls_security_level = dane behind a validating unbound), a key rollover across
two runs, and failed DNS updates.

Judged from outside the deploy: the served keys come from Python's ssl (one handshake
per key type), the records from unbound with the AD flag (validated) and from knot
itself, delivery from the receiver's mailbox and the sender's Postfix log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import ssl
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.e2e.conftest import deploy, inventory_with, reset

CIPHERS = {"rsa": "ECDHE-RSA-AES128-GCM-SHA256", "ecdsa": "ECDHE-ECDSA-AES128-GCM-SHA256"}


def _reply(f) -> bytes:
    while True:
        line = f.readline()
        if not line or line[3:4] != b"-":
            return line


def served(h, kind: str) -> str:
    """TLSA 3 1 1 digest of the key the host serves to a client offering only `kind`."""
    ctx = ssl.create_default_context()
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
        with ctx.wrap_socket(sock) as tls:
            der = tls.getpeercert(binary_form=True)
    spki = (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return hashlib.sha256(spki).hexdigest()


def served_both(h) -> dict[str, str]:
    return {k: served(h, k) for k in ("rsa", "ecdsa")}


def setup(hosts, dns, tmp_path, fresh=False, **receiver_extra):
    """Receiver A publishes its TLSA records; sender B sends with DANE through unbound."""
    a, b = [h for h in hosts if h.suite == "bookworm"][:2]
    a.ssh("id alice >/dev/null 2>&1 || useradd -m alice")
    dns.use_resolver(b)
    if fresh:  # an earlier test's records would make its keys the "current" ones
        dns.clear_tlsa(a.fqdn)
    data = {
        a.name: dns.data(**{"tls_cert_source": "generate", "tls_cert_days": 60, **receiver_extra}),
        b.name: {"smtp_tls_security_level": "dane", "tls_cert_source": "generate"},
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    return a, b, inventory_with(tmp_path, data)


def mail(a, b, text: str, timeout: float = 60) -> None:
    """B sends to alice@A by MX lookup (DNSSEC, DANE); it must arrive in A's mailbox."""
    b.ssh(f"printf 'Subject: {text}\\n\\n{text}\\n' | sendmail -f root@{b.fqdn} alice@{a.fqdn}")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in a.ssh("cat /var/mail/alice 2>/dev/null || true").stdout:
            return
        time.sleep(0.5)
    log = b.ssh("tail -n 20 /var/log/postfix.log").stdout
    raise AssertionError(f"{text!r} never arrived at {a.name}\n{log}")


def verified_to(a, b) -> int:
    """How many DANE-verified connections B's Postfix logged to A."""
    log = b.ssh("cat /var/log/postfix.log").stdout
    return log.count(f"Verified TLS connection established to {a.fqdn}[{a.address}]:25")


def keys_published(dns, a, keys: dict[str, str]) -> None:
    """Every served key has its record, validated by unbound and at knot."""
    for via in (True, False):
        records = dns.tlsa(a.fqdn, via_resolver=via)
        assert records is not None, "unbound could not validate the TLSA records"
        for kind, digest in keys.items():
            assert digest in records, (kind, digest, records, "resolver" if via else "knot")


def first_deploy(a, b, inv, store):
    run = deploy("--limit", a.name, "--limit", b.name, store=store, inventory=inv)
    assert run.returncode == 0, run.output[-3000:]
    return run


def test_a_dane_sender_delivers_after_a_deploy(hosts, store, tmp_path, dns_servers):
    dns = dns_servers
    reset(*(h.name for h in hosts if h.suite == "bookworm"))
    a, b, inv = setup(hosts, dns, tmp_path, fresh=True)
    dry = deploy("--dry", "--diff", "-v", "--limit", a.name, store=store, inventory=inv)
    assert dry.returncode == 0, dry.output[-3000:]
    assert "DANE: " in dry.output and "has no TLSA 3 1 1 record" in dry.output
    assert dns.tlsa(a.fqdn, via_resolver=False) == set(), "a dry run published records"

    run = first_deploy(a, b, inv, store)
    keys = served_both(a)
    keys_published(dns, a, keys)
    assert dns.tlsa(a.fqdn, via_resolver=False) == set(keys.values())
    assert "smtp_tls_security_level = dane" in b.ssh("postconf smtp_tls_security_level").stdout
    mail(a, b, "hello over DANE")
    assert verified_to(a, b) >= 1, b.ssh("tail -n 30 /var/log/postfix.log").stdout
    assert dns.secret not in run.output + dry.output
    again = deploy("--limit", a.name, store=store, inventory=inv)
    assert again.returncode == 0 and again.totals()["changed"] == 0, again.output[-3000:]
    assert f"DANE {a.name}: published" in again.output


def test_a_key_rollover_across_two_runs_keeps_mail_flowing(hosts, store, tmp_path, dns_servers):
    dns = dns_servers
    reset(*(h.name for h in hosts if h.suite == "bookworm"))
    a, b, inv = setup(hosts, dns, tmp_path, fresh=True)
    first_deploy(a, b, inv, store)
    old = served_both(a)
    mail(a, b, "before the rollover")

    # run 1: renewal due; the next keys' records go out beside the current ones, no switch.
    # TTL 6 s: the default wait (2 x TTL) is 12 s, longer than run 1 and the early run 2
    _, _, due = setup(hosts, dns, tmp_path / "due", tls_renew_days=90, dane_ttl=6)
    run1 = deploy("--limit", a.name, store=store, inventory=due)
    assert run1.returncode == 0, run1.output[-3000:]
    assert f"DANE {a.name}: next:" in run1.output
    soon = deploy("--limit", a.name, store=store, inventory=due)  # too early: waits, never sleeps
    assert soon.returncode == 0 and soon.totals()["changed"] == 0, soon.output[-3000:]
    assert f"DANE {a.name}: waiting:" in soon.output
    assert served_both(a) == old, "the new key went live before its record was visible"
    records = dns.tlsa(a.fqdn, via_resolver=False)
    assert set(old.values()) < records and len(records) == 4, records
    nxt = records - set(old.values())
    assert sorted(p.name for p in (store / a.name / "next").iterdir()) == [
        "ecdsa.crt", "ecdsa.key", "rsa.crt", "rsa.key"
    ]  # fmt: skip

    # between the runs: served keys published and validated; mail flows
    keys_published(dns, a, served_both(a))
    mail(a, b, "between the runs")
    seen = json.loads((store / a.name / "dane.json").read_text())["records"]
    visible = max(dt.datetime.fromisoformat(seen[d]) for d in nxt)
    time.sleep(max(0.0, (visible - dt.datetime.now(dt.UTC)).total_seconds() + 12 + 1.5))
    violations, samples, stop = [], [], threading.Event()

    def watch():  # every moment of run 2: what a DANE sender sees matches what is served
        while not stop.is_set():
            keys = served_both(a)
            records = dns.tlsa(a.fqdn)
            samples.append(keys)
            if records is None or not set(keys.values()) <= records:
                violations.append((keys, records))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        b.ssh(f"printf 'Subject: during\\n\\nduring\\n' | sendmail alice@{a.fqdn}")
        run2 = deploy("--limit", a.name, store=store, inventory=due)
    finally:
        stop.set()
        watcher.join()
    assert run2.returncode == 0, run2.output[-3000:]
    assert f"DANE {a.name}: switch:" in run2.output
    new = served_both(a)
    assert set(new.values()) == nxt, (new, nxt)
    assert not violations, violations[:3]
    assert len({tuple(s.values()) for s in samples}) == 2, "the watcher did not see the switch"
    assert dns.tlsa(a.fqdn, via_resolver=False) == nxt, "the old records were not withdrawn"
    assert not any((store / a.name / "next").iterdir())
    mail(a, b, "during")
    time.sleep(7)  # unbound's cached RRset (with the old records) expires
    mail(a, b, "after the rollover")
    assert verified_to(a, b) >= 4
    for r in (run1, soon, run2):
        assert dns.secret not in r.output


def test_a_failed_dns_update_rotates_nothing(hosts, store, tmp_path, dns_servers):
    dns = dns_servers
    reset(*(h.name for h in hosts if h.suite == "bookworm"))
    a, b, inv = setup(hosts, dns, tmp_path, fresh=True)
    first_deploy(a, b, inv, store)
    keys, pid = served_both(a), a.master_pid()
    current = {p: (store / a.name / p).read_bytes() for p in ("rsa.key", "ecdsa.key")}
    records = dns.tlsa(a.fqdn, via_resolver=False)

    wrong = "c2VjcmV0LWJ1dC1ub3QtdGhlLXJpZ2h0LW9uZQ=="
    _, _, bad = setup(hosts, dns, tmp_path / "bad", tls_renew_days=90, dane_tsig_secret=wrong)
    run = deploy("--limit", a.name, store=store, inventory=bad)
    assert run.returncode != 0
    assert f"FAILED {a.name}: DANE: publishing TLSA records at _25._tcp.{a.fqdn}." in run.output
    assert "BADSIG" in run.output and "the current key stays" in run.output
    assert wrong not in run.output and dns.secret not in run.output
    assert served_both(a) == keys and a.master_pid() == pid
    assert dns.tlsa(a.fqdn, via_resolver=False) == records
    assert {p: (store / a.name / p).read_bytes() for p in current} == current

    _, _, due = setup(hosts, dns, tmp_path / "down", tls_renew_days=90)
    dns.stop_knot()
    try:
        down = deploy("--limit", a.name, store=store, inventory=due)
    finally:
        dns.start_knot()
    assert down.returncode != 0
    assert f"FAILED {a.name}: DANE: looking up _25._tcp.{a.fqdn}." in down.output
    assert "cannot reach it" in down.output and "the current key stays" in down.output
    assert served_both(a) == keys and a.master_pid() == pid
    assert dns.tlsa(a.fqdn, via_resolver=False) == records
    assert {p: (store / a.name / p).read_bytes() for p in current} == current
    mail(a, b, "after the failures")


def test_acme_orders_the_next_key_only_when_it_goes_live(
    hosts,
    store,
    tmp_path,
    dns_servers,
    pebble,
):
    dns = dns_servers
    reset(*(h.name for h in hosts if h.suite == "bookworm"))
    a, b, inv = setup(hosts, dns, tmp_path, fresh=True, **pebble.data())
    first_deploy(a, b, inv, store)
    old = served_both(a)
    keys_published(dns, a, old)

    # pebble issues for 40 days: a 45-day window makes the renewal due
    _, _, due = setup(hosts, dns, tmp_path / "due", **pebble.data(tls_renew_days=45), dane_ttl=6)
    asked = pebble.requests()
    run1 = deploy("--limit", a.name, store=store, inventory=due)
    assert run1.returncode == 0, run1.output[-3000:]
    assert f"DANE {a.name}: next:" in run1.output
    assert pebble.requests() == asked, "the CA was asked before the next key may go live"
    assert served_both(a) == old
    nxt = dns.tlsa(a.fqdn, via_resolver=False) - set(old.values())
    assert len(nxt) == 2

    seen = json.loads((store / a.name / "dane.json").read_text())["records"]
    visible = max(dt.datetime.fromisoformat(seen[d]) for d in nxt)
    time.sleep(max(0.0, (visible - dt.datetime.now(dt.UTC)).total_seconds() + 12 + 1.5))
    run2 = deploy("--limit", a.name, store=store, inventory=due)
    assert run2.returncode == 0, run2.output[-3000:]
    assert f"DANE {a.name}: switch:" in run2.output and pebble.requests() > asked
    assert set(served_both(a).values()) == nxt  # the CA certified the published next keys
    assert dns.tlsa(a.fqdn, via_resolver=False) == nxt
    mail(a, b, "after an acme rollover")
    assert dns.secret not in run1.output + run2.output
