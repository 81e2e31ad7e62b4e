#!/usr/bin/env python3
"""Local throwaway Postfix hosts for trying and testing the deploy.

Each host is a Debian root filesystem (debootstrap, one base per suite) with an
overlay per host, its own loopback address (127.0.2.N), its own sshd and its own
Postfix. pyinfra reaches the hosts over real SSH through inventories/sandbox.py.

    python3 sandbox/fleet.py up [bookworm=2] [trixie=1]   create/start (idempotent)
    python3 sandbox/fleet.py reset [NAME...]              back to the pristine base
    python3 sandbox/fleet.py status                       list hosts
    python3 sandbox/fleet.py shape NAME KIND              lived-in / null-client (sandbox/shapes)
    python3 sandbox/fleet.py down [--purge]               remove hosts (and bases)

Needs root, debootstrap, tini and iproute2 (sandbox/setup.sh installs them).
Everything lives under $PFS_SANDBOX_DIR (default /var/lib/pfs-sandbox).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(os.environ.get("PFS_SANDBOX_DIR", "/var/lib/pfs-sandbox"))
# Base filesystems can be shared by several fleets (one per worktree or CI job).
BASES = Path(os.environ.get("PFS_SANDBOX_BASES", str(ROOT / "base")))
STATE = ROOT / "fleet.json"
SSH_KEY = ROOT / "id_ed25519"
SUITES = {"bullseye": "d11", "bookworm": "d12", "trixie": "d13"}  # suite -> host name prefix
# sudo: a non-root admin account (pfsadmin) for tests of pyinfra's --sudo
PACKAGES = "postfix,openssl,ca-certificates,openssh-server,procps,iproute2,sudo"
# Each fleet on the machine needs its own loopback range (127.0.X.N): PFS_SANDBOX_NET=127.0.3.
ADDRESS_PREFIX = os.environ.get("PFS_SANDBOX_NET", "127.0.2.")
DOMAIN = "sandbox.test"


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def log(msg: str) -> None:
    print(f"[sandbox] {msg}", flush=True)


def mirror() -> str:
    """The Debian mirror this machine's apt already uses."""
    for path in Path("/etc/apt").glob("sources.list.d/*.sources"):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    lst = Path("/etc/apt/sources.list")
    if lst.exists():
        for line in lst.read_text().splitlines():
            parts = line.split()
            if parts[:1] == ["deb"] and "security" not in line:
                return parts[1] if not parts[1].startswith("[") else parts[2]
    return "http://deb.debian.org/debian"


# --- state -------------------------------------------------------------------


def load_state() -> dict:
    if STATE.exists():
        return json.loads(STATE.read_text())
    return {"hosts": {}}


def save_state(state: dict) -> None:
    ROOT.mkdir(parents=True, exist_ok=True)
    tmp = STATE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(STATE)


# --- base filesystems ----------------------------------------------------------


