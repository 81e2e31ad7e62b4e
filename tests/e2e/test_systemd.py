"""Postfix under systemd, for real: sandbox hosts booted by systemd (systemd-nspawn --boot).

Debian 12 runs Postfix as postfix@-.service (instance "-"), wanted by a oneshot
postfix.service; Debian 13's postfix.service runs it itself (ExecStartPre:
`postfix check`). Every assertion reads systemd's own view of that unit (its
state, its invocation id, which cgroup the master process is in, the unit's
journal), not only Postfix's, so a deploy that reloaded, restarted or started
Postfix behind systemd's back (`postfix reload`, `postfix start`) fails here:
systemd would log no job for the unit, a master started outside it would sit in
the SSH session's cgroup, and a unit whose reload fails would not stop the run.

Needs the systemd hosts: `python3 sandbox/fleet.py up systemd-bookworm=1 systemd-trixie=1`.
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

from postfix_pfs import facts
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

# suite -> the unit that runs Postfix's master there (Debian's packaging, not the deploy's)
UNITS = {"bookworm": "postfix@-.service", "trixie": "postfix.service"}


@pytest.fixture(scope="module", params=sorted(UNITS))
def sd(request) -> Host:
    hosts = [h for h in fleet_hosts("systemd") if h.suite == request.param]
    if not hosts:
        msg = (
            f"no systemd-{request.param} host in the sandbox fleet: run "
            f"`python3 sandbox/fleet.py up systemd-{request.param}=1`"
        )
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return hosts[0]


class Unit:
    """systemd's view of Postfix on a host: unit state, invocation, cgroup, journal."""

    def __init__(self, host: Host):
        self.host = host
        self.name = UNITS[host.suite]
        self.mark = len(self.journal())

    def journal(self) -> list[str]:
        out = self.host.ssh(f"journalctl -u {self.name} -u postfix.service -o cat --no-pager -q")
        return [line for line in out.stdout.splitlines() if line.strip()]

    def since_mark(self) -> list[str]:
        return self.journal()[self.mark :]

    def show(self) -> dict[str, str]:
        out = self.host.ssh(f"systemctl show -p ActiveState,SubState,InvocationID {self.name}")
        return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)

    def active(self) -> tuple[str, str]:
        out = self.host.ssh(f"systemctl is-active postfix.service {self.name}", check=False)
        return tuple(out.stdout.split())

    def master_cgroup(self) -> str:
        """The cgroup of the running master process (systemd's unit, or someone's session)."""
        pid = self.host.master_pid()
        assert pid, f"{self.host.name}: Postfix is not running"
        out = self.host.ssh(f"cat /proc/{pid}/cgroup").stdout
        return next(line.split(":", 2)[2] for line in out.splitlines() if line.startswith("0::"))


def under_systemd(h: Host, tls: bool = True) -> Unit:
    """Postfix runs, and systemd runs it: both units active, the master in the unit's
    cgroup; with tls, STARTTLS with forward secrecy (a fresh Debian 13 has no TLS yet)."""
    u = Unit(h)
    assert u.active() == ("active", "active"), u.active()
    assert u.master_cgroup().endswith(f"/{u.name}"), u.master_cgroup()
    if tls:
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
    """A drop-in that makes every reload of the unit that runs Postfix fail."""
    d = f"/etc/systemd/system/{UNITS[h.suite]}.d"
    h.ssh(
        f"mkdir -p {d} && printf '%s\\n' '[Service]' 'ExecReload=' "
        f"'ExecReload=/bin/sh -c \"echo reload broken on purpose; exit 1\"' > {d}/pfs-test.conf "
        "&& systemctl daemon-reload"
    )


def test_facts_see_systemd_on_the_real_host(sd):
    out = sd.ssh(facts.script("/etc/postfix/tls", sd.address)).stdout.splitlines()
    f = facts.parse(out)
    assert sd.ssh("ps -o comm= -p 1").stdout.strip() == "systemd"  # the truth: PID 1
    assert f.init == "systemd" and f.running
    assert f.distro_version == {"bookworm": "12", "trixie": "13"}[sd.suite]
    # only where a oneshot postfix.service wants the instance that runs Postfix
    assert f.systemd_instance == ("postfix@-" if UNITS[sd.suite] == "postfix@-.service" else "")
    other = fleet_hosts()[0]  # a SysV host on the same machine: no /run/systemd/system
    out = other.ssh(facts.script("/etc/postfix/tls", other.address)).stdout.splitlines()
    assert facts.parse(out).init == "sysv"


def test_converge_reloads_through_systemd_then_a_rerun_calls_nothing(sd, store):
    reset(sd.name)
    u = under_systemd(sd, tls=False)
    before, pid = u.show(), sd.master_pid()
    first = deploy("--limit", sd.name, store=store)
    assert first.returncode == 0, first.output[-3000:]
    assert action(first, sd) == "reload"
    new = u.since_mark()
    assert any(line.startswith(f"Reloaded {u.name}") for line in new), new
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

    # the reload stage alone (deploys/reload.py) takes the same path
    run = deploy("--limit", sd.name, store=store, deploy_file="deploys/reload.py")
    assert run.returncode == 0, run.output[-3000:]
    new = u.since_mark()
    assert any(line.startswith(f"Reloaded {u.name}") for line in new), new
    assert u.show()["InvocationID"] == before["InvocationID"] and sd.master_pid() == pid


def test_master_cf_change_restarts_through_systemd(sd, store):
    reset(sd.name)
    sd.ssh("sed -i 's/^tlsmgr/#tlsmgr/' /etc/postfix/master.cf")
    u = under_systemd(sd, tls=False)
    before, pid = u.show(), sd.master_pid()
    run = deploy("--limit", sd.name, store=store)
    assert run.returncode == 0, run.output[-3000:]
    assert action(run, sd) == "restart"
    assert sd.ssh("grep -c '^tlsmgr' /etc/postfix/master.cf").stdout.strip() == "1"
    new = u.since_mark()
    assert any(line.startswith(f"Stopped {u.name}") for line in new), new
    assert any(line.startswith(f"Started {u.name}") for line in new), new
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
    assert any(line.startswith(f"Started {u.name}") for line in u.since_mark()), u.since_mark()
    under_systemd(sd)


def test_unit_failing_to_reload_rolls_back(sd, store):
    """First converge on a host whose unit cannot reload: nothing may stay switched."""
    reset(sd.name)
    fail_reloads(sd)
    u = under_systemd(sd, tls=False)
    sha, pid = main_cf_sha(sd), sd.master_pid()
    run = deploy("--limit", sd.name, store=store)
    assert run.returncode != 0
    assert "FAILED: systemctl reload" in run.output, run.output[-2000:]
    assert "restoring the previous configuration" in run.output
    assert main_cf_sha(sd) == sha
    assert sd.ssh("ls /etc/postfix/tls 2>/dev/null | wc -l").stdout.strip() == "0"
    assert any(line.startswith(f"Reload failed for {u.name}") for line in u.since_mark())
    assert sd.master_pid() == pid
    under_systemd(sd, tls=False)  # as before the run (Debian 12: its snakeoil certificate)


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
    assert any(line.startswith(f"Reload failed for {u.name}") for line in u.since_mark())
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
