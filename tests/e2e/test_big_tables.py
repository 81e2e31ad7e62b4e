"""Real-sized data (issue 18): a 20,000-entry virtual alias table from data.

The table is passed as a group_data file (as a user would keep it), not on the
command line. The host's openssl is wrapped for the test so every call is
logged: the facts command must never parse a lookup table as a certificate.
"""

from __future__ import annotations

import json
import time

from tests.e2e.conftest import deploy, inventory_with, reset

N = 20_000
DOMAIN = "big.test"
MAPS = "/etc/postfix/maps"
OPENSSL_LOG = "/var/log/openssl-calls.log"


def aliases(n: int = N, **changes: str) -> dict[str, str]:
    out = {f"user{i:05d}@{DOMAIN}": f"mbox{i:05d}@example.net" for i in range(n)}
    out.update(changes)
    return out


def big_inventory(tmp_path, name: str, table: dict[str, str]) -> str:
    """The sandbox inventory; the table lives in a JSON file beside group_data/sandbox.py,
    which loads it (as README "Big tables" advises: pyinfra parses a group_data file's
    source once per name it defines, so a 100,000-entry literal there costs seconds)."""
    d = tmp_path / name
    (d / "group_data").mkdir(parents=True)
    (d / "group_data" / "virtual.json").write_text(json.dumps(table))
    data = (
        "import json as _json\n"
        "from pathlib import Path as _Path\n"
        "maillog_file = '/var/log/postfix.log'\n"
        f"virtual_alias_domains = [{DOMAIN!r}]\n"
        "canonical_maps = {'root@localhost': 'postmaster@example.net'}\n"
        "virtual_alias_maps = _json.loads((_Path(__file__).parent / 'virtual.json').read_text())\n"
    )
    return inventory_with(d, {}, groups={"sandbox": data})


def wrap_openssl(h) -> None:
    """Log every openssl call on the host (arguments only), then run the real one."""
    h.ssh(
        "mv /usr/bin/openssl /usr/bin/openssl.real && printf '%s\\n' '#!/bin/sh' "
        f"'echo \"$*\" >> {OPENSSL_LOG}' 'exec /usr/bin/openssl.real \"$@\"' "
        "> /usr/bin/openssl && chmod 755 /usr/bin/openssl"
    )


def lookup(h, key: str) -> str:
    maps = h.ssh("postconf -h virtual_alias_maps").stdout.strip()
    return h.ssh(f"postmap -q {key} {maps}", check=False).stdout.strip()


def db_mtimes(h) -> dict[str, str]:
    out = h.ssh(f"stat -c '%n %y' {MAPS}/*.db").stdout.splitlines()
    return dict(line.split(" ", 1) for line in out)


def test_big_table_converges_changes_one_entry_and_stays_cheap(hosts, store, tmp_path):
    h = next(h for h in hosts if h.suite == "bookworm")
    reset(h.name)
    wrap_openssl(h)

    t = time.perf_counter()
    first = deploy(
        "--limit", h.name, store=store, inventory=big_inventory(tmp_path, "a", aliases())
    )
    first_s = time.perf_counter() - t
    assert first.returncode == 0, first.output[-3000:]
    assert lookup(h, f"user12345@{DOMAIN}") == "mbox12345@example.net"

    before, pid = db_mtimes(h), h.master_pid()
    time.sleep(1.1)
    changed = aliases(**{f"user00007@{DOMAIN}": "someone-else@example.net"})
    t = time.perf_counter()
    one = deploy("--limit", h.name, store=store, inventory=big_inventory(tmp_path, "b", changed))
    one_s = time.perf_counter() - t
    assert one.returncode == 0, one.output[-3000:]
    # this run's facts command saw the table: it hashed it and never handed it to openssl
    calls = h.ssh(f"cat {OPENSSL_LOG} 2>/dev/null || true").stdout
    assert MAPS not in calls, [c for c in calls.splitlines() if MAPS in c][:3]
    # the plans: one line per table with its entry count, never the entries
    assert f"table {MAPS}/virtual: {N} entries (new)" in first.output, first.output[-3000:]
    assert f"user00042@{DOMAIN}" not in first.output
    after = db_mtimes(h)
    assert [p for p in after if after[p] != before[p]] == [f"{MAPS}/virtual.db"]
    assert lookup(h, f"user00007@{DOMAIN}") == "someone-else@example.net"
    assert h.master_pid() == pid, "a table change restarted Postfix"
    assert f"table {MAPS}/virtual: {N} entries (was {N})" in one.output, one.output[-3000:]
    assert f"user00007@{DOMAIN}" not in one.output
    # the summary: what the change did, counted on the host by key
    assert (
        f"table {MAPS}/virtual: {N} entries (was {N}); 0 added, 0 removed, 1 changed" in one.output
    )

    t = time.perf_counter()
    again = deploy(
        "--limit", h.name, "-vv", store=store, inventory=big_inventory(tmp_path, "c", changed)
    )
    again_s = time.perf_counter() - t
    assert again.returncode == 0, again.output[-3000:]
    assert again.totals()["changed"] == 0, again.output[-3000:]
    assert "Uploading" not in again.output, "a no-change run uploaded a file"
    assert db_mtimes(h) == after
    print(f"\n{N} entries: first {first_s:.1f}s, one entry {one_s:.1f}s, no change {again_s:.1f}s")
