"""The two pyinfra operations that touch a host: stage, then activate.

Both decide from the plan alone (made from the one facts command), so a host
with nothing to change costs no further remote command and reports no change.
Uploads carry no diff and operation names carry paths only: key bytes never
reach pyinfra's output, also not with --dry --diff.
"""

from __future__ import annotations

import shlex
from io import BytesIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import FileUploadCommand, StringCommand, operation
from pyinfra.operations import apk, apt, dnf

from . import verify
from .plan import Plan
from .verify import SCRIPT as TLS_CHECK

LOCK_SH = Path(__file__).with_name("lock.sh").read_text()
# activate.sh with pfs_verify (tls_check.sh) and pfs_lock (lock.sh) defined before it runs
ACTIVATE_SH = (
    Path(__file__)
    .with_name("activate.sh")
    .read_text()
    .replace("\nset -u\n", "\nset -u\n" + TLS_CHECK + "\n" + LOCK_SH + "\n", 1)
    .encode()
)

PACKAGES = ["postfix", "ca-certificates", "openssl"]
# Install only: the index is refreshed only when installing, never a system upgrade, so
# no update=True for dnf and zypper (theirs upgrades every package). pyinfra's own
# package operations, except zypper: its zypper.packages always adds
# --gpg-auto-import-keys (a repository key nobody vetted would be trusted silently).
INSTALL = {
    "apt-get": lambda **kw: apt.packages(packages=PACKAGES, update=True, no_recommends=True, **kw),
    "dnf": lambda **kw: dnf.packages(packages=PACKAGES, **kw),
    "zypper": lambda **kw: zypper_install(**kw),
    "apk": lambda **kw: apk.packages(packages=PACKAGES, update=True, **kw),
}
MIN_FREE_KIB = 1024


def manifest(plan: Plan) -> bytes:
    """What activate.sh switches, in order: "put|PATH|MODE|", a table source
    "map|PATH|MODE|postmap:TYPE" followed by its compiled file, a key copied on the
    host "key|PATH|MODE|SOURCE|PUBLIC-KEY-SHA256" (the staged file holds what
    follows the key), or "rm|PATH||"."""
    lines = []
    for f in plan.changed:
        if f.compile:
            lines += [f"map|{f.path}|{f.mode}|{f.compile}", f"put|{f.db_path}|{f.mode}|"]
        elif f.key_from:
            lines.append(f"key|{f.path}|{f.mode}|{f.key_from}|{f.key_pub}")
        else:
            lines.append(f"put|{f.path}|{f.mode}|")
    lines += [f"rm|{p}||" for p in plan.remove]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _prepare_stage(
    conf: str, stage: str, dirs: list[str], uploads: list[str] = ()
) -> StringCommand:
    """A fresh root-only stage; stale ones of killed runs go; refuse a full filesystem.

    Every upload lands in a file made here first, 0600 (umask 077), so SFTP and
    pyinfra's `sudo cp` only ever write into files nobody else can read. With
    --sudo, pyinfra uploads to a temporary file first: those are STAGE-up/N, made
    0600 here in a 0700 directory owned by the connecting user (SUDO_UID), inside
    config_directory where only root can create names."""
    c, s, up = shlex.quote(conf), shlex.quote(stage), shlex.quote(stage + "-up")
    targets = " ".join(shlex.quote(u) for u in uploads)
    temps = " ".join(shlex.quote(upload_temp(stage, i)) for i in range(len(uploads)))
    return StringCommand(
        "umask 077 && "
        f"find {c} -maxdepth 1 -name '.pfs-stage-*' -mmin +60 -exec rm -rf {{}} + ; "
        f"free=$(df -Pk {c} | awk 'NR==2 {{print $4}}'); "
        f'if [ "${{free:-0}}" -lt {MIN_FREE_KIB} ]; then '
        "printf 'postfix-pfs: FAILED: only %s KiB free on the filesystem of %s; nothing was changed\\n' "
        f'"${{free:-0}}" {c} >&2; exit 1; fi; '
        f"rm -rf {s} {up} && mkdir -p " + " ".join(shlex.quote(d) for d in [stage, *dirs]) + " && "
        f'mkdir {up} && for f in {targets} {temps}; do : > "$f" || exit 1; done; '
        "owner=${SUDO_UID:-${DOAS_USER:-}}; "
        f'if [ -n "$owner" ]; then chown "$owner" {up} {temps}; fi'
    )


def upload_temp(stage: str, i: int) -> str:
    """Where pyinfra's --sudo upload puts file number i before copying it as root."""
    return f"{stage}-up/{i}"


def _uploads(stage_dir: str, pairs: list[tuple[bytes, str]]):
    """FileUploadCommands into files _prepare_stage made (0600), via STAGE-up with --sudo."""
    for i, (content, dest) in enumerate(pairs):
        yield FileUploadCommand(
            BytesIO(content), dest, remote_temp_filename=upload_temp(stage_dir, i)
        )


