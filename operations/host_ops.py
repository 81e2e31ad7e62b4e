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

from pyinfra.api import FileUploadCommand, StringCommand, operation

from .plan import Plan

ACTIVATE_SH = Path(__file__).with_name("activate.sh").read_bytes()


def stage_dir(conf: str) -> str:
    return f"{conf}/.pfs-stage"


def manifest(plan: Plan) -> bytes:
    lines = [f"put|{f.path}|{f.mode}" for f in plan.changed] + [f"rm|{p}||" for p in plan.remove]
    return ("\n".join(lines) + "\n").encode()


@operation()
def stage(plan: Plan, conf: str):
    """Upload changed files into a root-only staging directory on the host."""
    if not (plan.changed or plan.remove or plan.activation != "none"):
        return
    st = stage_dir(conf)
    dirs = sorted({str(Path(f"{st}/files{f.path}").parent) for f in plan.changed})
    yield StringCommand(
        f"umask 077 && rm -rf {shlex.quote(st)} && mkdir -p "
        + " ".join(shlex.quote(d) for d in [st, *dirs])
    )
    for f in plan.changed:
        # staging dir is 0700: the file is unreadable to others even before chmod
        yield FileUploadCommand(BytesIO(f.content), f"{st}/files{f.path}")
    yield FileUploadCommand(BytesIO(manifest(plan)), f"{st}/manifest")
    yield FileUploadCommand(BytesIO(ACTIVATE_SH), f"{st}/activate.sh")


@operation()
def activate(plan: Plan, conf: str, init: str, probe: str):
    """Check the staged config, switch it in, reload/restart/start, probe, roll back on failure."""
    if not (plan.changed or plan.remove or plan.activation != "none"):
        return
    st = stage_dir(conf)
    args = " ".join(shlex.quote(a) for a in (st, conf, plan.activation, init, probe))
    yield StringCommand(f"sh {shlex.quote(st)}/activate.sh {args}")


@operation(is_idempotent=False)
def control(conf: str, init: str, action: str, probe: str):
    """Validate the live config and reload (or start) Postfix through the host's init."""
    st = stage_dir(conf)
    yield StringCommand(
        f"umask 077 && rm -rf {shlex.quote(st)} && mkdir -p {shlex.quote(st)} && : > {shlex.quote(st)}/manifest"
    )
    yield FileUploadCommand(BytesIO(ACTIVATE_SH), f"{st}/activate.sh")
    args = " ".join(shlex.quote(a) for a in (st, conf, action, init, probe))
    yield StringCommand(f"sh {shlex.quote(st)}/activate.sh {args}")
