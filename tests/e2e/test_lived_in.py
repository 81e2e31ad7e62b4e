"""Lived-in hosts: what the host already has stays, the TLS policy holds, keys continue,
nothing happens while pyinfra only prepares, and every host gets its row."""

from __future__ import annotations

import hashlib
import json
import smtplib
import subprocess
import time

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import (
    deploy,
    deploy_cmd,
    inventory_with,
    reset,
    shape,
    snapshot,
    starttls,
)
from tests.e2e.scan import accepted_suites

ADOPTED = (
    "smtpd_milters",
    "non_smtpd_milters",
    "milter_default_action",
    "smtpd_sasl_auth_enable",
    "smtpd_sasl_type",
    "smtpd_sasl_path",
    "smtpd_sasl_security_options",
    "smtpd_recipient_restrictions",
    "virtual_mailbox_domains",
    "virtual_mailbox_maps",
    "virtual_mailbox_base",
    "virtual_uid_maps",
    "virtual_gid_maps",
    "header_checks",
    "message_size_limit",
)


def postconf_n(h, names) -> str:
    return h.ssh("postconf -n " + " ".join(names)).stdout


def by_suite(hosts, suite):
    found = [h for h in hosts if h.suite == suite]
    if not found:
        pytest.fail(f"the sandbox fleet has no {suite} host (scripts/test.sh brings one up)")
    return found[0]


def wait_for(h, path: str, text: str, timeout: float = 30) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = h.ssh(f"cat {path} 2>/dev/null; true").stdout
        if text in out:
            return out
        time.sleep(0.5)
    raise AssertionError(f"{h.name}: {text!r} never reached {path}")


@pytest.mark.parametrize("suite", ["bookworm", "bullseye"])
def test_lived_in_host_keeps_its_configuration_and_gets_the_policy(hosts, store, suite):
    h = by_suite(hosts, suite)
    reset(h.name)
    shape(h, "lived-in")
    before = postconf_n(h, ADOPTED)
    assert before.count("\n") == len(ADOPTED), before

    dry = deploy("--dry", "--limit", h.name, store=store)
    assert dry.returncode == 0, dry.output[-3000:]
    assert "smtpd_milters: kept from this host" in dry.output

    run = deploy("--limit", h.name, store=store)
    assert run.returncode == 0, run.output[-3000:]
    assert postconf_n(h, ADOPTED) == before  # byte-identical, every one
    assert h.ssh("postconf -n >/dev/null").stderr == ""

    # mail for the virtual mailbox domain is still delivered to its mailbox
    with smtplib.SMTP(h.address, 25, timeout=30) as smtp:
        smtp.ehlo("tester.sandbox.test")
        smtp.starttls()
        smtp.ehlo("tester.sandbox.test")
        smtp.sendmail(
            "tester@sandbox.test",
            ["alice@virt.example"],
            b"Subject: still here\r\n\r\nlived-in host after the deploy\r\n",
        )
    wait_for(h, "/var/mail/vhosts/virt.example/alice", "lived-in host after the deploy")

    # and the TLS profile holds, judged by sslyze: FS only, nothing below TLS 1.2
    suites = accepted_suites(h.address, h.fqdn)
    for proto in ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"):
        assert suites[proto] == [], f"{h.name} accepts {proto}"
    assert [s for p in suites for s, fs in suites[p] if not fs] == []


def test_null_client_stays_loopback_only(hosts, store, tmp_path):
    h = hosts[0]
    reset(h.name)
    shape(h, "null-client")
    # the inventory says nothing about the network: the host's own value must stay
    inv = inventory_with(tmp_path, {h.name: {"inet_interfaces": None, "inet_protocols": None}})
    try:
        run = deploy("--limit", h.name, store=store, inventory=inv)
        assert run.returncode == 0, run.output[-3000:]
        # 127.0.0.1, not loopback-only: see sandbox/shapes/null-client.sh (unit-tested too)
        assert h.ssh("postconf -h inet_interfaces").stdout.strip() == "127.0.0.1"
        assert h.ssh("postconf -n >/dev/null").stderr == ""
        with pytest.raises(OSError):
            smtplib.SMTP(h.address, 25, timeout=5)
        proto = h.ssh(
            "echo QUIT | openssl s_client -starttls smtp -connect 127.0.0.1:25 -brief 2>&1"
        ).stdout
        assert "Protocol version: TLSv1.3" in proto or "TLSv1.3" in proto, proto
    finally:
        reset(h.name)  # frees 127.0.0.1:25 for the rest of the suite


def served_fingerprints(hosts) -> dict[str, str]:
    return {h.name: hashlib.sha256(starttls(h)[2]).hexdigest() for h in hosts}


