"""The TLS policy proof on every listener (issue 13), judged from outside by sslyze and
by Postfix's own log (a handshake the deploy makes is a connection smtpd logs).

- a weakening master.cf -o override (port 25, submission) is removed and the policy
  proven again; sslyze then finds nothing the profile forbids;
- a stage that does not own master.cf leaves the override, and the proof fails the
  host (no change run) or rolls the activation back;
- a no-change run makes no handshake while the recorded proof holds, and proves again
  when master.cf changed, when the proof is too old, or when asked;
- modes that only prepare (--dry, --json without -y, a declined prompt) make none.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import Host, deploy, deploy_cmd, reset
from tests.e2e.scan import accepted_suites

ISSUE_OVERRIDE = "-o smtpd_tls_protocols=>=TLSv1 -o smtpd_tls_exclude_ciphers=aNULL"


def connections(h: Host) -> int:
    """smtpd connections Postfix logged (each handshake the deploy makes is one)."""
    out = h.ssh(
        "grep -cE 'postfix/(smtpd|submission|smtps)/?[a-z]*\\[[0-9]+\\]: connect from' "
        "/var/log/postfix.log; true"
    )
    return int(out.stdout.strip() or 0)


def report(store) -> dict:
    return json.loads((store.parent / "reports" / "latest.json").read_text())


def run(store, *args, **data):
    return deploy(
        *args, store=store, extra_data={"report_dir": str(store.parent / "reports"), **data}
    )


def weaken_smtp(h: Host) -> None:
    """The issue's example: the admin weakens port 25 in master.cf and reloads."""
    h.ssh(
        f"sed -i 's/^\\(smtp *inet.*smtpd\\)$/\\1 {ISSUE_OVERRIDE}/' /etc/postfix/master.cf"
        " && grep -q 'smtpd_tls_protocols=>=TLSv1 ' /etc/postfix/master.cf && postfix reload"
    )


