"""End-to-end fixtures: the sandbox fleet (real Postfix, real sshd, real pyinfra over SSH).

The fleet must exist (`python3 sandbox/fleet.py up bookworm=2 trixie=1
systemd-bookworm=1`, which .ci/run does). Outside CI the tests are skipped with
that instruction when it does not; in CI (CI=true) a missing fleet is a failure,
never a skip. Hosts booted by systemd (inventory group `systemd`) are only used
by tests/e2e/test_systemd.py: `hosts`, `reset()` and whole-inventory deploys
leave them out.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import smtplib
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

SANDBOX = Path(os.environ.get("PFS_SANDBOX_DIR", "/var/lib/pfs-sandbox"))
PYINFRA = [sys.executable, "-m", "pyinfra"]
INVENTORY = "inventories/sandbox.py"


@dataclass
class Host:
    name: str
    suite: str
    address: str
    init: str = "sysv"  # the sandbox starts Postfix with its SysV script, or systemd boots it

    @property
    def fqdn(self) -> str:
        return f"{self.name}.sandbox.test"

    @property
    def root(self) -> Path:
        return SANDBOX / "hosts" / self.name / "merged"

    @property
    def upper(self) -> Path:
        return SANDBOX / "hosts" / self.name / "upper"

    def ssh(self, command: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command on the host over real SSH (as an admin would)."""
        cmd = [
            "ssh",
            "-i", str(SANDBOX / "id_ed25519"),
            "-o", f"UserKnownHostsFile={SANDBOX / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
            f"root@{self.address}",
            command,
        ]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"{self.name}: {command!r} failed: {r.stderr}")
        return r

    def master_pid(self) -> int | None:
        out = self.ssh("cat /var/spool/postfix/pid/master.pid 2>/dev/null; true").stdout.strip()
        if out and self.ssh(f"kill -0 {out}", check=False).returncode == 0:
            return int(out)
        return None


def fleet_hosts(init: str = "sysv") -> list[Host]:
    """The fleet's hosts of one kind: SysV-started ones, or those booted by systemd."""
    state = SANDBOX / "fleet.json"
    if not state.exists():
        msg = (
            f"no sandbox fleet at {SANDBOX}: run `python3 sandbox/fleet.py up bookworm=2 trixie=1`"
        )
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    hosts = json.loads(state.read_text())["hosts"]
    # Debian 12 first, as the tests were written for (hosts[0], hosts[1]); then 13, then 11
    order = {"bookworm": 0, "trixie": 1, "bullseye": 2}
    ranked = sorted(hosts.items(), key=lambda item: (order.get(item[1]["suite"], 9), item[0]))
    return [
        Host(n, h["suite"], h["address"], h.get("init", "sysv"))
        for n, h in ranked
        if h.get("init", "sysv") == init
    ]


@pytest.fixture(scope="session")
def hosts() -> list[Host]:
    hs = fleet_hosts()
    if len(hs) < 2:
        pytest.fail("the e2e tests need at least two sandbox hosts")
    return hs


