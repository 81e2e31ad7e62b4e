"""Issue 13 on real hosts (Debian 11, 12, 13): the facts command's cache of the postconf
answers. A write of the cache is seen as a new inode (temporary file + rename); a hit
leaves the file alone and prints what the miss that wrote it printed."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from postfix_pfs import facts
from tests.e2e.conftest import deploy, fleet_hosts, reset

CACHE = "/etc/postfix/.pfs-facts-cache"


def by_suite() -> list:
    try:
        hs = {h.suite: h for h in fleet_hosts()}
    except BaseException:  # no fleet: the tests skip
        return ["bookworm"]
    return [pytest.param(h, id=s) for s, h in sorted(hs.items())]


def run_facts(h, fresh: bool = False) -> list[str]:
    script = facts.script("/etc/postfix/tls", "/etc/postfix/maps", fresh=fresh)
    return h.ssh(f"sh -c {shlex.quote(script)}").stdout.splitlines()


def cache_state(h) -> str:
    """inode|owner|mode|type of the cache file, or '' when there is none."""
    return h.ssh(f"stat -c '%i|%U|%a|%F' {CACHE} 2>/dev/null; true").stdout.strip()


def same_run(lines: list[str]) -> list[str]:
    b = re.fullmatch(r"@@pfs-facts ([0-9a-f]{32})", lines[0]).group(1)
    return [re.sub(r"^now=\d+$", "now=", ln.replace(b, "B")) for ln in lines]


def action(run, name: str) -> str:
    path = re.search(r"--> Report: (\S+)", run.output)
    assert path, run.output[-2000:]
    with open(path.group(1)) as f:
        return json.load(f)["hosts"][name]["action"]


@pytest.mark.parametrize("h", by_suite())
def test_hit_equals_miss_and_changes_are_seen(h, store):
    reset(h.name)
    assert deploy("--limit", h.name, store=store).returncode == 0
    miss = run_facts(h, fresh=True)  # a full verification: no cache read, one written
    written = cache_state(h)
    ino, owner, mode, kind = written.split("|")
    assert (owner, mode, kind) == ("root", "600", "regular file")
    hit = run_facts(h)
    assert cache_state(h) == written  # a hit: nothing written
    assert same_run(hit) == same_run(miss)

    h.ssh("postconf -e 'delay_warning_time = 3h'")
    f = facts.parse(run_facts(h))
    assert f.postconf_n["delay_warning_time"] == "3h" and cache_state(h) != written

    old = facts.parse(run_facts(h)).postconf_d["myhostname"]
    h.ssh("hostname cache-test.example.org && echo cache-test.example.org > /etc/hostname")
    try:
        assert facts.parse(run_facts(h)).postconf_d["myhostname"] == "cache-test.example.org"
    finally:
        h.ssh(f"hostname {old} && echo {old} > /etc/hostname")
    assert facts.parse(run_facts(h)).postconf_d["myhostname"] == old

    for path in ("/usr/sbin/postconf", "/usr/lib/postfix/libpostfix-global.so"):
        before = cache_state(h)
        assert run_facts(h) and cache_state(h) == before  # a hit
        h.ssh(f"cp -p {path} {path}.pfs && mv -f {path}.pfs {path}")  # same bytes, new inode
        run_facts(h)
        assert cache_state(h) != before, path


@pytest.mark.parametrize("h", by_suite())
def test_a_planted_cache_is_never_believed_nor_followed(h):
    run_facts(h)
    h.ssh(
        f"cp {CACHE} /tmp/planted && sed -i 's/^|myhostname = .*/|myhostname = evil.test/' /tmp/planted"
    )
    # a user's file (here: made by root, then given to nobody) at the cache path
    h.ssh(f"cp /tmp/planted {CACHE} && chown nobody {CACHE}")
    assert facts.parse(run_facts(h)).postconf_n.get("myhostname") != "evil.test"
    assert cache_state(h).split("|")[1:] == ["root", "600", "regular file"]
    # a symlink to it: not read through, not written through
    h.ssh(f"chown root /tmp/planted && chmod 600 /tmp/planted && ln -sfn /tmp/planted {CACHE}")
    before = h.ssh("sha256sum /tmp/planted").stdout
    assert facts.parse(run_facts(h)).postconf_n.get("myhostname") != "evil.test"
    assert h.ssh("sha256sum /tmp/planted").stdout == before
    assert cache_state(h).split("|")[1:] == ["root", "600", "regular file"]
    h.ssh("rm -f /tmp/planted")


def test_a_managed_parameter_changed_by_hand_is_repaired_next_run(hosts, store):
    """The cache is hot after a no-change run; postconf -e then changes what the plan
    must see: the next run repairs it (a stale cache would say nothing changed)."""
    h = hosts[0]
    reset(h.name)
    assert deploy("--limit", h.name, store=store).returncode == 0
    again = deploy("--limit", h.name, store=store)
    assert again.returncode == 0 and action(again, h.name) == "none"
    assert cache_state(h)
    h.ssh("postconf -e 'smtpd_tls_protocols = >=TLSv1'")
    fix = deploy("--limit", h.name, store=store)
    assert fix.returncode == 0 and action(fix, h.name) == "reload", fix.output[-3000:]
    assert "smtpd_tls_protocols: >=TLSv1 -> >=TLSv1.2" in fix.output
    assert h.ssh("postconf -h smtpd_tls_protocols").stdout.strip() == ">=TLSv1.2"
    before = cache_state(h)
    full = deploy("--limit", h.name, store=store, extra_data={"verify_full": True})
    assert full.returncode == 0 and cache_state(h) != before  # verify_full: written anew
