"""Postfix under systemd, for real: a sandbox host booted by systemd (systemd-nspawn --boot).

Debian runs Postfix as postfix@-.service (instance "-") under the oneshot
postfix.service. Every assertion reads systemd's own view of the unit (its
state, its invocation id, which cgroup the master process is in, the unit's
journal), not only Postfix's, so a deploy that reloaded, restarted or started
Postfix behind systemd's back (`postfix reload`, `postfix start`) fails here:
systemd would log no job for the unit, a master started outside it would sit in
the SSH session's cgroup, and a unit whose reload fails would not stop the run.

Needs a systemd host: `python3 sandbox/fleet.py up systemd-bookworm=1`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from operations import facts
from tests.conftest import ROOT
from tests.e2e.conftest import (
    Host,
    deploy,
    deploy_cmd,
    fleet_hosts,
    forward_secret,
    reset,
    starttls,
)

UNIT = "postfix@-.service"
FAIL_RELOAD = "/etc/systemd/system/postfix@-.service.d/pfs-test-fail-reload.conf"


@pytest.fixture(scope="module")
def sd() -> Host:
    hosts = fleet_hosts("systemd")
    if not hosts:
        msg = "no systemd host in the sandbox fleet: run `python3 sandbox/fleet.py up systemd-bookworm=1`"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return hosts[0]


class Unit:
    """systemd's view of Postfix on a host: unit state, invocation, cgroup, journal."""

    def __init__(self, host: Host):
        self.host = host
        self.mark = len(self.journal())

    def journal(self) -> list[str]:
        out = self.host.ssh(f"journalctl -u {UNIT} -u postfix.service -o cat --no-pager -q")
        return [line for line in out.stdout.splitlines() if line.strip()]

    def since_mark(self) -> list[str]:
        return self.journal()[self.mark :]

    def show(self) -> dict[str, str]:
        out = self.host.ssh(f"systemctl show -p ActiveState,SubState,InvocationID {UNIT}")
        return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)

    def active(self) -> tuple[str, str]:
        out = self.host.ssh(f"systemctl is-active postfix.service {UNIT}", check=False)
        return tuple(out.stdout.split())

    def master_cgroup(self) -> str:
        """The cgroup of the running master process (systemd's unit, or someone's session)."""
        pid = self.host.master_pid()
        assert pid, f"{self.host.name}: Postfix is not running"
        out = self.host.ssh(f"cat /proc/{pid}/cgroup").stdout
        return next(line.split(":", 2)[2] for line in out.splitlines() if line.startswith("0::"))


def under_systemd(h: Host) -> Unit:
    """Postfix runs, and systemd runs it: both units active, the master in the unit's cgroup."""
    u = Unit(h)
    assert u.active() == ("active", "active"), u.active()
    assert u.master_cgroup().endswith(f"/{UNIT}"), u.master_cgroup()
    proto, cipher, _ = starttls(h)
    assert forward_secret(proto, cipher), (proto, cipher)
    return u


def main_cf_sha(h: Host) -> str:
    return hashlib.sha256((h.root / "etc/postfix/main.cf").read_bytes()).hexdigest()


def action(run, h: Host) -> str:
    """The activation the run's JSON report records for the host."""
    path = re.search(r"--> Report: (\S+)", run.output)
    assert path, run.output[-2000:]
    return json.loads(Path(path.group(1)).read_text())["hosts"][h.name]["action"]


def fail_reloads(h: Host) -> None:
    """A drop-in that makes every reload of Postfix's unit fail."""
    h.ssh(
        f"mkdir -p {os.path.dirname(FAIL_RELOAD)} && printf '%s\\n' '[Service]' 'ExecReload=' "
        f"'ExecReload=/bin/sh -c \"echo reload broken on purpose; exit 1\"' > {FAIL_RELOAD} "
        "&& systemctl daemon-reload"
    )


def test_facts_see_systemd_on_the_real_host(sd):
    out = sd.ssh(facts.script("/etc/postfix/tls", sd.address)).stdout.splitlines()
    f = facts.parse(out)
    assert sd.ssh("ps -o comm= -p 1").stdout.strip() == "systemd"  # the truth: PID 1
    assert f.init == "systemd" and f.running and f.distro_version == "12"
    other = fleet_hosts()[0]  # a SysV host on the same machine: no /run/systemd/system
    out = other.ssh(facts.script("/etc/postfix/tls", other.address)).stdout.splitlines()
    assert facts.parse(out).init == "sysv"


