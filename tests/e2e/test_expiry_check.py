"""Certificate expiry for every source, and a check an admin can run from cron."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

from cryptography.hazmat.primitives import serialization

from postfix_pfs import pki
from tests.conftest import ROOT
from tests.e2e.conftest import deploy, deploy_cmd, reset, snapshot, starttls

CERT, KEY = "/etc/ssl/certs/mx.pem", "/etc/ssl/private/mx.key"


def install_pair(h, days: int, start_days_ago: int = 0) -> bytes:
    """A certificate naming the host, configured for smtpd, valid for `days` from its start."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=start_days_ago)
    m = pki.generate("rsa", [h.fqdn], days, start)
    h.ssh(f"cat > {CERT} <<'EOF'\n{m.cert_pem.decode()}EOF")
    h.ssh(f"umask 077; cat > {KEY} <<'EOF'\n{m.key_pem.decode()}EOF")
    h.ssh(f"postconf -e smtpd_tls_cert_file={CERT} smtpd_tls_key_file={KEY} && postfix reload")
    return m.cert.public_bytes(serialization.Encoding.DER)


def report(tmp_path) -> dict:
    return json.loads((tmp_path / "reports" / "latest.json").read_text())


def run(tmp_path, store, *args, **data):
    return deploy(*args, store=store, extra_data={"report_dir": str(tmp_path / "reports"), **data})


def test_two_days_left_warns_under_existing_and_is_replaced_under_auto(hosts, store, tmp_path):
    h = hosts[0]
    reset(h.name)
    der = install_pair(h, days=2)
    r = run(tmp_path, store, "--limit", h.name, tls_cert_source="existing")
    assert r.returncode == 0, r.output[-3000:]
    assert "warning: the rsa certificate (existing) expires in 1 days" in r.output or (
        "warning: the rsa certificate (existing) expires in 2 days" in r.output
    )
    rec = report(tmp_path)["hosts"][h.name]
    assert rec["cert_days_left"]["rsa"] in (1, 2) and rec["cert_source"] == "existing"
    assert starttls(h)[2] == der  # kept, with the warning

    r = run(tmp_path, store, "--limit", h.name)  # auto: replaced like a missing one
    assert r.returncode == 0, r.output[-3000:]
    rec = report(tmp_path)["hosts"][h.name]
    assert rec["cert_source"] == "generate" and "tls_reuse_min_days" in rec["cert_reason"]
    assert starttls(h)[2] != der
    assert min(rec["cert_days_left"].values()) > 300


def test_expired_under_existing_fails_that_host_others_converge(hosts, store, tmp_path):
    bad, good = hosts[0], hosts[1]
    reset(bad.name, good.name)
    install_pair(bad, days=2, start_days_ago=10)
    before = snapshot(bad)
    r = run(tmp_path, store, "--limit", bad.name, "--limit", good.name, tls_cert_source="existing")
    assert r.returncode != 0
    assert f"FAILED {bad.name}: {bad.fqdn}: tls_cert_source = existing, but" in r.output
    assert "expired on" in r.output
    assert snapshot(bad) == before  # nothing changed on the failed host
    rep = report(tmp_path)["hosts"]
    assert rep[bad.name]["failed"] and not rep[good.name]["failed"], r.output[-3000:]


def check(tmp_path, store, *args):
    cmd = deploy_cmd(
        *args,
        store=store,
        deploy_file="deploys/check.py",
        extra_data={"report_dir": str(tmp_path / "reports")},
    )
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    return r.returncode, r.stdout + r.stderr


def check_line(output: str, name: str) -> str:
    prefix = f"postfix-pfs check {name}: "
    return next(ln[len(prefix) :] for ln in output.splitlines() if ln.startswith(prefix))


def test_check_changes_nothing_and_names_a_weakened_or_swapped_host(hosts, store, tmp_path):
    reset()
    first = run(tmp_path, store)
    assert first.returncode == 0, first.output[-3000:]
    before = {h.name: snapshot(h, after_handshake=True) for h in hosts}
    code, out = check(tmp_path, store)
    assert code == 0, out[-3000:]
    for h in hosts:
        assert check_line(out, h.name) == "OK", out[-3000:]
        # the handshakes of the proof touch only Postfix's session caches (runtime state)
        assert snapshot(h, after_handshake=True) == before[h.name], h.name
    rep = report(tmp_path)["hosts"]
    assert all(rep[h.name]["check"] == "OK" for h in hosts)
    assert all(min(rep[h.name]["cert_days_left"].values()) > 300 for h in hosts)

    weak, swapped = hosts[0], hosts[1]
    weak.ssh(
        "sed -i 's/^smtp      inet.*/&\\n  -o smtpd_tls_protocols=>=TLSv1\\n"
        "  -o smtpd_tls_exclude_ciphers=aNULL/' /etc/postfix/master.cf && postfix reload"
    )
    rsa = swapped.ssh("ls /etc/postfix/tls/rsa-*.pem").stdout.strip()
    m = pki.generate("rsa", [swapped.fqdn], 90, dt.datetime.now(dt.UTC))
    swapped.ssh(f"umask 077; cat > {rsa} <<'EOF'\n{(m.key_pem + m.cert_pem).decode()}EOF")
    swapped.ssh("postfix reload")
    code, out = check(tmp_path, store)
    assert code != 0, out[-3000:]
    assert check_line(out, weak.name).startswith("FAILED"), out[-3000:]
    assert "accepts tls1 (the profile refuses it)" in check_line(out, weak.name)
    assert "drift: master.cf" in check_line(out, weak.name)
    assert check_line(out, swapped.name).startswith("FAILED"), out[-3000:]
    assert rsa in check_line(out, swapped.name) or "not the deployed" in check_line(
        out, swapped.name
    )
    for h in hosts[2:]:
        assert check_line(out, h.name) == "OK", out[-3000:]