def reset(*names: str) -> None:
    """Hosts back to their pristine base; no names: every SysV-started host."""
    names = names or tuple(h.name for h in fleet_hosts())
    subprocess.run(
        [sys.executable, "sandbox/fleet.py", "reset", *names],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def store(tmp_path) -> Path:
    """A fresh controller-side key store per test (0700), so tests do not share keys."""
    p = tmp_path / "store"
    p.mkdir(mode=0o700)
    return p


@dataclass
class Run:
    returncode: int
    output: str

    def totals(self) -> dict[str, int]:
        """pyinfra's 'Grand total' row: operations, success(changed), error, no change."""
        m = re.search(r"Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", self.output)
        assert m, self.output[-2000:]
        vals = [0 if v == "-" else int(v) for v in m.groups()]
        return dict(zip(("ops", "changed", "error", "no_change"), vals, strict=True))


def deploy_cmd(
    *args: str,
    store: Path,
    deploy_file: str = "deploy.py",
    extra_data: dict | None = None,
    inventory: str = INVENTORY,
) -> list[str]:
    """The pyinfra command line of a deploy with its own key store (and -y unless --dry)."""
    data = {"pfs_store": str(store), **(extra_data or {})}
    cmd = [*PYINFRA, inventory, deploy_file, *args]
    if inventory == INVENTORY and "--limit" not in args:
        cmd += ["--exclude", "systemd"]  # the whole fleet of `hosts`; systemd hosts have own tests
    for k, v in data.items():
        cmd += ["--data", f"{k}={v if isinstance(v, str) else json.dumps(v)}"]
    if "--dry" not in args:
        cmd.append("-y")
    return cmd


def deploy(*args: str, **kw) -> Run:
    r = subprocess.run(
        deploy_cmd(*args, **kw), cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    return Run(r.returncode, r.stdout + r.stderr)


def starttls(host: Host, **ctx_options) -> tuple[str, str, bytes]:
    """An independent client (Python's ssl): protocol, cipher name, served certificate (DER)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in ctx_options.items():
        if k == "set_ciphers":
            ctx.set_ciphers(v)
        else:
            setattr(ctx, k, v)
    with smtplib.SMTP(host.address, 25, timeout=20) as smtp:
        smtp.ehlo("tester.sandbox.test")
        smtp.starttls(context=ctx)
        sock = smtp.sock
        name, proto, _ = sock.cipher()
        der = sock.getpeercert(binary_form=True)
    return proto, name, der


def forward_secret(proto: str, cipher: str) -> bool:
    # TLS 1.3 key exchange is always ephemeral; before it only (EC)DHE suites are
    return proto == "TLSv1.3" or cipher.startswith(("ECDHE-", "DHE-"))


def snapshot(host: Host, after_handshake: bool = False) -> dict[str, tuple]:
    """Every file the host changed relative to its base (the overlay's upper dir).

    after_handshake: the run made a STARTTLS handshake (the facts command's
    verify does, except in dry runs); the first one a fresh Postfix ever sees
    makes its tlsmgr create the TLS session caches (and master its smtpd's lock
    file). That is Postfix's runtime
    state, as after any mail client's visit, not a change by the deploy.
    """
    # login accounting and files Postfix itself rewrites while running, not the deploy
    skip = {
        "/var/log/wtmp",
        "/var/log/lastlog",
        "/var/log/btmp",
        "/run/utmp",
        "/var/log/postfix.log",
        "/var/lib/postfix/prng_exch",
    }
    if after_handshake:  # session caches, and the lock file of the first smtpd process
        skip |= {"/var/lib/postfix/smtpd_scache.db", "/var/lib/postfix/smtp_scache.db"}
        skip |= {
            "/var/spool/postfix/pid/inet.smtp",
            f"/var/spool/postfix/pid/inet.{host.address}:smtp",
        }
    out = {}
    for p in host.upper.rglob("*"):
        rel = "/" + str(p.relative_to(host.upper))
        if rel in skip or p.is_symlink() or not p.is_file():
            continue
        st = p.stat()
        out[rel] = (p.read_bytes(), st.st_mode, st.st_uid)
    return out


def q(s: str) -> str:
    return shlex.quote(s)


def _merged(data: dict, extra: dict) -> dict:
    """Host data with extra keys; a key whose extra value is None is removed."""
    out = {**data, **extra}
    return {k: v for k, v in out.items() if v is not None}


def shape(host: Host, kind: str) -> None:
    """Make a sandbox host look lived-in (sandbox/shapes/KIND.sh)."""
    subprocess.run(
        [sys.executable, "sandbox/fleet.py", "shape", host.name, kind],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


def inventory_with(
    tmp_path: Path, host_data: dict[str, dict], groups: dict[str, str] | None = None
) -> str:
    """The sandbox inventory with extra data per host (and group_data files), in tmp_path."""
    import runpy

    fleet = runpy.run_path(str(ROOT / "inventories" / "sandbox.py"))
    out = {}
    for group in ("bullseye", "bookworm", "trixie"):
        out[group] = [(n, _merged(d, host_data.get(n, {}))) for n, d in fleet[group]]
    inv = tmp_path / "sandbox.py"  # same file name: same "sandbox" group as the real one
    inv.write_text(
        "import json\n"
        + "".join(
            f"{g} = [tuple(h) for h in json.loads({json.dumps(json.dumps(v))})]\n"
            for g, v in out.items()
        )
    )
    gd = tmp_path / "group_data"
    gd.mkdir(exist_ok=True)
    (gd / "sandbox.py").write_text("maillog_file = '/var/log/postfix.log'\n")
    for name, text in (groups or {}).items():
        (gd / f"{name}.py").write_text(text)
    return str(inv)


# Session-wide servers, defined once here: a session fixture imported into two test
# modules would be two fixtures, and the second would start a second server on the
# same address while the first still runs.
from tests.e2e.dnsservers import dns_servers  # noqa: E402, F401
from tests.e2e.pebble import pebble  # noqa: E402, F401
