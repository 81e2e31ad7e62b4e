"""The facts cache (issue 13), run for real here as root.

A stand-in `postconf` (a shell script that logs each call) answers from the host
tree's main.cf; the cache lives in that tree's config directory. The facts command
(read mode) never writes; the record mode (run by an operation after a successful
activation or proof) writes the cache. A hit prints what a miss prints without running
postconf; any change of what the cached output depends on, and any doubt about the
cache file, is a miss.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from postfix_pfs import facts
from tests.facts_output import same_run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the cache is root's only")

MAX_AGE = 3600
UNSHARE = ["unshare", "--net"] if shutil.which("unshare") else []


class Host:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.conf = tmp / "etc/postfix"
        self.tls, self.maps = self.conf / "tls", self.conf / "maps"
        for d in (self.tls, self.maps, tmp / "spool/pid", tmp / "bin"):
            d.mkdir(parents=True, exist_ok=True)
        tmp.chmod(0o755)
        (self.conf / "main.cf").write_text("myhostname = mx1.example.net\n")
        (self.conf / "master.cf").write_text("smtp inet n - y - - smtpd\n")
        (self.tls / "rsa.pem").write_text("not a certificate\n")
        (self.maps / "virtual").write_text("a@example.net b@example.net\n")
        (self.maps / "virtual.db").write_bytes(b"compiled")
        self.calls = tmp / "calls"
        self.stub = tmp / "bin/postconf"
        self.write_stub()
        self.cache = self.conf / ".pfs-facts-cache"

    def write_stub(self, extra: str = "") -> None:
        c = self.conf
        self.stub.write_text(
            textwrap.dedent(f"""\
            #!/bin/sh
            printf '%s\\n' "$*" >> {self.calls}
            {extra}
            case "$*" in
              -x*) echo "config_directory = {c}"; echo "queue_directory = {self.tmp}/spool"
                   echo "meta_directory = {c}"; echo "mail_version = 3.7.11"
                   echo "smtpd_tls_cert_file = {self.tls}/rsa.pem" ;;
              -d) echo "mail_version = 3.7.11"; echo "process_id = $$"
                  echo "myhostname = $(cat /proc/sys/kernel/hostname)" ;;
              "-T run-version") echo "OpenSSL 3.0.20 7 Apr 2026" ;;
              -n) cat {c}/main.cf; echo "postconf: warning: {c}/main.cf: unused parameter: x=1" >&2 ;;
            esac
            """)
        )
        self.stub.chmod(0o755)

    def script(self, **kw) -> str:
        kw.setdefault("max_age", MAX_AGE)
        return facts.script(
            str(self.tls),
            str(self.maps),
            f"{self.tmp}/home/*/cert*",
            cache_dir=str(self.conf),
            **kw,
        )

    def run(self, env: dict | None = None, wrap: list[str] = (), **kw) -> tuple[list[str], list]:
        """(the output lines, the postconf calls it made). In a network namespace of its
        own: the key holds this machine's interface addresses (postconf -d's mynetworks),
        which other sandbox fleets on it change at any time."""
        self.calls.write_text("")
        e = {**os.environ, "PATH": f"{self.tmp}/bin:{os.environ['PATH']}"}
        e = {k: v for k, v in e.items() if not k.startswith(("LD_", "MAIL_"))}
        out = subprocess.run(
            [*UNSHARE, *wrap, "/bin/sh", "-c", self.script(**kw)],
            capture_output=True,
            text=True,
            env={**e, **(env or {})},
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines(), self.calls.read_text().splitlines()

    def record(self, **kw) -> list[str]:
        out, calls = self.run(record=True, **kw)
        assert out == []  # the record prints nothing
        return calls

    def state(self) -> tuple | None:
        """inode, mtime and bytes of the cache file, or None."""
        if not self.cache.exists():
            return None
        st = self.cache.lstat()
        return st.st_ino, st.st_mtime_ns, self.cache.read_bytes()


def cache_line(lines: list[str]) -> str:
    return next(ln.split("=", 1)[1] for ln in lines if ln.startswith("facts_cache="))


@pytest.fixture
def host(tmp_path):
    return Host(tmp_path)


def test_the_facts_command_never_writes_the_cache(host):
    for _ in range(2):
        out, calls = host.run()
        assert cache_line(out) == "miss" and len(calls) == 4
        assert not host.cache.exists() and not list(host.conf.glob(".pfs-facts-cache*"))
    host.record()
    before = host.state()
    out, calls = host.run()
    assert cache_line(out) == "hit" and calls == []
    assert host.state() == before  # a hit reads, never writes


def test_a_hit_prints_what_a_miss_prints_and_runs_no_postconf(host):
    miss, _ = host.run()
    assert len(host.record()) == 5  # -x twice (before and after the key), -d, -T, -n
    hit, calls = host.run()
    assert calls == [] and cache_line(hit) == "hit"
    assert same_run(hit) == same_run(miss)  # byte for byte, but boundary, clock, pid
    f = facts.parse(hit)
    assert f.facts_cache == "hit" and f.postconf_n == {"myhostname": "mx1.example.net"}
    assert f.postconf_d["mail_version"] == "3.7.11" and f.run_version.startswith("OpenSSL 3")
    assert f.postconf_n_warnings == [
        f"postconf: warning: {host.conf}/main.cf: unused parameter: x=1"
    ]
    assert f.file(str(host.tls / "rsa.pem")).exists and f.table_entries


def test_the_evidence_and_the_clock_are_live_on_a_hit(host):
    host.record()
    (host.conf / ".pfs-evidence").write_text("digest=abc\ntime=5\n")
    out, calls = host.run()
    assert calls == []
    ev = facts.parse(out).evidence
    assert ev[-2:] == ["digest=abc", "time=5"] and re.fullmatch(r"now=\d{10}", ev[0])


def test_the_cache_is_roots_0600_regular_file(host):
    host.record()
    st = host.cache.lstat()
    assert (st.st_uid, oct(st.st_mode)) == (0, "0o100600")


def edit_main_cf_keeping_size_and_mtime(h: Host) -> None:
    main = h.conf / "main.cf"
    st = main.stat()
    main.write_text(main.read_text().replace("mx1", "mx9"))
    os.utime(main, ns=(st.st_atime_ns, st.st_mtime_ns))


def chmod_the_certificate(h: Host) -> None:
    (h.tls / "rsa.pem").chmod(0o640)


def replace_postconf_by_rename(h: Host) -> None:
    """A package upgrade: the same content, a new file renamed over the old (new inode)."""
    shutil.copy2(h.stub, h.tmp / "postconf.new")
    os.rename(h.tmp / "postconf.new", h.stub)


CHANGES = {
    "main.cf (touch -r)": edit_main_cf_keeping_size_and_mtime,
    "master.cf": lambda h: (h.conf / "master.cf").write_text("submission inet n - y - - smtpd\n"),
    "dynamicmaps.cf added": lambda h: (h.conf / "dynamicmaps.cf").write_text("pcre x y\n"),
    "dynamicmaps.cf.d file": lambda h: (
        (h.conf / "dynamicmaps.cf.d").mkdir() or (h.conf / "dynamicmaps.cf.d/x").write_text("x\n")
    ),
    "chmod of a key file": chmod_the_certificate,
    "postconf replaced": replace_postconf_by_rename,
    "new file in tls_dir": lambda h: (h.tls / "new.pem").write_text("x\n"),
    "table source": lambda h: (h.maps / "virtual").write_text("c@example.net d@example.net\n"),
    "compiled table (identity only)": lambda h: (h.maps / "virtual.db").write_bytes(b"again!!!"),
    "digest key": lambda h: (h.conf / ".pfs-digest-key").write_text("k\n"),
    "a glob match appears": lambda h: (
        (h.tmp / "home/alice").mkdir(parents=True)
        or (h.tmp / "home/alice/cert.pem").write_text("x\n")
    ),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_a_change_of_a_key_input_is_a_miss_with_fresh_values(host, change):
    host.record()
    change(host)
    out, calls = host.run()
    assert cache_line(out) == "miss" and len(calls) == 4
    if change is edit_main_cf_keeping_size_and_mtime:
        assert facts.parse(out).postconf_n["myhostname"] == "mx9.example.net"
    if change is chmod_the_certificate:
        assert facts.parse(out).file(str(host.tls / "rsa.pem")).mode == "640"
    host.record()
    assert host.run()[1] == []  # recorded anew: a hit again


def test_another_hostname_is_a_miss(host):
    if not shutil.which("unshare"):
        pytest.skip("needs unshare")
    host.record()
    wrap = ["unshare", "--uts", "sh", "-c", 'hostname cache-test.example.org && exec "$@"', "-"]
    assert UNSHARE
    out, calls = host.run(wrap=wrap)
    assert len(calls) == 4
    assert facts.parse(out).postconf_d["myhostname"] == "cache-test.example.org"
    assert host.run()[1] == []  # the cache itself is still good for this hostname


@pytest.mark.parametrize(
    "env", [{"LD_DEBUG": "statistics"}, {"LD_BIND_NOW": "1"}, {"MAIL_CONFIG": "/x"}]
)
def test_an_environment_that_changes_postconf_gets_no_cache(host, env):
    host.record()
    out, calls = host.run(env=env)
    assert cache_line(out) == "off" and len(calls) == 4
    before = host.state()
    host.record(env=env)  # nor is one written from such a shell
    assert host.state() == before


def test_a_full_verification_or_max_age_0_neither_reads_nor_writes(host):
    host.record()
    before = host.state()
    for kw in ({"full": True}, {"max_age": 0}):
        out, calls = host.run(**kw)
        assert cache_line(out) == "off" and len(calls) == 4
        host.record(**kw)
        assert host.state() == before


def test_a_cache_of_another_script_is_a_miss(host):
    host.record()
    out, calls = host.run(max_age=MAX_AGE + 1)  # another parameter: another script id
    assert len(calls) == 4


def rewrite_header(h: Host, fn) -> None:
    """Rewrite the cache's first line (fn: fields -> fields), keeping it root's 0600."""
    head, rest = h.cache.read_bytes().split(b"\n", 1)
    fields = head.decode().split(" ")
    h.cache.write_bytes(" ".join(fn(fields)).encode() + b"\n" + rest)


@pytest.mark.parametrize(
    "age, believed", [(0, True), (MAX_AGE - 60, True), (MAX_AGE + 1, False), (-600, False)]
)
def test_a_cache_too_old_or_from_the_future_is_a_miss(host, age, believed):
    host.record()
    rewrite_header(host, lambda f: [*f[:2], str(int(f[2]) - age), *f[3:]])
    assert (host.run()[1] == []) is believed


def test_a_truncated_or_padded_cache_is_a_miss(host):
    host.record()
    data = host.cache.read_bytes()
    host.cache.write_bytes(data[:-5])
    assert len(host.run()[1]) == 4
    host.cache.write_bytes(data + b"x\n")
    assert len(host.run()[1]) == 4


def forge(h: Host) -> None:
    """The cache with another myhostname, same length: only owner and mode can refuse it."""
    h.cache.write_bytes(h.cache.read_bytes().replace(b"mx1.example.net", b"mx6.example.net"))


def test_a_cache_not_roots_0600_is_not_believed(host):
    host.record()
    forge(host)
    os.chown(host.cache, 65534, 65534)
    out, calls = host.run()
    assert len(calls) == 4 and facts.parse(out).postconf_n["myhostname"] == "mx1.example.net"
    os.chown(host.cache, 0, 0)
    host.cache.chmod(0o644)
    assert len(host.run()[1]) == 4
    host.cache.chmod(0o600)  # the same file as root's 0600 is believed: owner, mode refused it
    out, calls = host.run()
    assert calls == [] and facts.parse(out).postconf_n["myhostname"] == "mx6.example.net"


def test_a_symlink_at_the_cache_path_is_never_followed(host):
    host.record()
    planted = host.tmp / "planted"
    shutil.copy2(host.cache, planted)
    before = planted.read_bytes()
    host.cache.unlink()
    host.cache.symlink_to(planted)
    assert len(host.run()[1]) == 4  # not read through the link
    host.record()
    assert planted.read_bytes() == before  # not written through it
    assert not host.cache.is_symlink() and host.cache.lstat().st_uid == 0


def test_a_directory_at_the_cache_path_gets_nothing_written_into_it(host):
    d = host.tmp / "dir"
    d.mkdir()
    host.cache.symlink_to(d)
    host.record()
    assert len(host.run()[1]) == 4 and list(d.iterdir()) == []


def test_a_config_directory_others_can_write_gets_no_cache(host):
    host.record()
    host.conf.chmod(0o775)
    assert len(host.run()[1]) == 4  # not believed
    host.cache.unlink()
    host.record()
    assert not host.cache.exists()  # not written


def test_a_change_undone_while_the_record_ran_is_not_cached(host):
    """An admin's `postconf -e` (a new main.cf renamed in) lands after the record took its
    key and before `postconf -n` reads main.cf, and a second one puts the same bytes back
    before the key is taken again: the content is the key's, the answers are not. The
    identity (new inode, ctime) differs, so nothing is written."""
    main = host.conf / "main.cf"
    edit, undo = host.tmp / "main.cf.edit", host.tmp / "main.cf.undo"
    edit.write_text(main.read_text() + "smtpd_tls_security_level = may\n")
    shutil.copy2(main, undo)
    host.write_stub(
        f'[ "$*" = -d ] && [ -f {edit} ] && mv {edit} {main}\n'
        f'[ "$*" = -n ] && [ -f {undo} ] && {{ cat {main}; mv {undo} {main}; exit 0; }}\n'
    )
    host.record()
    assert main.read_text() == "myhostname = mx1.example.net\n"  # the edit is undone
    assert not host.cache.exists()
    out, calls = host.run()
    assert len(calls) == 4 and facts.parse(out).postconf_n == {"myhostname": "mx1.example.net"}


def test_an_answer_that_moved_while_the_record_ran_is_not_cached(host):
    """postconf -x is asked before the key and again inside it: they must agree."""
    flag = host.tmp / "flag"
    host.write_stub(
        f'case "$*" in -x*) [ -f {flag} ] && {{ echo "config_directory = /other"; exit 0; }}; '
        f"touch {flag} ;; esac\n"
    )
    host.record()
    assert not host.cache.exists()


def test_a_cache_spliced_from_two_records_is_not_believed(host):
    """The key lines of a newer record cannot vouch for the output of an older one (a
    cache renamed in between the facts command's open and its check): the record's
    boundary is part of the key."""
    host.record()
    old = host.cache.read_bytes()
    chmod_the_certificate(host)  # in the key's identities only (no sha256sum line shows it)
    host.record()
    new = host.cache.read_bytes()
    head, ki, rest = old.split(b"\n", 2)
    b_old, b_new = head.split(b" ")[3], new.split(b"\n", 1)[0].split(b" ")[3]
    block = rest.split(b"@@" + b_old + b" key\n")[0]
    keys = new.split(b"@@" + b_new + b" key\n")[1]
    body = ki + b"\n" + block + b"@@" + b_old + b" key\n" + keys.replace(b_new, b_old)
    fields = head.split(b" ")
    fields[5] = str(len(body)).encode()
    host.cache.write_bytes(b" ".join(fields) + b"\n" + body)
    out, calls = host.run()
    assert len(calls) == 4 and facts.parse(out).file(str(host.tls / "rsa.pem")).mode == "640"


def test_cached_lines_cannot_start_a_section(host):
    """main.cf is root's, but its lines are data: one that looks like the cache's own
    markers or like a facts section stays a line of the postconf -n answer."""
    (host.conf / "main.cf").write_text(
        "myhostname = mx1.example.net\n@@ files\n@@x files\nnow=@\n|x\n"
    )
    miss, _ = host.run()
    host.record()
    hit, calls = host.run()
    assert calls == [] and same_run(hit) == same_run(miss)
    f = facts.parse(hit)
    assert f.postconf_n == {"myhostname": "mx1.example.net"}
    assert all(not p.startswith(str(host.conf) + "/x") for p in f.files)


def test_a_stat_without_nanoseconds_gets_no_cache(host):
    """An edit within the same second keeps a seconds-only mtime and ctime: a stat that
    prints no nanoseconds (not GNU's) cannot key the identities, so no cache at all."""
    real, fake = shutil.which("stat"), host.tmp / "bin/stat"
    text = f'#!/bin/sh\nf=$2; shift 2\nexec {real} -c "$(echo "$f" | sed "s/%\\.9/%/g")" "$@"\n'
    fake.write_text(text)
    fake.chmod(0o755)
    host.record()
    assert not host.cache.exists()  # not written
    fake.unlink()
    host.record()
    fake.write_text(text)
    fake.chmod(0o755)
    assert len(host.run()[1]) == 4  # not believed


def test_no_boundary_on_any_command_line(host, tmp_path):
    """The boundary is what keeps a file's content from starting a section: no process
    the facts command starts may carry it in argv (/proc/PID/cmdline is world-readable).
    The old printer passed both boundaries to sed as arguments."""
    trace = tmp_path / "execve"
    wrap = ["strace", "-f", "-qq", "-s", "65536", "-e", "trace=execve", "-o", str(trace)]
    for kind in ("miss", "record", "hit"):
        if kind == "record":
            host.run(record=True, wrap=wrap)
            boundaries = re.findall(r"@@([0-9a-f]{32}) ", host.cache.read_text())
        else:
            out, _ = host.run(wrap=wrap)
            assert cache_line(out) == kind
            boundaries = [re.fullmatch(r"@@pfs-facts ([0-9a-f]{32})", out[0]).group(1)]
            boundaries += (
                re.findall(r"@@([0-9a-f]{32}) ", host.cache.read_text()) if kind == "hit" else []
            )
        calls = [ln for ln in trace.read_text().splitlines() if "execve(" in ln]
        assert len(calls) > 3, kind  # the trace saw the processes
        for b in set(boundaries):
            leaked = [ln for ln in calls if b in ln]
            assert not leaked, f"{kind}: {leaked[0][:300]}"


def build_postconf_with_runpath(h: Host, cc: str) -> Path:
    """A dynamic postconf like Debian's: its RUNPATH (rp, then lib) is searched for every
    library before ld.so.cache. It answers -T run-version from libpfsv.so (lib) and hands
    every other question to the shell stand-in. Returns rp (empty)."""
    lib, rp = h.tmp / "lib", h.tmp / "rp"
    lib.mkdir()
    rp.mkdir()
    shutil.move(h.stub, h.tmp / "bin/postconf.sh")
    src = h.tmp / "postconf.c"
    src.write_text(
        textwrap.dedent(f"""\
        #include <stdio.h>
        #include <string.h>
        #include <unistd.h>
        const char *pfs_v(void);
        int main(int argc, char **argv) {{
          if (argc == 3 && strcmp(argv[1], "-T") == 0) {{ puts(pfs_v()); return 0; }}
          execv("{h.tmp}/bin/postconf.sh", argv);
          return 1;
        }}
        """)
    )
    build_libpfsv(lib, "OpenSSL 3.0.20 7 Apr 2026", cc)
    subprocess.run(
        [cc, "-o", str(h.stub), str(src), f"-L{lib}", "-lpfsv", f"-Wl,-rpath,{rp}:{lib}"],
        check=True,
        capture_output=True,
    )
    return rp


def build_libpfsv(directory: Path, version: str, cc: str) -> None:
    src = directory / "pfsv.c"
    src.write_text(f'const char *pfs_v(void) {{ return "{version}"; }}\n')
    subprocess.run(
        [cc, "-shared", "-fPIC", "-o", str(directory / "libpfsv.so"), str(src)],
        check=True,
        capture_output=True,
    )
    src.unlink()


def test_a_library_put_where_the_loader_looks_first_is_a_miss(host):
    """Debian's postconf has RUNPATH /usr/lib/postfix: the loader looks there for libc,
    libssl and libcrypto before ld.so.cache, so a libssl.so.3 put there is what postconf
    runs with. The key holds the identities of the libraries ldd named; a library that
    appears earlier in the search path must be a miss too (run-version from the new one)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc or not shutil.which("ldd"):
        pytest.skip("needs a C compiler and ldd")
    rp = build_postconf_with_runpath(host, cc)
    miss, _ = host.run()
    assert facts.parse(miss).run_version == "OpenSSL 3.0.20 7 Apr 2026"
    host.record()
    assert cache_line(host.run()[0]) == "hit"
    build_libpfsv(rp, "OpenSSL 9.9.9 1 Jan 2027", cc)
    out, _ = host.run()
    assert cache_line(out) == "miss"
    assert facts.parse(out).run_version == "OpenSSL 9.9.9 1 Jan 2027"


def test_a_record_cut_off_leaves_no_temporary_file(host):
    """The record runs in the SSH session: a dropped connection or ^C sends SIGHUP while it
    writes. A stand-in `wc` (run between the two temporary files and the rename) hangs up
    the record's process group; no .pfs-facts-cache.* may stay behind in the config
    directory. One a SIGKILL left (an hour old) goes with the next record; one of a record
    running now (fresh) is not touched."""
    if not shutil.which("setsid"):
        pytest.skip("needs setsid")
    wc = host.tmp / "bin/wc"
    wc.write_text('#!/bin/sh\nkill -HUP 0\nexec /usr/bin/wc "$@"\n')
    wc.chmod(0o755)
    e = {**os.environ, "PATH": f"{host.tmp}/bin:{os.environ['PATH']}"}
    e = {k: v for k, v in e.items() if not k.startswith(("LD_", "MAIL_"))}
    subprocess.run(["setsid", "/bin/sh", "-c", host.script(record=True)], env=e)
    assert sorted(p.name for p in host.conf.glob(".pfs-facts-cache*")) == []  # none at all
    wc.unlink()
    old, fresh = host.conf / ".pfs-facts-cache.AbC123", host.conf / ".pfs-facts-cache.XyZ789"
    for f in (old, fresh):
        f.write_text("left by a killed record\n")
    os.utime(old, (os.path.getmtime(old) - 3600,) * 2)
    host.record()
    assert host.cache.exists() and fresh.exists() and not old.exists()


@pytest.mark.parametrize("how", ["fifo", "symlink to a fifo"])
def test_a_key_file_a_user_turns_into_a_fifo_does_not_hang_the_facts_command(host, how):
    """A TLS glob may match a user's file (tls_cert_globs = /home/*/cert*). After a record,
    alice replaces her cert.pem by a FIFO (or a symlink to one): a miss skips it ([ -f ]),
    and the key check must not open it either (sha256sum would wait for a writer, forever:
    the deploy hangs on this host)."""
    home = host.tmp / "home/alice"
    home.mkdir(parents=True)
    (home / "cert.pem").write_text("x\n")
    host.record()
    assert cache_line(host.run()[0]) == "hit"
    (home / "cert.pem").unlink()
    fifo = home / ("cert.pem" if how == "fifo" else "fifo")
    os.mkfifo(fifo)
    if how != "fifo":
        (home / "cert.pem").symlink_to(fifo)
    e = {**os.environ, "PATH": f"{host.tmp}/bin:{os.environ['PATH']}"}
    e = {k: v for k, v in e.items() if not k.startswith(("LD_", "MAIL_"))}
    try:
        out = subprocess.run(
            [*UNSHARE, "/bin/sh", "-c", host.script()],
            capture_output=True,
            text=True,
            env=e,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the facts command hung on the FIFO")
    finally:
        release(fifo)
    assert out.returncode == 0 and cache_line(out.stdout.splitlines()) == "miss"


def release(fifo: Path) -> None:
    """Let a reader blocked on the FIFO go (it reads end of file)."""
    for _ in range(20):
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader (any more)
            return
        time.sleep(0.1)


def test_a_wrapper_postconf_ahead_in_path_keeps_the_real_one_in_the_key(host):
    """A postconf ahead in PATH that is a script (a site's logging wrapper; the e2e tests'
    own) execs the next postconf: ldd says 'not a dynamic executable', and the key held the
    wrapper alone. The real postconf and its libraries changing (a security update of
    libssl: another run-version) must be a miss."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc or not shutil.which("ldd"):
        pytest.skip("needs a C compiler and ldd")
    build_postconf_with_runpath(host, cc)  # the real one: bin/postconf, libpfsv.so in lib
    wrapper = host.tmp / "wrap/postconf"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {host.stub} "$@"\n')
    wrapper.chmod(0o755)
    path = {"PATH": f"{wrapper.parent}:{host.tmp}/bin:{os.environ['PATH']}"}
    host.run(record=True, env=path)
    assert cache_line(host.run(env=path)[0]) == "hit"
    new = host.tmp / "new"
    new.mkdir()
    build_libpfsv(new, "OpenSSL 9.9.9 1 Jan 2027", cc)
    os.rename(new / "libpfsv.so", host.tmp / "lib/libpfsv.so")  # the update: renamed over
    out, _ = host.run(env=path)
    assert cache_line(out) == "miss"
    assert facts.parse(out).run_version == "OpenSSL 9.9.9 1 Jan 2027"
