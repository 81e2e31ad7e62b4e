#!/usr/bin/env python3
"""Local throwaway Postfix hosts for trying and testing the deploy.

Each host is a Debian root filesystem (debootstrap, one base per suite) with an
overlay per host, its own loopback address (127.0.2.N), its own sshd and its own
Postfix. pyinfra reaches the hosts over real SSH through inventories/sandbox.py.
Most hosts run sshd and Postfix under tini with SysV scripts; a `systemd-SUITE`
host is booted by systemd (`systemd-nspawn --boot`, sharing the machine's
network stack), so Postfix runs in its unit under systemd as PID 1.

    python3 sandbox/fleet.py up [bookworm=2] [trixie=1] [systemd-bookworm=1] [systemd-trixie=1]
    python3 sandbox/fleet.py reset [NAME...]              back to the pristine base
    python3 sandbox/fleet.py status                       list hosts
    python3 sandbox/fleet.py shape NAME KIND              lived-in / null-client (sandbox/shapes)
    python3 sandbox/fleet.py down [--purge]               remove hosts (and bases)

Needs root, debootstrap, tini, iproute2 and, for systemd hosts, systemd-nspawn
(scripts/setup.sh installs them).
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
import uuid
from pathlib import Path

ROOT = Path(os.environ.get("PFS_SANDBOX_DIR", "/var/lib/pfs-sandbox"))
# Base filesystems can be shared by several fleets (one per worktree or CI job).
BASES = Path(os.environ.get("PFS_SANDBOX_BASES", str(ROOT / "base")))
STATE = ROOT / "fleet.json"
SSH_KEY = ROOT / "id_ed25519"
SUITES = {"bullseye": "d11", "bookworm": "d12", "trixie": "d13"}  # suite -> host name prefix
# Hosts booted by systemd: kind -> (suite, host name prefix). Their own bases
# (BASES/KIND): the suite's packages plus systemd as init, D-Bus and logind.
SYSTEMD_KINDS = {
    "systemd-bookworm": ("bookworm", "s12"),  # Postfix runs as postfix@-.service
    "systemd-trixie": ("trixie", "s13"),  # Postfix runs as postfix.service
}
SYSTEMD_PACKAGES = "systemd-sysv,dbus,libpam-systemd"
# Units a throwaway host does not need (timers that would reach the network,
# a getty on the container's console).
SYSTEMD_MASK = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "console-getty.service",
    "getty@tty1.service",
    "systemd-pstore.service",
)
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


def kind_of(host: dict) -> str:
    """The base a host runs on: its suite, or a systemd kind (systemd-bookworm)."""
    return host.get("kind", host["suite"])


def is_systemd(host: dict) -> bool:
    return kind_of(host) in SYSTEMD_KINDS


def ensure_base(kind: str) -> Path:
    base = BASES / kind
    if (base / ".pfs-base-ready").exists():
        return base
    suite, _ = SYSTEMD_KINDS.get(kind, (kind, ""))
    systemd = kind in SYSTEMD_KINDS
    tmp = BASES / f"{kind}.tmp"
    if tmp.exists() and not (tmp / "usr/sbin/postconf").exists():
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    if not tmp.exists():
        log(f"debootstrap {kind} (about 2 minutes, once)")
        packages = PACKAGES + ("," + SYSTEMD_PACKAGES if systemd else "")
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={packages}",
                suite,
                str(tmp),
                mirror(),
            ],
            stdout=subprocess.DEVNULL,
        )
    # sshd: keys only. Without systemd no PAM (no login session machinery in a
    # chroot); under systemd PAM stays on, so SSH logins are logind sessions.
    conf = tmp / "etc/ssh/sshd_config.d/pfs-sandbox.conf"
    conf.write_text(
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        + ("" if systemd else "UsePAM no\n")
    )
    for key in (tmp / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # every host makes its own
    # No DNS: lookups fail at once on loopback instead of timing out (or leaving
    # the machine); fleet names come from /etc/hosts (written per host).
    (tmp / "etc/resolv.conf").unlink(missing_ok=True)
    (tmp / "etc/resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    # a non-root admin with password-less sudo, for pyinfra's --sudo
    run(["chroot", str(tmp), "useradd", "-m", "-s", "/bin/sh", "pfsadmin"])
    # useradd leaves it locked ("!"), and sshd refuses a locked account even with a key
    run(["chroot", str(tmp), "usermod", "-p", "*", "pfsadmin"])
    (tmp / "etc/sudoers.d/pfsadmin").write_text("pfsadmin ALL=(ALL) NOPASSWD: ALL\n")
    os.chmod(tmp / "etc/sudoers.d/pfsadmin", 0o440)
    # no syslog inside: Postfix logs to a file (needs the postlog service, 3.4+)
    run(["chroot", str(tmp), "postconf", "-e", "maillog_file = /var/log/postfix.log"])
    if systemd:
        for unit in SYSTEMD_MASK:  # what `systemctl mask` does, without a running systemd
            (tmp / "etc/systemd/system" / unit).unlink(missing_ok=True)
            (tmp / "etc/systemd/system" / unit).symlink_to("/dev/null")
        (tmp / "etc/machine-id").write_text("")  # each host gets its own (first_boot)
    (tmp / ".pfs-base-ready").write_text(kind + "\n")
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


def mount(name: str, kind: str) -> None:
    hd = host_dir(name)
    for sub in ("upper", "work", "merged"):
        (hd / sub).mkdir(parents=True, exist_ok=True)
    m = merged(name)
    if not is_mounted(m):
        base = BASES / kind
        opts = f"lowerdir={base},upperdir={hd / 'upper'},workdir={hd / 'work'}"
        run(["mount", "-t", "overlay", "overlay", "-o", opts, str(m)])
    if kind in SYSTEMD_KINDS:
        return  # systemd-nspawn mounts /proc, /sys and /dev inside the container itself
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


def first_boot(name: str, address: str, systemd: bool = False) -> None:
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
    run(["chroot", str(m), "usermod", "-p", "*", "pfsadmin"])  # bases built before: unlock
    (m / "etc/hostname").write_text(fqdn + "\n")
    (m / "etc/mailname").write_text(fqdn + "\n")
    # Only this host's own address: all hosts share the machine's network stack.
    for setting in (
        f"myhostname = {fqdn}",
        f"inet_interfaces = {address}",
        "inet_protocols = ipv4",
    ):
        run(["chroot", str(m), "postconf", "-e", setting])
    if systemd:  # sshd is started by its unit, a machine id makes it a booted host
        (m / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
        (m / "etc/ssh/sshd_config.d/pfs-listen.conf").write_text(f"ListenAddress {address}\n")


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


# --- systemd hosts (systemd-nspawn --boot) ------------------------------------------

CGROUP_PARENT = "pfs-sandbox"
BOOT_TIMEOUT = 90  # seconds until sshd and Postfix listen (measured: a few seconds)


def cgroup_roots() -> list[Path]:
    """The cgroup hierarchies nspawn puts a container in: cgroup2 (all of
    /sys/fs/cgroup, or its "unified" part on a hybrid host) and the legacy
    name=systemd hierarchy of a hybrid host."""
    top = Path("/sys/fs/cgroup")
    if (top / "cgroup.controllers").exists():
        return [top]
    return [p for p in (top / "unified", top / "systemd") if (p / "cgroup.procs").exists()]


def host_cgroups(address: str) -> list[Path]:
    """One cgroup per host, named by its address (unique on the machine)."""
    return [root / CGROUP_PARENT / address for root in cgroup_roots()]


def machine_name(address: str) -> str:
    return "pfs-" + address.replace(".", "-")


def nspawn_command(name: str, address: str) -> list[str]:
    cmd = [
        "systemd-nspawn",
        "--boot",
        f"--directory={merged(name)}",
        f"--machine={machine_name(address)}",
        "--register=no",  # no systemd-machined on this machine
        "--resolv-conf=off",  # keep the host's own resolver (first_boot)
        "--timezone=off",
        "--link-journal=no",
        "--console=pipe",
    ]
    if not Path("/run/systemd/system").exists():
        # The machine is not booted by systemd: nothing would make a scope for the
        # container, so nspawn stays in the cgroup it is started in (its own,
        # start_container) and puts the container below it.
        cmd.append("--keep-unit")
    return cmd


def start_container(name: str, address: str) -> None:
    """Boot the host with systemd as PID 1 and the machine's network stack."""
    hd = host_dir(name)
    pidfile = hd / "nspawn.pid"
    if pidfile.exists() and alive(int(pidfile.read_text())):
        return
    groups = host_cgroups(address)
    for g in groups:
        g.mkdir(parents=True, exist_ok=True)

    def enter_cgroups() -> None:  # in the child, before it becomes systemd-nspawn
        for g in groups:
            (g / "cgroup.procs").write_text(str(os.getpid()))

    began = time.time()
    with open(hd / "boot.log", "ab") as out:
        proc = subprocess.Popen(
            nspawn_command(name, address),
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=enter_cgroups,
        )
    pidfile.write_text(str(proc.pid))
    for port in (22, 25):
        wait_port(address, port, BOOT_TIMEOUT)
    log(f"{name:10} booted by systemd in {time.time() - began:.1f}s")


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and not _zombie(pid)


