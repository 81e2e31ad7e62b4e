#!/usr/bin/env python3
"""Fleet benchmark: 1, 8 and 32 sandbox hosts (Debian 12).

For each fleet size: wall time of the first converge, of a no-change re-run,
of a --dry run (connect + facts + plan, no execution), and the number of
remote commands per host on the no-change run (counted from pyinfra's -vv
echo of every command and upload). Prints a Markdown table; BENCHMARKS.md
holds the results with the machine they were measured on.

    .venv/bin/python scripts/bench.py [SIZES...]     (as root; replaces the sandbox fleet)
"""

from __future__ import annotations

import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def sh(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def timed_deploy(store: Path, *extra: str) -> tuple[float, str, float]:
    cmd = [
        PY,
        "-m",
        "pyinfra",
        "inventories/sandbox.py",
        "deploy.py",
        "--data",
        f"pfs_store={store}",
    ]
    cmd += ["--data", f"report_dir={store.parent}/reports", *extra]
    if "--dry" not in extra:
        cmd.append("-y")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = sh(cmd)
    elapsed = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (
        after.ru_stime - before.ru_stime
    )  # the controller only
    if r.returncode != 0:
        raise SystemExit(f"deploy failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return elapsed, r.stdout + r.stderr, cpu


def remote_commands(output: str) -> Counter:
    """Commands pyinfra ran (>>>) and files it uploaded, per host."""
    per_host: Counter = Counter()
    for m in re.finditer(r"^\s*\[([^\]]+)\] (>>>|Uploading)", output, re.M):
        per_host[m.group(1)] += 1
    return per_host


def bench(n: int) -> dict:
    sh([PY, "sandbox/fleet.py", "down"])
    t = time.perf_counter()
    up = sh([PY, "sandbox/fleet.py", "up", f"bookworm={n}"])
    if up.returncode != 0:
        raise SystemExit(up.stdout + up.stderr)
    up_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        store.mkdir(mode=0o700)
        first, _, _ = timed_deploy(store)
        _, out, _ = timed_deploy(store, "-vv")
        again, _, again_cpu = timed_deploy(store)
        dry, _, _ = timed_deploy(store, "--dry")
    cmds = remote_commands(out)
    return {
        "hosts": n,
        "fleet_up_s": up_s,
        "first_s": first,
        "nochange_s": again,
        "nochange_cpu_s": again_cpu,
        "dry_s": dry,
        "cmds_max": max(cmds.values()) if cmds else 0,
        "cmds_total": sum(cmds.values()),
    }


def machine() -> str:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    import pyinfra.version

    return (
        f"{cpu}, {len([ln for ln in Path('/proc/cpuinfo').read_text().splitlines() if ln.startswith('processor')])} cores, "
        f"{mem} GiB; Linux {platform.release()}; Python {platform.python_version()}; pyinfra {pyinfra.version.__version__}"
    )


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1, 8, 32]
    results = [bench(n) for n in sizes]
    sh([PY, "sandbox/fleet.py", "down"])
    base = results[0]["nochange_s"]
    print(f"Machine: {machine()}\n")
    print(
        "| hosts | fleet up (s) | first converge (s) | no-change re-run (s) | vs 1 host "
        "| controller CPU, no-change (s) | --dry (s) | remote commands per host, no-change run |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['hosts']} | {r['fleet_up_s']:.1f} | {r['first_s']:.1f} | {r['nochange_s']:.1f} | "
            f"{r['nochange_s'] / base:.2f}x | {r['nochange_cpu_s']:.1f} | {r['dry_s']:.1f} | {r['cmds_max']} |"
        )


if __name__ == "__main__":
    main()