def test_converge_reloads_through_systemd_then_a_rerun_calls_nothing(sd, store):
    reset(sd.name)
    u = under_systemd(sd)
    before, pid = u.show(), sd.master_pid()
    first = deploy("--limit", sd.name, store=store)
    assert first.returncode == 0, first.output[-3000:]
    assert action(first, sd) == "reload"
    new = u.since_mark()
    assert any(line.startswith(f"Reloaded {UNIT}") for line in new), new
    assert not any(line.startswith(("Stopp", "Start")) for line in new), new
    assert u.show()["InvocationID"] == before["InvocationID"], "a restart, not a reload"
    assert sd.master_pid() == pid
    u = under_systemd(sd)
    assert "tls/" in sd.ssh("postconf -h smtpd_tls_chain_files").stdout

    again = deploy("--limit", sd.name, store=store)
    assert again.returncode == 0, again.output[-3000:]
    assert again.totals()["changed"] == 0, again.output[-2000:]
    assert u.since_mark() == [], "a no-change run made systemd act on Postfix"
    assert u.show() == under_systemd(sd).show() and sd.master_pid() == pid


def test_master_cf_change_restarts_through_systemd(sd, store):
    reset(sd.name)
    sd.ssh("sed -i 's/^tlsmgr/#tlsmgr/' /etc/postfix/master.cf")
    u = under_systemd(sd)
    before, pid = u.show(), sd.master_pid()
    run = deploy("--limit", sd.name, store=store)
    assert run.returncode == 0, run.output[-3000:]
    assert action(run, sd) == "restart"
    assert sd.ssh("grep -c '^tlsmgr' /etc/postfix/master.cf").stdout.strip() == "1"
    new = u.since_mark()
    assert any(line.startswith(f"Stopped {UNIT}") for line in new), new
    assert any(line.startswith(f"Started {UNIT}") for line in new), new
    assert u.show()["InvocationID"] != before["InvocationID"]
    assert sd.master_pid() not in (None, pid)
    under_systemd(sd)


@pytest.mark.parametrize(
    "stop",
    ["systemctl stop postfix", "postfix stop"],
    ids=["stopped-by-systemctl", "stopped-behind-systemd"],
)
def test_stopped_postfix_is_started_through_systemd(sd, store, stop):
    reset(sd.name)
    sd.ssh(stop)
    deadline = time.time() + 10
    while Unit(sd).active()[1] not in ("inactive", "failed") and time.time() < deadline:
        time.sleep(0.2)
    u = Unit(sd)
    assert u.active()[1] in ("inactive", "failed") and sd.master_pid() is None
    run = deploy("--limit", sd.name, store=store)
    assert run.returncode == 0, run.output[-3000:]
    assert action(run, sd) == "start"
    assert any(line.startswith(f"Started {UNIT}") for line in u.since_mark()), u.since_mark()
    under_systemd(sd)


def test_unit_failing_to_reload_rolls_back(sd, store):
    """First converge on a host whose unit cannot reload: nothing may stay switched."""
    reset(sd.name)
    fail_reloads(sd)
    u = under_systemd(sd)
    sha, pid = main_cf_sha(sd), sd.master_pid()
    run = deploy("--limit", sd.name, store=store)
    assert run.returncode != 0
    assert "FAILED: systemctl reload" in run.output, run.output[-2000:]
    assert "restoring the previous configuration" in run.output
    assert main_cf_sha(sd) == sha
    assert sd.ssh("ls /etc/postfix/tls 2>/dev/null | wc -l").stdout.strip() == "0"
    assert any(line.startswith(f"Reload failed for {UNIT}") for line in u.since_mark())
    assert sd.master_pid() == pid
    under_systemd(sd)


def test_failed_reload_of_a_main_cf_change_is_not_reported_done(sd, store):
    """Only main.cf changes (same certificates): the served certificate cannot give a
    failed reload away, so the unit's own result must."""
    reset(sd.name)
    assert deploy("--limit", sd.name, store=store).returncode == 0
    converged = main_cf_sha(sd)
    fail_reloads(sd)
    u = Unit(sd)
    run = deploy("--limit", sd.name, store=store, extra_data={"tls_loglevel": 2})
    assert run.returncode != 0, "the deploy called a reload done that systemd reported failed"
    assert "FAILED: systemctl reload" in run.output, run.output[-2000:]
    assert main_cf_sha(sd) == converged
    assert sd.ssh("postconf -h smtpd_tls_loglevel").stdout.strip() == "1"
    assert any(line.startswith(f"Reload failed for {UNIT}") for line in u.since_mark())
    under_systemd(sd)


def test_activation_outlives_the_ssh_session(sd, store):
    """The SSH login is a logind session here; the detached activation must finish
    after the controller dies and its session ends."""
    reset(sd.name)
    lock = sd.root / "etc/postfix/.pfs-lock"
    proc = subprocess.Popen(
        deploy_cmd("--limit", sd.name, store=store),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not lock.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    assert lock.exists(), "never saw the activation start"
    proc.send_signal(signal.SIGKILL)  # the controller dies: the SSH session ends
    proc.wait()
    deadline = time.time() + 60
    while lock.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert not lock.exists(), "activation did not finish on its own"
    under_systemd(sd)
    final = deploy("--limit", sd.name, store=store)  # the cut run's files are in place
    assert final.returncode == 0 and final.totals()["changed"] == 0, final.output[-2000:]
