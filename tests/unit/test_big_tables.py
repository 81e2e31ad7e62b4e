"""Big lookup tables (issue 18): validation finds a bad entry among 100,000, the
controller's part stays linear, and the plan shows counts, never entries."""

import time

import pytest

from postfix_pfs import plan, plan_view, report, settings
from postfix_pfs.facts import FileState
from tests.unit.helpers import NOW, make_settings, recorded

N = 100_000
HOST = "d12-mx1.sandbox.test"


def big(n: int = N, **extra) -> dict:
    t = {f"user{i:06d}@big.test": f"mbox{i:06d}@example.net" for i in range(n)}
    t.update(extra)
    return t


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ({"last one@big.test": "x"}, "must be one word"),
        ({"#comment@big.test": "x"}, "must be one word"),
        ({"": "x"}, "must be one word"),
        ({"blank@big.test": "   "}, "must be a non-empty string"),
        ({"num@big.test": 3}, "must be a non-empty string"),
        ({"nl@big.test": "a\nrelayhost = x"}, "control character"),
        ({"nl\n@big.test": "a"}, "control character"),
        ({"tab@big.test": "a\tb"}, "control character"),
    ],
)
def test_one_bad_entry_among_100000_is_named(bad, fragment):
    with pytest.raises(settings.SettingsError) as e:
        make_settings(HOST, virtual_alias_maps=big(**bad))
    assert len(e.value.problems) == 1
    assert "virtual_alias_maps" in e.value.problems[0] and fragment in e.value.problems[0]


def test_validation_and_rendering_stay_linear():
    """10x the entries costs about 10x the time, not 100x (a quadratic step would)."""

    def cost(n: int) -> float:
        data = big(n)
        t = time.perf_counter()
        s = make_settings(HOST, virtual_alias_maps=data)
        plan.table_files(s, recorded("debian12"))
        return time.perf_counter() - t

    small = min(cost(N // 10) for _ in range(3))
    large = min(cost(N) for _ in range(3))
    assert large < 30 * small + 0.05, (small, large)
    assert large < 2.0, large


def _plan(entries: dict, facts):
    s = make_settings(
        HOST, inet_interfaces=["127.0.2.1"], inet_protocols="ipv4", virtual_alias_maps=entries
    )
    decision = plan.choose_cert(s, facts, NOW)
    return plan.make(HOST, s, facts, decision, [], stages={"maincf"})


def with_table(facts, path: str, sha: str, entries: int, compiled: bool = True):
    facts.files[path] = FileState(path, True, sha, "644", "root", "root")
    if compiled:
        facts.files[path + ".db"] = FileState(path + ".db", True, "", "644", "root", "root")
    facts.table_entries[path] = entries
    return facts


VIRTUAL = "/etc/postfix/maps/virtual"


@pytest.mark.parametrize(
    "host_state, line",
    [
        (None, f"{VIRTUAL}: 3 entries (new)"),
        (("other", 2, True), f"{VIRTUAL}: 3 entries (was 2)"),
        (("same", 3, False), f"{VIRTUAL}: 3 entries (same content; compiled file missing)"),
    ],
)
def test_plan_shows_one_line_per_table_with_counts(host_state, line):
    entries = big(3)
    f = recorded("debian12")
    if host_state:
        sha, count, compiled = host_state
        if sha == "same":
            sha = next(x for x in plan.table_files(_settings(entries), f) if x.path == VIRTUAL)
            sha = sha.sha256
        with_table(f, VIRTUAL, sha, count, compiled)
    view = plan_view.describe(_plan(entries, f), f, _settings(entries))
    assert view["tables"] == [line]
    assert f"    table {line}" in plan_view.render(HOST, view)
    assert not any("user0000" in x for x in plan_view.render(HOST, view))
    assert not any(VIRTUAL in x for x in view["files"])  # a table is a table line, not a file


def _settings(entries):
    return make_settings(
        HOST, inet_interfaces=["127.0.2.1"], inet_protocols="ipv4", virtual_alias_maps=entries
    )


def test_unchanged_big_table_is_not_in_the_plan():
    entries = big(N)
    f = recorded("debian12")
    table = next(x for x in plan.table_files(_settings(entries), f) if x.path == VIRTUAL)
    with_table(f, VIRTUAL, table.sha256, N)
    p = _plan(entries, f)
    assert VIRTUAL not in [x.path for x in p.changed]
    assert plan_view.describe(p, f, _settings(entries))["tables"] == []


def test_summary_reads_what_the_host_counted():
    lines = [
        "postfix-pfs: table /etc/postfix/maps/virtual: 1 added, 0 removed, 2 changed",
        "postfix-pfs: reload done, STARTTLS on 127.0.2.1:25 verified",
    ]
    assert report.table_deltas(lines) == {
        "/etc/postfix/maps/virtual": "1 added, 0 removed, 2 changed"
    }