def test_second_clone_with_an_empty_store_changes_nothing(hosts, store, tmp_path):
    reset()
    reports_a, reports_b = tmp_path / "a", tmp_path / "b"
    first = deploy(store=store, extra_data={"report_dir": str(reports_a)})
    assert first.returncode == 0, first.output[-3000:]
    served = served_fingerprints(hosts)
    tlsa = (reports_a / "tlsa.txt").read_text()

    empty = tmp_path / "fresh-clone-store"
    empty.mkdir(mode=0o700)
    second = deploy(store=empty, extra_data={"report_dir": str(reports_b)})
    assert second.returncode == 0, second.output[-3000:]
    assert second.totals()["changed"] == 0, second.output[-3000:]
    report = json.loads((reports_b / "latest.json").read_text())
    for h in hosts:
        assert "kept in place" in report["hosts"][h.name]["cert_reason"], h.name
    assert served_fingerprints(hosts) == served
    assert (reports_b / "tlsa.txt").read_text() == tlsa
    assert list(empty.iterdir()) == []  # nothing generated, nothing stored


def test_weakening_postfix_extra_is_refused_and_custom_is_reported(hosts, store, tmp_path):
    h = hosts[0]
    reset()
    before = {x.name: snapshot(x) for x in hosts}
    weak = {"postfix_extra": {"smtpd_tls_protocols": ">=TLSv1"}}
    run = deploy(store=store, extra_data=weak)
    assert run.returncode != 0
    assert (
        f"{h.name}: postfix_extra: smtpd_tls_protocols is part of tls_profile fs-only" in run.output
    )
    assert "Beginning operation run" not in run.output
    for x in hosts:
        assert snapshot(x) == before[x.name], x.name

    reports = tmp_path / "reports"
    custom = {**weak, "tls_profile": "custom", "report_dir": str(reports)}
    run = deploy("--limit", h.name, store=store, extra_data=custom)
    assert run.returncode == 0, run.output[-3000:]
    assert h.ssh("postconf -h smtpd_tls_protocols").stdout.strip() == ">=TLSv1"
    row = next(ln for ln in run.output.splitlines() if ln.strip().startswith(h.name + " "))
    assert " custom " in row and "fs-only" not in row
    report = json.loads((reports / "latest.json").read_text())
    assert report["hosts"][h.name]["profile"] == "custom"


def prepare_only(args: list[str], store, stdin: str | None = None):
    cmd = [c for c in deploy_cmd(*args, store=store) if c != "-y"]
    return subprocess.run(cmd, cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "mode,args,stdin",
    [("--json without -y", ["--json"], None), ("a declined prompt", [], "n\n")],
)
def test_modes_that_only_prepare_leave_store_and_hosts_untouched(hosts, store, mode, args, stdin):
    reset()
    before = {h.name: snapshot(h) for h in hosts}
    r = prepare_only(args, store, stdin)
    out = r.stdout + r.stderr
    assert "Beginning operation run" not in out, f"{mode}: {out[-2000:]}"
    assert list(store.iterdir()) == [], f"{mode} wrote keys into the store"
    for h in hosts:  # no handshake either (it would make Postfix create its session caches)
        assert snapshot(h) == before[h.name], f"{mode}: {h.name}"


def test_an_unreachable_host_has_its_row(hosts, store, tmp_path):
    reset(hosts[0].name)
    inv = tmp_path / "inv.py"
    good = hosts[0]
    data = {"ssh_port": 22}  # the fleet's own key and user: only the address is wrong
    inv.write_text(
        "import runpy\n"
        f"_fleet = runpy.run_path({str(ROOT / 'inventories' / 'sandbox.py')!r})\n"
        f"hosts = [h for h in _fleet['bookworm'] if h[0] == {good.name!r}]\n"
        f"hosts.append(('gone-mx', {{**dict(hosts[0][1]), 'ssh_hostname': '127.0.2.250', **{data!r}}}))\n"
    )
    reports = tmp_path / "reports"
    run = deploy(store=store, inventory=str(inv), extra_data={"report_dir": str(reports)})
    rows = {ln.split()[0]: ln for ln in run.output.splitlines() if ln.startswith("    ")}
    assert "gone-mx" in rows and "failed" in rows["gone-mx"], run.output[-3000:]
    assert "FAILED gone-mx: unreachable: cannot connect to 127.0.2.250:22" in run.output
    report = json.loads((reports / "latest.json").read_text())
    assert report["hosts"]["gone-mx"]["failed"] is True
    assert report["hosts"][good.name]["failed"] is False
