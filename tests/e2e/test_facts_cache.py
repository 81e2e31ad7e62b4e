"""Issue 13 on real hosts (Debian 11, 12, 13): the facts cache. Only an operation at
execution writes it (after a successful activation or proof); the facts command never
does, so a dry run, a declined prompt and a refused or rolled-back run leave none. A
no-change run after a converge is a hit: no postconf process starts on the host (a
logging postconf ahead of the real one in root's PATH counts them)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time

import pytest

from postfix_pfs import facts
from tests.conftest import ROOT
from tests.e2e.conftest import deploy, deploy_cmd, fleet_hosts, reset
from tests.facts_output import same_run

CACHE = "/etc/postfix/.pfs-facts-cache"
CALLS = "/root/postconf.calls"
# /usr/local/sbin comes before /usr/sbin in root's PATH on Debian: every postconf is logged
WRAPPER = f'#!/bin/sh\necho "$*" >> {CALLS}\nexec /usr/sbin/postconf "$@"\n'


def by_suite() -> list:
    try:
        hs = {h.suite: h for h in fleet_hosts()}
    except BaseException:  # no fleet: the tests skip
        return ["bookworm"]
    return [pytest.param(h, id=s) for s, h in sorted(hs.items())]


def run_facts(h, env: str = "") -> list[str]:
    script = facts.script("/etc/postfix/tls", "/etc/postfix/maps")
    return h.ssh(f"{env} sh -c {shlex.quote(script)}").stdout.splitlines()


def cache_line(lines: list[str]) -> str:
    return next((ln[12:] for ln in lines if ln.startswith("facts_cache=")), "")


def cache_state(h) -> str:
    """inode|owner|mode|type of the cache file, or '' when there is none."""
    return h.ssh(f"stat -c '%i|%U|%a|%F' {CACHE} 2>/dev/null; true").stdout.strip()


def logging_postconf(h) -> None:
    h.ssh(f"printf %s {shlex.quote(WRAPPER)} > /usr/local/sbin/postconf")
    h.ssh(f"chmod 755 /usr/local/sbin/postconf; rm -f {CALLS}")


def postconf_calls(h) -> list[str]:
    return h.ssh(f"cat {CALLS} 2>/dev/null; rm -f {CALLS}").stdout.splitlines()


def hosts_report(run) -> dict:
    path = re.search(r"--> Report: (\S+)", run.output)
    assert path, run.output[-2000:]
    with open(path.group(1)) as f:
        return json.load(f)["hosts"]


def converge_then_no_change(h, store):
    """A first converge (a miss that writes the cache), then a no-change run; once more
    when the interface addresses changed in between (see addresses)."""
    for _ in range(5):
        reset(h.name)
        logging_postconf(h)
        first = deploy("--limit", h.name, store=store)
        assert first.returncode == 0, first.output[-3000:]
        assert hosts_report(first)[h.name]["facts_cache"] == "miss"
        assert cache_state(h).split("|")[1:] == ["root", "600", "regular file"]
        postconf_calls(h)
        again = deploy("--limit", h.name, store=store)
        if hosts_report(again)[h.name]["facts_cache"] == "hit" or not moved_addresses(h):
            return again
    return again


@pytest.mark.parametrize("h", by_suite())
def test_after_a_converge_a_no_change_run_is_a_hit_without_postconf(h, store):
    again = converge_then_no_change(h, store)
    assert again.returncode == 0 and again.totals()["changed"] == 0, again.output[-3000:]
    row = hosts_report(again)[h.name]
    assert (row["facts_cache"], row["action"]) == ("hit", "none"), miss_reasons(h)
    assert postconf_calls(h) == []  # no postconf process on the host
    # hit == miss: the same facts with and without the cache
    hit = run_facts(h)
    written = cache_state(h)
    h.ssh(f"mv {CACHE} {CACHE}.away")
    miss = run_facts(h)
    h.ssh(f"mv {CACHE}.away {CACHE}")
    assert (cache_line(hit), cache_line(miss)) == ("hit", "miss")  # (hit: unless addresses moved)
    assert same_run(hit) == same_run(miss)
    assert cache_state(h) == written


ADDRESSES = ("/proc/net/fib_trie", "/proc/net/if_inet6")


def miss_reasons(h) -> list[str]:
    """Why the cache is not believed now: the key lines sha256sum -c reports FAILED, or
    'not believed before the key' ([] : a hit now). The interface addresses are part of
    the key (postconf -d's mynetworks); the sandbox hosts share the machine's network
    stack, and other fleets on it add and remove loopback addresses at any time: a hit
    expected across such a change is retried (and only then)."""
    s = facts.script("/etc/postfix/tls", "/etc/postfix/maps")
    check = 'printf \'%s\\n\' "$live" "$st" | sha256sum --status -c "$C" 2>/dev/null'
    assert check in s
    s = s.replace(check, f'echo KEY >&2; {check[: check.index("--status")]}-c "$C" >&2 2>&1')
    r = h.ssh(f"sh -c {shlex.quote(s)}", check=False)
    if "KEY" not in r.stderr.splitlines():
        return ["not believed before the key"]
    return [ln for ln in r.stderr.splitlines() if ln.endswith("FAILED")]


def moved_addresses(h) -> bool:
    """True (after a pause) when only the interface addresses stood between a hit."""
    if all(ln.startswith(ADDRESSES) for ln in miss_reasons(h)):
        time.sleep(5)  # another fleet coming up adds an address every few seconds
        return True
    return False


def record(h) -> None:
    """The command the activation and the proof run after success (writes the cache)."""
    cmd = facts.record_command("/etc/postfix/tls", "/etc/postfix/maps", "", 24 * 3600)
    for _ in range(10):
        h.ssh(f"sh -c {shlex.quote(cmd)}")
        if cache_line(run_facts(h)) == "hit" or not moved_addresses(h):
            break
    assert cache_line(run_facts(h)) == "hit", miss_reasons(h)


def rename_over(path: str) -> str:
    return f"cp -p {path} {path}.pfs && mv -f {path}.pfs {path}"  # same bytes, new inode


@pytest.mark.parametrize("h", by_suite())
def test_what_the_cached_answers_depend_on_changed_is_a_miss(h, store):
    reset(h.name)
    assert deploy("--limit", h.name, store=store).returncode == 0
    record(h)
    h.ssh("postconf -e 'delay_warning_time = 3h'")
    f = run_facts(h)
    assert cache_line(f) == "miss" and facts.parse(f).postconf_n["delay_warning_time"] == "3h"
    record(h)
    old = h.ssh("hostname").stdout.strip()
    h.ssh("hostname cache-test.example.org")
    try:
        f = run_facts(h)
        assert cache_line(f) == "miss"
        assert facts.parse(f).postconf_d["myhostname"] == "cache-test.example.org"
    finally:
        h.ssh(f"hostname {old}")
    for path in ("/usr/sbin/postconf", "/usr/lib/postfix/libpostfix-global.so"):
        record(h)
        h.ssh(rename_over(path))
        assert cache_line(run_facts(h)) == "miss", path
    record(h)
    for env in ("LD_DEBUG=statistics", "MAIL_CONFIG=/etc/postfix"):
        assert cache_line(run_facts(h, env)) == "off"
    before = cache_state(h)
    full = deploy("--limit", h.name, store=store, extra_data={"verify_full": True})
    assert full.returncode == 0 and hosts_report(full)[h.name]["facts_cache"] == "off"
    assert hosts_report(full)[h.name]["verification"]["policy"].startswith("proven")
    assert cache_state(h) == before  # verify_full: neither read nor written


@pytest.mark.parametrize("h", by_suite())
def test_a_library_put_on_postconfs_runpath_is_a_miss(h):
    """Debian's postconf has RUNPATH /usr/lib/postfix: the loader looks there for libssl
    (and libc, libcrypto) before ld.so.cache. A libssl put there is the one postconf
    loads, so the cache is a miss (a copy here: the same answers, yet not the files the
    record saw); after the next record a hit again."""
    lib = h.ssh("ldd /usr/sbin/postconf | awk '/libssl/ {print $3}'").stdout.strip()
    assert lib.startswith("/"), lib
    planted = "/usr/lib/postfix/" + lib.rsplit("/", 1)[1]
    record(h)
    h.ssh(f"cp {lib} {planted}")
    try:
        loads = h.ssh("LD_DEBUG=libs /usr/sbin/postconf -h mail_version 2>&1").stdout
        assert f"calling init: {planted}" in loads  # postconf runs with the planted one
        assert cache_line(run_facts(h)) == "miss", miss_reasons(h)
    finally:
        h.ssh(f"rm -f {planted}")
    record(h)


@pytest.mark.parametrize("h", by_suite())
def test_a_planted_cache_is_never_believed_nor_followed(h):
    record(h)
    h.ssh(
        f"cp {CACHE} /tmp/planted && sed -i 's/^myhostname = .*/myhostname = evil.test/' /tmp/planted"
    )
    h.ssh(f"cp /tmp/planted {CACHE} && chown nobody {CACHE}")  # a user's file at the path
    assert facts.parse(run_facts(h)).postconf_n.get("myhostname") != "evil.test"
    h.ssh(f"chown root /tmp/planted && chmod 600 /tmp/planted && ln -sfn /tmp/planted {CACHE}")
    assert facts.parse(run_facts(h)).postconf_n.get("myhostname") != "evil.test"
    before = h.ssh("sha256sum /tmp/planted").stdout
    record(h)  # replaces the link, never writes through it
    assert h.ssh("sha256sum /tmp/planted").stdout == before
    assert cache_state(h).split("|")[1:] == ["root", "600", "regular file"]
    h.ssh("rm -f /tmp/planted")


def test_a_managed_parameter_changed_by_hand_after_a_hit_is_repaired(hosts, store):
    h = hosts[0]
    reset(h.name)
    assert deploy("--limit", h.name, store=store).returncode == 0
    record(h)  # a hit now (retried if the interface addresses moved)
    again = deploy("--limit", h.name, store=store)
    assert hosts_report(again)[h.name]["facts_cache"] == "hit", miss_reasons(h)
    h.ssh("postconf -e 'smtpd_tls_protocols = >=TLSv1'")
    fix = deploy("--limit", h.name, store=store)
    row = hosts_report(fix)[h.name]
    assert fix.returncode == 0 and row["action"] == "reload", fix.output[-3000:]
    assert row["facts_cache"] == "miss"
    assert "smtpd_tls_protocols: >=TLSv1 -> >=TLSv1.2" in fix.output
    assert h.ssh("postconf -h smtpd_tls_protocols").stdout.strip() == ">=TLSv1.2"
    assert cache_state(h)  # the repair's activation wrote the cache anew


def test_a_stale_proof_proven_again_writes_the_cache(hosts, store):
    """A converged host without a cache (deleted): a no-change run misses; once the proof
    is stale, the re-proof writes the cache and the next run hits."""
    h = hosts[0]
    reset(h.name)
    assert deploy("--limit", h.name, store=store).returncode == 0
    h.ssh(f"rm -f {CACHE}")
    run = deploy("--limit", h.name, store=store)
    assert run.totals()["changed"] == 0 and hosts_report(run)[h.name]["facts_cache"] == "miss"
    assert cache_state(h) == ""  # a miss writes nothing
    h.ssh("sed -i 's/^time=.*/time=1000000000/' /etc/postfix/.pfs-evidence")  # proven in 2001
    run = deploy("--limit", h.name, store=store)
    assert run.returncode == 0 and cache_state(h), run.output[-3000:]  # the proof wrote it


def prepare_only(args: list[str], store, stdin: str | None = None):
    cmd = [c for c in deploy_cmd(*args, store=store) if c != "-y"]
    return subprocess.run(cmd, cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=600)


def test_runs_that_only_prepare_or_are_refused_write_no_cache(hosts, store):
    """On hosts without a cache: --dry, a declined prompt, a refused run and a rolled-back
    activation leave none (the facts command ran every time)."""
    reset()
    for args, stdin in ((["--dry"], None), ([], "n\n")):
        r = prepare_only(args, store, stdin)
        assert "Beginning operation run" not in r.stdout + r.stderr
        assert [cache_state(h) for h in hosts] == [""] * len(hosts), args
    h = hosts[0]
    refused = deploy("--limit", h.name, store=store, extra_data={"tls_cert_source": "files"})
    assert refused.returncode != 0 and "needs tls_cert_file" in refused.output
    assert cache_state(h) == ""
    bad = deploy(
        "--limit", h.name, store=store, extra_data={"postfix_extra": {"mail_owner": "nosuchuser"}}
    )
    assert bad.returncode != 0 and "postfix check rejects" in bad.output, bad.output[-3000:]
    assert cache_state(h) == ""