def _run_detached(stage: str, args: list[str]) -> StringCommand:
    """Run activate.sh in its own session: a dropped SSH connection cannot cut it
    in half. Its output is kept beside the stage and shown when it ends."""
    s = shlex.quote(stage)
    log = shlex.quote(stage + ".log")
    quoted = " ".join(shlex.quote(a) for a in args)
    return StringCommand(
        f"setsid sh {s}/activate.sh {quoted} >{log} 2>&1 </dev/null & "
        f"wait $!; rc=$?; cat {log}; rm -f {log}; rm -rf {s}-up; exit $rc"
    )


def unchanged_text(plan: Plan) -> str:
    """Why there is nothing to stage: the managed files compared, by name."""
    names = sorted((Path(f.path).name for f in plan.files), key=lambda n: not n.endswith(".cf"))
    if not names:
        return "nothing to stage: this stage manages no file here"
    more = f" and {len(names) - 4} more" if len(names) > 4 else ""
    return f"{', '.join(names[:4])}{more} unchanged: nothing to stage"


@operation()
def stage(plan: Plan, conf: str, stage_dir: str):
    """Upload changed files into a root-only staging directory on the host."""
    if not plan.has_changes:
        host.noop(unchanged_text(plan))
        return
    dirs = sorted({str(Path(f"{stage_dir}/files{f.path}").parent) for f in plan.changed})
    pairs = [(f.content, f"{stage_dir}/files{f.path}") for f in plan.changed]
    pairs += [(manifest(plan), f"{stage_dir}/manifest"), (ACTIVATE_SH, f"{stage_dir}/activate.sh")]
    yield _prepare_stage(conf, stage_dir, dirs, [dest for _, dest in pairs])
    yield from _uploads(stage_dir, pairs)


@operation()
def activate(plan: Plan, conf: str, stage_dir: str, ctl: str, profile: str, cache_record: str = ""):
    """Check the staged config, switch it in, reload/restart/start, prove the profile's
    promise on every listener (recorded on the host), roll back on failure. After a
    successful activation only, `cache_record` (facts.record_command) writes the facts cache."""
    if not plan.has_changes:
        host.noop("nothing to switch: Postfix keeps running as it is")
        return
    pairs = [f"{kind}={fp}" for kind, fp in sorted(plan.expected.items())]
    promise = verify.promise(profile).spec()
    args = [stage_dir, conf, plan.activation, ctl, plan.probe_listeners, promise, profile]
    yield _run_detached(stage_dir, [*args, *pairs])
    if cache_record:  # pyinfra runs it only when the activation exited 0
        yield StringCommand(cache_record)


def verify_command(
    conf: str, listeners: str, profile: str, expected: dict[str, str], record: bool = True
) -> str:
    """The host side of the verify operation: probe, judge, record (tls_check.sh).
    record=False (deploys/check.py) writes nothing on the host."""
    args = [conf, listeners, verify.promise(profile).spec(), profile]
    args += [f"{kind}={fp}" for kind, fp in sorted(expected.items())]
    no_record = "" if record else "PFS_NO_RECORD=1 "
    return (
        f'{TLS_CHECK}\nexport LC_ALL=C PATH="$PATH:/usr/sbin:/sbin"\n'
        f"{no_record}pfs_verify {' '.join(shlex.quote(a) for a in args)}"
    )


@operation(is_idempotent=False)
def prove(
    conf: str,
    listeners: str,
    profile: str,
    expected: dict[str, str],
    record: bool = True,
    cache_record: str = "",
):
    """Prove the profile's promise on every listener now (the recorded proof is stale):
    handshakes at execution time only; the host fails when the promise does not hold.
    A proof that held and was recorded is followed by `cache_record` (the facts cache)."""
    yield StringCommand(verify_command(conf, listeners, profile, expected, record))
    if record and cache_record:  # pyinfra runs it only when the proof exited 0
        yield StringCommand(cache_record)


@operation()
def fail(reason: str):
    """Fail this host with a reason (nothing is changed)."""
    yield StringCommand(f"echo {shlex.quote('postfix-pfs: FAILED: ' + reason)} >&2; exit 1")


@operation(is_idempotent=False)
def control(
    conf: str,
    stage_dir: str,
    ctl: str,
    action: str,
    listeners: str,
    profile: str,
    cache_record: str = "",
):
    """Validate the live config and reload (or start) Postfix through the host's init;
    on success `cache_record` writes the facts cache."""
    pairs = [(b"", f"{stage_dir}/manifest"), (ACTIVATE_SH, f"{stage_dir}/activate.sh")]
    yield _prepare_stage(conf, stage_dir, [], [dest for _, dest in pairs])
    yield from _uploads(stage_dir, pairs)
    promise = verify.promise(profile).spec()
    yield _run_detached(stage_dir, [stage_dir, conf, action, ctl, listeners, promise, profile])
    if cache_record:
        yield StringCommand(cache_record)


def install_postfix(pkg: str, name: str):
    """Install Postfix (and openssl, CA certificates) with the host's package manager
    (`pkg`: a key of INSTALL); packages already there are left as they are."""
    return INSTALL[pkg](name=name)


@operation()
def zypper_install():
    """zypper install of PACKAGES, without recommends and without trusting new keys."""
    yield StringCommand("zypper --non-interactive install --no-recommends " + " ".join(PACKAGES))
