"""The facts command's cache of the postconf answers (issue 13), run for real here.

A stand-in `postconf` (a shell script that logs each call) answers from the host
tree's main.cf; the cache lives in that tree's config directory. A hit must print
exactly what the miss that wrote the cache printed, without running postconf; any
change of what the answers depend on, and any doubt about the cache file, is a miss.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from postfix_pfs import facts

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the cache is root's only")


class Host:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.conf = tmp / "etc/postfix"
        for d in (self.conf / "tls", self.conf / "maps", tmp / "spool/pid", tmp / "bin"):
            d.mkdir(parents=True, exist_ok=True)
        tmp.chmod(0o755)
        (self.conf / "main.cf").write_text("myhostname = mx1.example.net\n")
        (self.conf / "master.cf").write_text("smtp inet n - y - - smtpd\n")
        self.calls = tmp / "calls"
        self.stub = tmp / "bin/postconf"
        self.write_stub()
        self.cache = self.conf / ".pfs-facts-cache"

    def write_stub(self, extra: str = "") -> None:
        self.stub.write_text(
            textwrap.dedent(f"""\
            #!/bin/sh
            printf '%s\\n' "$*" >> {self.calls}
            case "$*" in
              -x*) echo "config_directory = {self.conf}"; echo "queue_directory = {self.tmp}/spool"
                   echo "mail_version = 3.7.11"; echo "smtpd_tls_cert_file =" ;;
              -d) echo "mail_version = 3.7.11"; echo "process_id = $$"; echo "myhostname = $(cat /proc/sys/kernel/hostname)" ;;
              "-T run-version") echo "OpenSSL 3.0.20 7 Apr 2026" ;;
              -n) cat {self.conf}/main.cf; echo "postconf: warning: {self.conf}/main.cf: unused parameter: x=1" >&2 ;;
            esac
            {extra}
            """)
        )
        self.stub.chmod(0o755)

    def run(self, fresh: bool = False, env: dict | None = None) -> tuple[list[str], list[str]]:
        """(the output lines, the postconf calls it made)"""
        self.calls.write_text("")
        script = facts.script(
            str(self.conf / "tls"), str(self.conf / "maps"), fresh=fresh, cache_dir=str(self.conf)
        )
        e = {**os.environ, "PATH": f"{self.tmp}/bin:{os.environ['PATH']}", **(env or {})}
        for k in ("MAIL_CONFIG", "LD_LIBRARY_PATH", "LD_PRELOAD", "LD_AUDIT"):
            if k not in (env or {}):
                e.pop(k, None)
        out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env=e)
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines(), self.calls.read_text().splitlines()


def same_run(lines: list[str]) -> list[str]:
    """The output with this run's boundary and clock taken out."""
    b = re.fullmatch(r"@@pfs-facts ([0-9a-f]{32})", lines[0]).group(1)
    return [re.sub(r"^now=\d+$", "now=", ln.replace(b, "B")) for ln in lines]


@pytest.fixture
def host(tmp_path):
    return Host(tmp_path)


def test_a_hit_prints_what_the_miss_printed_and_runs_no_postconf(host):
    miss, calls = host.run()
    assert len(calls) == 4  # -x, -d, -T run-version, -n
    hit, calls = host.run()
    assert calls == []
    assert same_run(hit) == same_run(miss)  # byte for byte, but for the boundary and clock
    f = facts.parse(hit)
    assert f.postconf_n == {"myhostname": "mx1.example.net"}
    assert f.postconf_d["mail_version"] == "3.7.11" and f.run_version.startswith("OpenSSL 3")
    assert f.postconf_n_warnings == [
        f"postconf: warning: {host.conf}/main.cf: unused parameter: x=1"
    ]


def test_the_cache_is_roots_0600_regular_file(host):
    host.run()
    st = host.cache.lstat()
    assert (st.st_uid, oct(st.st_mode)) == (0, "0o100600")


def change_main_cf(h: Host) -> None:
    with open(h.conf / "main.cf", "a") as f:
        f.write("smtpd_banner = changed\n")


def change_master_cf(h: Host) -> None:
    with open(h.conf / "master.cf", "a") as f:
        f.write("submission inet n - y - - smtpd\n")


def add_dynamicmaps(h: Host) -> None:
    (h.conf / "dynamicmaps.cf").write_text("pcre /usr/lib/postfix/postfix-pcre.so dict_pcre_open\n")


def replace_postconf(h: Host) -> None:
    """A package upgrade: the same content, a new file renamed over the old (new inode)."""
    shutil.copy2(h.stub, h.tmp / "postconf.new")
    os.rename(h.tmp / "postconf.new", h.stub)


