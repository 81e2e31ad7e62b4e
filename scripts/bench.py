#!/usr/bin/env python3
"""Fleet benchmark against the pyinfra floor, on sandbox hosts (Debian 12).

For each fleet size: the first converge (wall and controller CPU), then no-change
runs of the deploy and of the pyinfra floor (scripts/bench_floor.py: one fact,
one operation that yields nothing) side by side, alternating A B A B in the same
invocation so that both see the same machine; the medians, the median of the
pair-by-pair ratios, the controller's CPU per host, a --dry run, and the remote
commands per host of a no-change run (counted from pyinfra's -vv echo).
Prints a Markdown table; BENCHMARKS.md holds results with the machine.

    .venv/bin/python scripts/bench.py [SIZES...] [--pairs N]   (root; replaces the sandbox fleet)
    .venv/bin/python scripts/bench.py table [N [ROUNDS]]   big table: one host with N
        virtual aliases (default 100000) vs its twin without, side by side
"""

from __future__ import annotations

import argparse
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


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, controller CPU seconds (the pyinfra process and its children,
    not the hosts), output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = sh(cmd)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:5])} failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return wall, cpu, r.stdout + r.stderr


def deploy_cmd(store: Path, *extra: str) -> list[str]:
    cmd = [PY, "-m", "pyinfra", "inventories/sandbox.py", "deploy.py"]
    cmd += ["--data", f"pfs_store={store}", "--data", f"report_dir={store.parent}/reports"]
    return cmd + [*extra] + ([] if "--dry" in extra else ["-y"])


FLOOR = [PY, "-m", "pyinfra", "inventories/sandbox.py", "scripts/bench_floor.py", "-y"]


def remote_commands(output: str) -> Counter:
    """Commands pyinfra ran (>>>) and files it uploaded, per host."""
    per_host: Counter = Counter()
    for m in re.finditer(r"^\s*\[([^\]]+)\] (>>>|Uploading)", output, re.M):
        per_host[m.group(1)] += 1
    return per_host


def compile_package() -> None:
    """Bytecode for the deploy's own modules, as `pip install` leaves it. This repository's
    editable install runs them from the working tree, where Python writes no bytecode when
    PYTHONDONTWRITEBYTECODE is set (this machine's environment): every pyinfra process
    would then compile ~7,000 lines first (~30 ms, measured with -X importtime), a cost
    an installed package does not have. Python still reads bytecode that exists."""
    sh([PY, "-m", "compileall", "-q", "operations", "scripts", "deploy.py"])


def bench(n: int, pairs: int) -> dict:
    sh([PY, "sandbox/fleet.py", "down"])
    t = time.perf_counter()
    up = sh([PY, "sandbox/fleet.py", "up", f"bookworm={n}"])
    if up.returncode != 0:
        raise SystemExit(up.stdout + up.stderr)
    up_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        store.mkdir(mode=0o700)
        first, first_cpu, _ = timed(deploy_cmd(store))
        timed(FLOOR)  # warm-up of both
        _, _, out = timed(deploy_cmd(store, "-vv"))
        walls, cpus, fwalls, fcpus = [], [], [], []
        for _ in range(pairs):  # A B A B: the same machine state for both
            w, c, _ = timed(FLOOR)
            fwalls.append(w)
            fcpus.append(c)
            w, c, _ = timed(deploy_cmd(store))
            walls.append(w)
            cpus.append(c)
        cache = facts_cache(store.parent / "reports/latest.json")  # of the last no-change run
        dry, _, _ = timed(deploy_cmd(store, "--dry"))
    cmds = remote_commands(out)
    return {
        "hosts": n,
        "fleet_up_s": up_s,
        "first_s": first,
        "first_cpu_s": first_cpu,
        "nochange_s": statistics.median(walls),
        "floor_s": statistics.median(fwalls),
        "ratio": statistics.median(w / f for w, f in zip(walls, fwalls, strict=True)),
        "ratio_range": (
            min(w / f for w, f in zip(walls, fwalls, strict=True)),
            max(w / f for w, f in zip(walls, fwalls, strict=True)),
        ),
        "cpu_per_host_ms": statistics.median(cpus) / n * 1000,
        "floor_cpu_per_host_ms": statistics.median(fcpus) / n * 1000,
        "dry_s": dry,
        "cmds_max": max(cmds.values()) if cmds else 0,
        "facts_cache": cache,
    }


def facts_cache(report: Path) -> str:
    """How many hosts' facts came from the host's cache (report key facts_cache)."""
    try:
        rows = json.loads(report.read_text())["hosts"].values()
    except (OSError, ValueError, KeyError):
        return "?"
    counts = Counter(r.get("facts_cache") or "?" for r in rows)
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")),
        platform.processor(),
    )
    cores = len([ln for ln in cpuinfo if ln.startswith("processor")])
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    import pyinfra.version

    return (
        f"{cpu}, {cores} cores, {mem} GiB; Linux {platform.release()}; "
        f"Python {platform.python_version()}; pyinfra {pyinfra.version.__version__}"
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


def timed_table(store: Path, inv: str, host: str) -> float:
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
        first = {h: timed_table(store, inv, h) for h in (big, plain)}
        entries["user000007@big.test"] = "someone-else@example.net"
        inv = table_inventory(Path(tmp), entries, big)
        one = timed_table(store, inv, big)
        pairs = [
            (timed_table(store, inv, big), timed_table(store, inv, plain)) for _ in range(rounds)
        ]
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
    compile_package()
    if sys.argv[1:2] == ["table"]:
        bench_table(*[int(a) for a in sys.argv[2:4]])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sizes", nargs="*", type=int, default=[1, 32, 128])
    ap.add_argument("--pairs", type=int, default=5, help="floor/deploy pairs per size")
    args = ap.parse_args()
    results = [bench(n, args.pairs) for n in args.sizes]
    sh([PY, "sandbox/fleet.py", "down"])
    print(f"Machine: {machine()}\n")
    print(
        "| hosts | fleet up (s) | first converge (s) | first converge CPU (s) | no-change (s) "
        "| floor (s) | no-change / floor (min-max) | controller CPU per host, no-change / floor (ms) "
        "| --dry (s) | remote commands per host, no-change |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        lo, hi = r["ratio_range"]
        print(
            f"| {r['hosts']} | {r['fleet_up_s']:.0f} | {r['first_s']:.1f} | {r['first_cpu_s']:.1f} "
            f"| {r['nochange_s']:.2f} | {r['floor_s']:.2f} | {r['ratio']:.2f}x ({lo:.2f}-{hi:.2f}) "
            f"| {r['cpu_per_host_ms']:.0f} / {r['floor_cpu_per_host_ms']:.0f} | {r['dry_s']:.1f} "
            f"| {r['cmds_max']} |"
        )
    for r in results:
        print(f"\n{r['hosts']} hosts, facts cache on the last no-change run: {r['facts_cache']}")


if __name__ == "__main__":
    main()
