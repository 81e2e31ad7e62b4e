#!/usr/bin/env python3
"""Fleet benchmark: 1, 8 and 32 sandbox hosts (Debian 12).

For each fleet size: wall time of the first converge, of a no-change re-run,
of a --dry run (connect + facts + plan, no execution), and the number of
remote commands per host on the no-change run (counted from pyinfra's -vv
echo of every command and upload). Prints a Markdown table; BENCHMARKS.md
holds the results with the machine they were measured on.

    .venv/bin/python scripts/bench.py [SIZES...]     (as root; replaces the sandbox fleet)
    .venv/bin/python scripts/bench.py table [N [ROUNDS]]   big table: one host with N
        virtual aliases (default 100000) vs its twin without, side by side
"""

from __future__ import annotations

import json
import platform
import re
import resource
import statistics
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


# --- big lookup table: one host with N virtual aliases vs its twin without (issue 18) ---

TABLE_INVENTORY = """import json as _json
import runpy as _runpy
_fleet = _runpy.run_path({fleet!r})
_big = {{
    "virtual_alias_domains": ["big.test"],
    "virtual_alias_maps": _json.loads(open({table!r}).read()),
}}
bookworm = [(n, {{**d, **_big}}) if n == {host!r} else (n, d) for n, d in _fleet["bookworm"]]
"""


def table_inventory(tmp: Path, entries: dict[str, str], host: str) -> str:
    """An inventory of the sandbox fleet where `host` alone has the big table (read
    from a JSON file: a literal of that size in a group_data file costs pyinfra
    seconds to load, see README "Big tables")."""
    (tmp / "virtual.json").write_text(json.dumps(entries))
    (tmp / "group_data").mkdir(exist_ok=True)
    (tmp / "group_data" / "sandbox.py").write_text("maillog_file = '/var/log/postfix.log'\n")
    inv = tmp / "sandbox.py"
    inv.write_text(
        TABLE_INVENTORY.format(
            fleet=str(ROOT / "inventories" / "sandbox.py"),
            table=str(tmp / "virtual.json"),
            host=host,
        )
    )
    return str(inv)


def timed(store: Path, inv: str, host: str) -> float:
    cmd = [PY, "-m", "pyinfra", inv, "deploy.py", "--limit", host, "-y"]
    cmd += ["--data", f"pfs_store={store}", "--data", f"report_dir={store.parent}/reports"]
    t = time.perf_counter()
    r = sh(cmd)
    if r.returncode != 0:
        raise SystemExit(f"deploy failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return time.perf_counter() - t


def bench_table(n: int = 100_000, rounds: int = 7) -> None:
    """First converge, a one-entry change, and no-change runs side by side (A B A B ...):
    d12-mx1 with an n-entry virtual_alias_maps, its twin d12-mx2 (same base) without."""
    sh([PY, "sandbox/fleet.py", "down"])
    up = sh([PY, "sandbox/fleet.py", "up", "bookworm=2"])
    if up.returncode != 0:
        raise SystemExit(up.stdout + up.stderr)
    big, plain = "d12-mx1", "d12-mx2"
    entries = {f"user{i:06d}@big.test": f"mbox{i:06d}@example.net" for i in range(n)}
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        store.mkdir(mode=0o700)
        inv = table_inventory(Path(tmp), entries, big)
        first = {h: timed(store, inv, h) for h in (big, plain)}
        entries["user000007@big.test"] = "someone-else@example.net"
        inv = table_inventory(Path(tmp), entries, big)
        one = timed(store, inv, big)
        pairs = [(timed(store, inv, big), timed(store, inv, plain)) for _ in range(rounds)]
    sh([PY, "sandbox/fleet.py", "down"])
    a, b = [statistics.median(x) for x in zip(*pairs, strict=True)]
    ratio = statistics.median(x / y for x, y in pairs)
    print(f"Machine: {machine()}\n")
    print(f"| run | {big}: {n:,} virtual aliases (s) | {plain}: no table (s) | ratio |")
    print("|---|---|---|---|")
    print(
        f"| first converge | {first[big]:.2f} | {first[plain]:.2f} | {first[big] / first[plain]:.2f}x |"
    )
    print(f"| one entry changed | {one:.2f} | - | - |")
    print(f"| no-change re-run, median of {rounds} pairs | {a:.2f} | {b:.2f} | {ratio:.2f}x |")


def main() -> None:
    if sys.argv[1:2] == ["table"]:
        bench_table(*[int(a) for a in sys.argv[2:4]])
        return
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