@pytest.mark.parametrize(
    "change", [change_main_cf, change_master_cf, add_dynamicmaps, replace_postconf]
)
def test_a_change_of_what_postconf_reads_is_a_miss(host, change):
    host.run()
    change(host)
    out, calls = host.run()
    assert len(calls) == 4
    if change is change_main_cf:
        assert facts.parse(out).postconf_n["smtpd_banner"] == "changed"
    assert host.run()[1] == []  # and the new answers are cached


def test_the_script_itself_is_in_the_key(host, monkeypatch):
    host.run()
    monkeypatch.setattr(facts, "TLS_FILE_PARAMS", (*facts.TLS_FILE_PARAMS, "smtpd_tls_CAfile"))
    assert len(host.run()[1]) == 4


def test_a_full_verification_reads_no_cache_and_writes_it_anew(host):
    host.run()
    ino = host.cache.stat().st_ino
    assert len(host.run(fresh=True)[1]) == 4
    assert host.cache.stat().st_ino != ino
    assert host.run()[1] == []


def test_an_old_cache_is_a_miss(host):
    host.run()
    text = host.cache.read_text()
    head, rest = text.split("\n", 1)
    magic, sid, t, n = head.split(" ")
    old = str(int(t) - facts.CACHE_MAX_AGE - 1)
    host.cache.write_text(f"{magic} {sid} {old} {n}\n{rest}")  # same length
    assert len(host.run()[1]) == 4


def test_a_truncated_cache_is_a_miss(host):
    host.run()
    data = host.cache.read_bytes()
    host.cache.write_bytes(data[:-5])
    assert len(host.run()[1]) == 4


def test_a_cache_with_a_forged_answer_is_a_miss_unless_it_is_roots_0600(host):
    host.run()
    text = host.cache.read_text().replace("mx1.example.net", "mx6.example.net")
    host.cache.write_text(text)  # same length: only owner and mode can refuse it
    os.chown(host.cache, 65534, 65534)
    out, calls = host.run()
    assert len(calls) == 4 and facts.parse(out).postconf_n["myhostname"] == "mx1.example.net"
    st = host.cache.lstat()
    assert (st.st_uid, oct(st.st_mode)) == (0, "0o100600")  # replaced by root's own
    host.cache.write_text(text)
    host.cache.chmod(0o644)
    assert len(host.run()[1]) == 4
    # the same file as root's 0600 would be believed: owner and mode are what refused it
    host.cache.write_text(text)
    host.cache.chmod(0o600)
    out, calls = host.run()
    assert calls == [] and facts.parse(out).postconf_n["myhostname"] == "mx6.example.net"


def test_a_symlink_at_the_cache_path_is_never_followed(host):
    host.run()
    planted = host.tmp / "planted"
    shutil.copy2(host.cache, planted)
    before = planted.read_bytes()
    host.cache.unlink()
    host.cache.symlink_to(planted)
    assert len(host.run()[1]) == 4  # not read through the link
    assert planted.read_bytes() == before  # not written through it
    assert not host.cache.is_symlink() and host.cache.lstat().st_uid == 0


def test_a_directory_at_the_cache_path_gets_nothing_written_into_it(host):
    d = host.tmp / "dir"
    d.mkdir()
    host.cache.symlink_to(d)
    host.run()
    assert len(host.run()[1]) == 4 and list(d.iterdir()) == []


def test_a_config_directory_others_can_write_gets_no_cache(host):
    host.conf.chmod(0o775)
    host.run()
    assert not host.cache.exists()
    assert len(host.run()[1]) == 4


@pytest.mark.parametrize("var", ["MAIL_CONFIG", "LD_LIBRARY_PATH", "LD_PRELOAD"])
def test_an_environment_that_changes_postconf_gets_no_cache(host, var):
    host.run()
    assert len(host.run(env={var: str(host.tmp)})[1]) == 4


def test_cached_answers_cannot_start_a_section(host):
    """main.cf is root's, but its lines are data: one that looks like the cache's own
    marker, or like a facts section, stays a line of the postconf -n answer."""
    (host.conf / "main.cf").write_text("myhostname = mx1.example.net\n@ files\n@@x files\n|x\n")
    miss, _ = host.run()
    hit, calls = host.run()
    assert calls == [] and same_run(hit) == same_run(miss)
    f = facts.parse(hit)
    assert f.postconf_n == {"myhostname": "mx1.example.net"}
    assert all(not p.startswith(str(host.conf) + "/x") for p in f.files)
