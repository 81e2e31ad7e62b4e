"""Attacks on issue 14's changes that need a host (break14)."""

from __future__ import annotations

import json

from tests.e2e.conftest import deploy, forward_secret, reset, starttls
from tests.e2e.test_install import purge_postfix

# apt locks with fcntl (flock(1) would not conflict): hold the lock as another apt does
HOLD = """use Fcntl;
open(my $f, '>>', '/var/lib/dpkg/lock-frontend') or die "open: $!";
my $l = pack('ssx4qqix4', F_WRLCK, 0, 0, 0, 0);
fcntl($f, F_SETLKW, $l) or die "lock: $!";
sleep 600;
"""


def _row(reports, name: str) -> dict:
    return json.loads((reports / "latest.json").read_text())["hosts"][name]


def test_install_while_apt_is_locked_fails_that_host_with_one_true_line(hosts, store):
    """Another apt holds the dpkg lock while pyinfra's apt.packages installs Postfix:
    that host fails with a reason that names the install (on main: 'unreachable: ...
    the SSH login failed'), dpkg is left usable, nothing half-installed; the other host
    converges in the same run. The dry run before plans the install, not a failure."""
    locked, other = hosts[1], hosts[0]
    reports = store.parent / "reports"
    data = {"report_dir": str(reports)}
    reset(locked.name, other.name)
    purge_postfix(locked)
    dry = deploy("--dry", store=store, extra_data=data)
    assert dry.returncode == 0, dry.output[-3000:]
    row = _row(reports, locked.name)
    assert not row["failed"] and row["action"] == "planned", row
    locked.ssh(f"cat > /tmp/hold.pl <<'EOF'\n{HOLD}EOF")
    locked.ssh("nohup perl /tmp/hold.pl >/dev/null 2>&1 & echo $! > /tmp/holder.pid; sleep 1")
    try:
        run = deploy(store=store, extra_data=data)
    finally:
        locked.ssh("kill $(cat /tmp/holder.pid) 2>/dev/null; true", check=False)
    out = run.output
    assert run.returncode != 0, out[-3000:]
    assert "Traceback" not in out, out[-4000:]
    row = _row(reports, locked.name)
    assert row["failed"], row
    assert "SSH login" not in row["reason"] and "apt-get" in row["reason"], row["reason"]
    (line,) = [ln for ln in out.splitlines() if ln.strip().startswith(f"FAILED {locked.name}:")]
    assert "install" in line, line
    assert locked.ssh("command -v postconf", check=False).returncode != 0
    assert locked.ssh("dpkg --audit", check=False).stdout.strip() == ""
    assert not _row(reports, other.name)["failed"]
    assert forward_secret(*starttls(other)[:2])
    reset(locked.name, other.name)