def wait_listening(h: Host, port: int, timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection((h.address, port), timeout=2) as sock:
                if sock.recv(3) == b"220":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{h.name}: nothing answers on port {port}")


def assert_only_fs(h: Host, port: int = 25, starttls: bool = True) -> None:
    suites = accepted_suites(h.address, h.fqdn, port, starttls)
    for proto in ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"):
        assert suites[proto] == [], f"{h.name}:{port} accepts {proto}"
    no_fs = [s for proto in suites for s, fs in suites[proto] if not fs]
    assert no_fs == [], f"{h.name}:{port} accepts suites without forward secrecy: {no_fs}"
    assert suites["TLSv1.3"], f"{h.name}:{port}"


@pytest.fixture
def converged(hosts, store):
    reset()
    first = run(store)
    assert first.returncode == 0, first.output[-3000:]
    return hosts


def d12(hosts: list[Host], i: int = 0) -> Host:
    """A Debian 12 host (the issue's override uses the >= syntax of Postfix >= 3.6)."""
    return [h for h in hosts if h.suite == "bookworm"][i]


def test_override_on_port_25_is_removed_and_the_policy_proven(converged, store):
    h = d12(converged)
    weaken_smtp(h)
    suites = accepted_suites(h.address, h.fqdn)
    assert suites["TLSv1.0"] and any(not fs for _, fs in suites["TLSv1.2"])  # it bites
    res = run(store)
    assert res.returncode == 0, res.output[-3000:]
    assert (
        "master.cf: smtp: -o smtpd_tls_protocols=>=TLSv1 removed (protected TLS policy"
        in res.output
    )
    assert "smtp: -o smtpd_tls_exclude_ciphers=aNULL removed (protected TLS policy" in res.output
    rec = report(store)["hosts"][h.name]
    assert rec["action"] == "reload" and not rec["failed"]
    assert rec["verification"]["policy"].startswith("proven ")
    smtp = rec["verification"]["listeners"]["smtp"]
    assert smtp["protocols"]["TLS 1.0"] == "refused" and smtp["protocols"]["TLS 1.1"] == "refused"
    assert smtp["protocols"]["TLS 1.2 kRSA"] == "refused"
    assert smtp["key_types"]["rsa"]["fs_only"] == "yes" and smtp["problems"] == []
    assert ISSUE_OVERRIDE.split()[1] not in h.ssh("cat /etc/postfix/master.cf").stdout
    assert_only_fs(h)


SUBMISSION = (
    "submission inet n - y - - smtpd\\n  -o syslog_name=postfix/submission\\n"
    "  -o smtpd_tls_security_level=encrypt\\n  -o smtpd_tls_mandatory_protocols=>=TLSv1\\n"
    "  -o smtpd_tls_exclude_ciphers=aNULL\\n"
    "smtps inet n - y - - smtpd\\n  -o syslog_name=postfix/smtps\\n  -o smtpd_tls_wrappermode=yes\\n"
    "{addr}:10025 inet n - n - - smtpd\\n  -o smtpd_tls_security_level=none\\n"
)


def test_every_listener_submission_smtps_and_a_private_one(converged, store):
    h = d12(converged, 1)
    h.ssh(
        f"printf '{SUBMISSION.format(addr=h.address)}' >> /etc/postfix/master.cf && postfix reload"
    )
    wait_listening(h, 587)  # master binds new services a moment after the reload
    assert accepted_suites(h.address, h.fqdn, 587)["TLSv1.0"]  # the weak submission is live
    res = run(store)
    assert res.returncode == 0, res.output[-3000:]
    assert "master.cf: submission: -o smtpd_tls_mandatory_protocols=>=TLSv1 removed" in res.output
    master = h.ssh("cat /etc/postfix/master.cf").stdout
    assert "-o smtpd_tls_security_level=encrypt" in master  # not weakening: kept
    assert "-o smtpd_tls_security_level=none" in master  # a private listener: kept
    v = report(store)["hosts"][h.name]["verification"]
    for name in ("smtp", "submission", "smtps"):
        lv = v["listeners"][name]
        assert lv["problems"] == [] and lv["protocols"]["TLS 1.0"] == "refused", (name, lv)
        assert {k["fs_only"] for k in lv["key_types"].values()} == {"yes"}, (name, lv)
    assert v["listeners"]["smtps"]["address"] == f"{h.address}:465"
    private = v["listeners"][f"{h.address}:10025"]
    assert private["not_probed"] == "TLS off (-o smtpd_tls_security_level=none)"
    assert f"policy {h.name} {h.address}:10025: not probed: TLS off" in res.output
    assert_only_fs(h, 587)
    assert_only_fs(h, 465, starttls=False)


def test_no_change_run_makes_no_handshake_and_still_catches_master_cf(converged, store):
    before = {h.name: connections(h) for h in converged}
    again = run(store)
    assert again.returncode == 0 and again.totals()["changed"] == 0, again.output[-3000:]
    rep = report(store)["hosts"]
    for h in converged:
        assert connections(h) == before[h.name], f"{h.name}: the no-change run made a handshake"
        assert rep[h.name]["verification"]["policy"].startswith("cached ")
        assert rep[h.name]["forward_secrecy"] is True  # from the recorded proof
    # master.cf changed in between: that host is proven again (and repaired), the others not
    bad = d12(converged)
    weaken_smtp(bad)
    before = {h.name: connections(h) for h in converged}
    res = run(store)
    assert res.returncode == 0, res.output[-3000:]
    for h in converged:
        assert (connections(h) > before[h.name]) == (h is bad), h.name
    assert report(store)["hosts"][bad.name]["verification"]["policy"].startswith("proven ")
    # a stage that does not own master.cf leaves the override: the proof fails the host
    weaken_smtp(bad)
    res = deploy("--limit", bad.name, store=store, deploy_file="deploys/certificates.py",
                 extra_data={"report_dir": str(store.parent / "reports")})  # fmt: skip
    assert res.returncode != 0, res.output[-3000:]
    rec = report(store)["hosts"][bad.name]
    assert rec["failed"] and rec["verification"]["policy"] == "FAILED"
    assert "smtp: accepts tls1 (the profile refuses it)" in rec["reason"], rec["reason"]
    assert rec["verification"]["listeners"]["smtp"]["protocols"]["TLS 1.0"].startswith("accepted")
    # too old a proof, or asked for: proven again with nothing changed
    good = d12(converged, 1)
    for data in ({"verify_max_age_hours": 0}, {"verify_full": True}):
        n = connections(good)
        res = run(store, "--limit", good.name, **data)
        assert res.returncode == 0, res.output[-3000:]
        assert connections(good) > n, data
        assert report(store)["hosts"][good.name]["verification"]["policy"].startswith("proven ")


def test_activation_rolls_back_when_the_promise_does_not_hold(hosts, store):
    h = d12(hosts)
    reset(h.name)
    weaken_smtp(h)
    main_cf = h.ssh("sha256sum /etc/postfix/main.cf").stdout
    res = deploy("--limit", h.name, store=store, deploy_file="deploys/certificates.py",
                 extra_data={"report_dir": str(store.parent / "reports")})  # fmt: skip
    assert res.returncode != 0, res.output[-3000:]
    assert "verification failed after reload: smtp: accepts tls1" in res.output
    assert "restoring the previous configuration" in res.output
    assert h.ssh("sha256sum /etc/postfix/main.cf").stdout == main_cf
    assert h.master_pid() is not None
    assert h.ssh("test -e /etc/postfix/.pfs-evidence", check=False).returncode != 0


def test_prepare_only_modes_make_no_handshake(converged, store):
    """--dry, --json without -y and a declined prompt prepare a re-proof but never run it."""
    data = {"verify_full": True, "report_dir": str(store.parent / "reports")}
    before = {h.name: connections(h) for h in converged}
    cmds = [deploy_cmd("--dry", store=store, extra_data=data)]
    json_cmd = deploy_cmd("--json", store=store, extra_data=data)
    cmds.append([a for a in json_cmd if a != "-y"])
    no = deploy_cmd(store=store, extra_data=data)
    declined = subprocess.run(
        [a for a in no if a != "-y"], cwd=ROOT, input="n\n", capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert "Prove the TLS policy" in declined.stdout + declined.stderr  # it was planned
    for cmd in cmds:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for h in converged:
        assert connections(h) == before[h.name], f"{h.name}: a handshake while only preparing"
    res = run(store, verify_full=True)  # and when it executes, it proves
    assert res.returncode == 0, res.output[-3000:]
    assert all(connections(h) > before[h.name] for h in converged)