def stop_container(name: str, address: str) -> None:
    """Power the host off (SIGTERM to nspawn: systemd shuts down cleanly), kill
    what is left after 30 s, then remove the host's cgroups."""
    pidfile = host_dir(name) / "nspawn.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text())
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.time() + 30
            while alive(pid) and time.time() < deadline:
                time.sleep(0.1)
        pidfile.unlink()
    for g in host_cgroups(address):
        if not g.exists():
            continue
        groups = sorted((d for d in g.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts))
        for d in [*groups, g]:
            for pid in (d / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for d in [*groups, g]:
            deadline = time.time() + 5
            while (d / "cgroup.procs").read_text().strip() and time.time() < deadline:
                time.sleep(0.1)
            d.rmdir()
        try:
            g.parent.rmdir()  # the last host of every fleet on the machine is gone
        except OSError:
            pass


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
    ensure_base(kind_of(host))
    mount(name, kind_of(host))
    add_address(host["address"])
    first_boot(name, host["address"], is_systemd(host))
    write_etc_hosts(name, state)
    if is_systemd(host):
        start_container(name, host["address"])
    else:
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
    if is_systemd(host):
        stop_container(name, host["address"])
    else:
        stop_processes(name)
    unmount(name)
    del_address(host["address"])
    if wipe:
        shutil.rmtree(host_dir(name), ignore_errors=True)


# --- commands -------------------------------------------------------------------------


def parse_counts(specs: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    kinds = [*SUITES, *SYSTEMD_KINDS]
    for spec in specs or ["bookworm=2"]:
        kind, _, n = spec.partition("=")
        if kind not in kinds or not n.isdigit() or not 0 < int(n) <= 250:
            raise SystemExit(
                f"[sandbox] bad spec {spec!r}: use KIND=N with KIND in {', '.join(kinds)}"
            )
        counts[kind] = int(n)
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
    for kind, count in wanted.items():
        ensure_base(kind)
        suite, prefix = SYSTEMD_KINDS.get(kind, (kind, SUITES.get(kind)))
        have = sorted(n for n, h in state["hosts"].items() if kind_of(h) == kind)
        for i in range(len(have), count):
            n = 1
            while f"{ADDRESS_PREFIX}{n}" in used:
                n += 1
            used.add(f"{ADDRESS_PREFIX}{n}")
            host = {"suite": suite, "address": f"{ADDRESS_PREFIX}{n}"}
            if kind in SYSTEMD_KINDS:
                host |= {"kind": kind, "init": "systemd"}
            state["hosts"][f"{prefix}-mx{i + 1}"] = host
    save_state(state)
    for name, host in sorted(state["hosts"].items()):
        bring_up(name, host, state)
        log(f"{name:10} {kind_of(host):16} {host['address']}  up")
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
        if is_systemd(host):
            pidfile = host_dir(name) / "nspawn.pid"
            up = pidfile.exists() and alive(int(pidfile.read_text()))
        else:
            up = bool(pids_in(merged(name)))
        print(f"{name:10} {kind_of(host):16} {host['address']:12} {'up' if up else 'down'}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="create and start hosts (idempotent)")
    up.add_argument("spec", nargs="*", help="KIND=N, e.g. bookworm=2 trixie=1 systemd-bookworm=1")
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