def ensure_base(suite: str) -> Path:
    base = BASES / suite
    if (base / ".pfs-base-ready").exists():
        return base
    tmp = BASES / f"{suite}.tmp"
    if tmp.exists() and not (tmp / "usr/sbin/postconf").exists():
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    if not tmp.exists():
        log(f"debootstrap {suite} (about 2 minutes, once)")
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={PACKAGES}",
                suite,
                str(tmp),
                mirror(),
            ],
            stdout=subprocess.DEVNULL,
        )
    # sshd: keys only, no PAM (no login session machinery inside a chroot)
    conf = tmp / "etc/ssh/sshd_config.d/pfs-sandbox.conf"
    conf.write_text("PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n")
    for key in (tmp / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # every host makes its own
    # No DNS: lookups fail at once on loopback instead of timing out (or leaving
    # the machine); fleet names come from /etc/hosts (written per host).
    (tmp / "etc/resolv.conf").unlink(missing_ok=True)
    (tmp / "etc/resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    # a non-root admin with password-less sudo, for pyinfra's --sudo
    run(["chroot", str(tmp), "useradd", "-m", "-s", "/bin/sh", "pfsadmin"])
    (tmp / "etc/sudoers.d/pfsadmin").write_text("pfsadmin ALL=(ALL) NOPASSWD: ALL\n")
    os.chmod(tmp / "etc/sudoers.d/pfsadmin", 0o440)
    # no syslog inside: Postfix logs to a file (needs the postlog service, 3.4+)
    run(["chroot", str(tmp), "postconf", "-e", "maillog_file = /var/log/postfix.log"])
    (tmp / ".pfs-base-ready").write_text(suite + "\n")
    tmp.rename(base)
    return base


# --- hosts -------------------------------------------------------------------------


def host_dir(name: str) -> Path:
    return ROOT / "hosts" / name


def merged(name: str) -> Path:
    return host_dir(name) / "merged"


def is_mounted(path: Path) -> bool:
    return os.path.ismount(path)


def pids_in(root: Path) -> list[int]:
    """Processes whose root directory is this host's filesystem."""
    found = []
    target = str(root.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "root") == target:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def stop_processes(name: str) -> None:
    hd = host_dir(name)
    pidfile = hd / "tini.pid"
    targets = pids_in(merged(name))
    if pidfile.exists():
        targets.append(int(pidfile.read_text()))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in targets:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + 5
        while time.time() < deadline:
            targets = [p for p in targets if Path(f"/proc/{p}").exists() and not _zombie(p)]
            if not targets:
                break
            time.sleep(0.1)
    pidfile.unlink(missing_ok=True)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False


def unmount(name: str) -> None:
    m = merged(name)
    for sub in ("dev", "proc"):
        if is_mounted(m / sub):
            run(["umount", "-l", str(m / sub)])
    if is_mounted(m):
        run(["umount", "-l", str(m)])


def mount(name: str, suite: str) -> None:
    hd = host_dir(name)
    for sub in ("upper", "work", "merged"):
        (hd / sub).mkdir(parents=True, exist_ok=True)
    m = merged(name)
    if not is_mounted(m):
        base = BASES / suite
        opts = f"lowerdir={base},upperdir={hd / 'upper'},workdir={hd / 'work'}"
        run(["mount", "-t", "overlay", "overlay", "-o", opts, str(m)])
    if not is_mounted(m / "proc"):
        run(["mount", "-t", "proc", "proc", str(m / "proc")])
    if not is_mounted(m / "dev"):
        run(["mount", "--bind", "/dev", str(m / "dev")])


def add_address(address: str) -> None:
    out = subprocess.run(["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True)
    if f" {address}/32 " not in out.stdout:
        run(["ip", "addr", "add", f"{address}/32", "dev", "lo"])


def del_address(address: str) -> None:
    subprocess.run(
        ["ip", "addr", "del", f"{address}/32", "dev", "lo"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def write_etc_hosts(name: str, state: dict) -> None:
    lines = ["127.0.0.1 localhost"]
    for other, h in sorted(state["hosts"].items()):
        lines.append(f"{h['address']} {other}.{DOMAIN} {other}")
    (merged(name) / "etc/hosts").write_text("\n".join(lines) + "\n")


def first_boot(name: str, address: str) -> None:
    """Per-host identity: host keys, root's authorized key, hostname, listener."""
    m = merged(name)
    fqdn = f"{name}.{DOMAIN}"
    if (m / "etc/ssh/ssh_host_ed25519_key").exists():
        return
    (m / "etc/resolv.conf").unlink(missing_ok=True)
    (m / "etc/resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    run(["chroot", str(m), "ssh-keygen", "-A"], stdout=subprocess.DEVNULL)
    ssh_dir = m / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(SSH_KEY.with_suffix(".pub").read_text())
    os.chmod(ssh_dir / "authorized_keys", 0o600)
    admin = m / "home/pfsadmin/.ssh"
    admin.mkdir(mode=0o700, exist_ok=True)
    (admin / "authorized_keys").write_text(SSH_KEY.with_suffix(".pub").read_text())
    run(["chroot", str(m), "chown", "-R", "pfsadmin:pfsadmin", "/home/pfsadmin/.ssh"])
    os.chmod(admin / "authorized_keys", 0o600)
    (m / "etc/hostname").write_text(fqdn + "\n")
    (m / "etc/mailname").write_text(fqdn + "\n")
    # Only this host's own address: all hosts share the machine's network stack.
    for setting in (
        f"myhostname = {fqdn}",
        f"inet_interfaces = {address}",
        "inet_protocols = ipv4",
    ):
        run(["chroot", str(m), "postconf", "-e", setting])


def start(name: str, address: str) -> None:
    hd = host_dir(name)
    if (hd / "tini.pid").exists() and Path(f"/proc/{(hd / 'tini.pid').read_text()}").exists():
        return
    fqdn = f"{name}.{DOMAIN}"
    # tini -s reaps the daemons that Postfix and sshd orphan, so a stopped
    # master is gone (not a zombie that `postfix status` would call running).
    inner = (
        f"hostname {fqdn}; mkdir -p /run/sshd; "
        "/etc/init.d/postfix start >/var/log/pfs-sandbox-boot.log 2>&1; "
        f"exec /usr/sbin/sshd -D -e -o ListenAddress={address}"
    )
    with open(hd / "sshd.log", "ab") as out:
        proc = subprocess.Popen(
            [
                "tini",
                "-s",
                "--",
                "unshare",
                "--uts",
                "chroot",
                str(merged(name)),
                "sh",
                "-c",
                inner,
            ],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (hd / "tini.pid").write_text(str(proc.pid))
    wait_port(address, 22)


def wait_port(address: str, port: int, timeout: float = 20) -> None:
    import socket

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"[sandbox] nothing listens on {address}:{port} after {timeout}s")


def bring_up(name: str, host: dict, state: dict) -> None:
    ensure_base(host["suite"])
    mount(name, host["suite"])
    add_address(host["address"])
    first_boot(name, host["address"])
    write_etc_hosts(name, state)
    start(name, host["address"])


def write_known_hosts(state: dict) -> None:
    """The fleet's host keys, read from the hosts' own files: strict checking works."""
    lines = []
    for name, host in sorted(state["hosts"].items()):
        pub = merged(name) / "etc/ssh/ssh_host_ed25519_key.pub"
        if pub.exists():
            key_type, key = pub.read_text().split()[:2]
            lines.append(f"{host['address']} {key_type} {key}")
    (ROOT / "known_hosts").write_text("\n".join(lines) + "\n")


def take_down(name: str, host: dict, wipe: bool) -> None:
    stop_processes(name)
    unmount(name)
    del_address(host["address"])
    if wipe:
        shutil.rmtree(host_dir(name), ignore_errors=True)


# --- commands -------------------------------------------------------------------------


def parse_counts(specs: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for spec in specs or ["bookworm=2"]:
        suite, _, n = spec.partition("=")
        if suite not in SUITES or not n.isdigit() or not 0 < int(n) <= 64:
            raise SystemExit(
                f"[sandbox] bad spec {spec!r}: use SUITE=N with SUITE in {', '.join(SUITES)}"
            )
        counts[suite] = int(n)
    return counts


def cmd_up(args) -> None:
    if os.geteuid() != 0:
        raise SystemExit("[sandbox] run as root (mounts, chroot, loopback addresses)")
    ROOT.mkdir(parents=True, exist_ok=True)
    os.chmod(ROOT, 0o700)
    if not SSH_KEY.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(SSH_KEY)])
    state = load_state()
    wanted = parse_counts(args.spec)
    used = {h["address"] for h in state["hosts"].values()}
    for suite, count in wanted.items():
        ensure_base(suite)
        have = sorted(n for n, h in state["hosts"].items() if h["suite"] == suite)
        for i in range(len(have), count):
            n = 1
            while f"{ADDRESS_PREFIX}{n}" in used:
                n += 1
            used.add(f"{ADDRESS_PREFIX}{n}")
            name = f"{SUITES[suite]}-mx{i + 1}"
            state["hosts"][name] = {"suite": suite, "address": f"{ADDRESS_PREFIX}{n}"}
    save_state(state)
    for name, host in sorted(state["hosts"].items()):
        bring_up(name, host, state)
        log(f"{name:10} {host['suite']:9} {host['address']}  up")
    write_known_hosts(state)


def cmd_reset(args) -> None:
    state = load_state()
    names = args.names or sorted(state["hosts"])
    for name in names:
        host = state["hosts"].get(name)
        if host is None:
            raise SystemExit(f"[sandbox] no host {name!r}")
        take_down(name, host, wipe=True)
        bring_up(name, host, state)
        log(f"{name} reset")
    write_known_hosts(state)


def cmd_down(args) -> None:
    state = load_state()
    for name, host in sorted(state["hosts"].items()):
        take_down(name, host, wipe=True)
        log(f"{name} removed")
    shutil.rmtree(ROOT / "hosts", ignore_errors=True)
    STATE.unlink(missing_ok=True)
    (ROOT / "known_hosts").unlink(missing_ok=True)
    if args.purge:
        shutil.rmtree(ROOT, ignore_errors=True)
        log(f"purged {ROOT}")


SHAPES = Path(__file__).resolve().parent / "shapes"


def cmd_shape(args) -> None:
    """Make a running host look lived-in (sandbox/shapes/KIND.sh, run over SSH as root)."""
    state = load_state()
    host = state["hosts"].get(args.name)
    script = SHAPES / f"{args.kind}.sh"
    if host is None or not script.exists():
        kinds = ", ".join(sorted(p.stem for p in SHAPES.glob("*.sh")))
        raise SystemExit(f"[sandbox] use: shape NAME KIND with a fleet host and KIND in {kinds}")
    ssh = ["ssh", "-i", str(SSH_KEY), "-o", f"UserKnownHostsFile={ROOT / 'known_hosts'}"]
    ssh += ["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"]
    with open(script, "rb") as f:
        run([*ssh, f"root@{host['address']}", "sh -s"], stdin=f)
    log(f"{args.name} shaped: {args.kind}")


def cmd_status(args) -> None:
    state = load_state()
    for name, host in sorted(state["hosts"].items()):
        alive = bool(pids_in(merged(name)))
        print(f"{name:10} {host['suite']:9} {host['address']:12} {'up' if alive else 'down'}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="create and start hosts (idempotent)")
    up.add_argument("spec", nargs="*", help="SUITE=N, e.g. bookworm=2 trixie=1")
    up.set_defaults(func=cmd_up)
    reset = sub.add_parser("reset", help="put hosts back to the pristine base")
    reset.add_argument("names", nargs="*")
    reset.set_defaults(func=cmd_reset)
    down = sub.add_parser("down", help="stop and remove every host")
    down.add_argument("--purge", action="store_true", help="also remove the base filesystems")
    down.set_defaults(func=cmd_down)
    sub.add_parser("status", help="list hosts").set_defaults(func=cmd_status)
    shape = sub.add_parser("shape", help="make a host look lived-in (sandbox/shapes/KIND.sh)")
    shape.add_argument("name")
    shape.add_argument("kind", help="lived-in or null-client")
    shape.set_defaults(func=cmd_shape)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
