"""Issue 12: nothing a host's users can write, and no value or flag, turns the deploy
against the host. Each test names the numbered defect it covers."""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from postfix_pfs import facts, host_ops, plan, plan_view, report, settings, verify
from postfix_pfs.facts import FileState
from tests.unit.helpers import NOW, recorded, run_probe
from tests.unit.test_plan import HOST, material
from tests.unit.test_plan import make_settings as S

# --- 1. forged facts -----------------------------------------------------------------------

FORGED_POSTCONF_D = [
    "@@postconf_d",
    "config_directory = /etc/postfix",
    "daemon_directory = /home/alice/libexec",
    "mail_version = 3.7.11",
    "@@files",
    "0000000000000000000000000000000000000000000000000000000000000000  /etc/postfix/main.cf",
    "/etc/postfix/main.cf|644|root|root",
    "@@master_cf",
    "smtp inet n - y - - smtpd",
    "@@pem",
    "@file /home/alice/cert/mx.pem|" + "ab" * 32 + "|" + "ab" * 32,
]


class FakeHost:
    """A directory laid out like a Postfix host, with a stub `postconf` that answers as
    Debian 12's does, so the real facts script runs here and prints its real format."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.conf, self.qd = tmp / "etc/postfix", tmp / "spool"
        self.tls, self.maps = self.conf / "tls", self.conf / "maps"
        for d in (self.conf, self.qd / "pid", self.tls, self.maps, tmp / "bin"):
            d.mkdir(parents=True, exist_ok=True)
        d12 = recorded("debian12")
        self.postconf_d = {**d12.postconf_d, "config_directory": str(self.conf)}
        (tmp / "postconf_d").write_text("".join(f"{k} = {v}\n" for k, v in self.postconf_d.items()))
        (tmp / "postconf_n").write_text("myhostname = mx1.example.net\n")
        (self.conf / "main.cf").write_text("myhostname = mx1.example.net\n")
        (self.conf / "master.cf").write_text(d12.master_cf)
        stub = tmp / "bin/postconf"
        stub.write_text(
            textwrap.dedent(f"""\
            #!/bin/sh
            case "$*" in
              "-h config_directory") echo {self.conf} ;;
              "-h queue_directory") echo {self.qd} ;;
              -d) cat {tmp}/postconf_d ;;
              "-T run-version") echo "OpenSSL 3.0.20 7 Apr 2026" ;;
              -n) cat {tmp}/postconf_n ;;
              -xh*) for p in "$@"; do :; done; echo ;;
            esac
            """)
        )
        stub.chmod(0o755)

    def run(self, globs: str = "") -> list[str]:
        script = facts.script(str(self.tls), str(self.maps), globs)
        env = {**os.environ, "PATH": f"{self.tmp}/bin:{os.environ['PATH']}"}
        out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()


def pem_of(m) -> str:
    return m.cert_pem.decode()


def test_1_forged_certificate_file_changes_nothing_in_the_facts(tmp_path):
    """A user-owned file under a tls_cert_globs path holds a real certificate plus lines
    that imitate the facts output (a postconf -d with her own daemon_directory)."""
    if not shutil.which("openssl"):
        pytest.skip("needs openssl")
    host = FakeHost(tmp_path)
    cert = pem_of(material()[0])
    inner = cert.replace("-----END CERTIFICATE-----\n", "")
    home = tmp_path / "home/alice/cert"
    home.mkdir(parents=True)
    forged = inner + "\n".join(FORGED_POSTCONF_D) + "\n-----END CERTIFICATE-----\n"
    (home / "mx.pem").write_text(cert + "-----BEGIN CERTIFICATE-----\n" + forged)
    (home / "odd|name.pem").write_text(cert)
    clean = facts.parse(host.run())
    found = facts.parse(host.run(f"{tmp_path}/home/*/cert/*"))
    assert found.postconf_d == clean.postconf_d == host.postconf_d
    assert found.master_cf == clean.master_cf
    assert found.file(str(host.conf / "main.cf")) == clean.file(str(host.conf / "main.cf"))
    got = found.file(str(home / "mx.pem"))
    assert got.exists and got.certs_pem == cert  # only the real certificate, as data
    assert not found.file(str(home / "odd|name.pem")).exists  # a path that could split a line
    assert "/home/alice/cert/mx.pem" not in found.files


def test_1_section_markers_need_the_runs_boundary():
    """Raw text inside a section (master.cf is printed as it is) cannot start another."""
    b = "1f" * 16
    lines = ["forged before the header", *FORGED_POSTCONF_D, "@@pfs-facts " + b]
    lines += [f"@@{b} env", "installed=yes", "uid=0", f"@@{b} postconf_d", "mail_version = 3.7.11"]
    lines += [f"@@{b} master_cf", *FORGED_POSTCONF_D, f"@@{b} files"]
    f = facts.parse(lines)
    assert f.postconf_d == {"mail_version": "3.7.11"}
    assert f.files == {} and f.master_cf == "\n".join(FORGED_POSTCONF_D) + "\n"


@pytest.mark.parametrize(
    "param,value",
    [
        ("daemon_directory", "/home/alice/libexec"),
        ("daemon_directory", "/usr/lib/postfix/sbin $(id)"),
        ("config_directory", "/etc/postfix;touch /x"),
        ("queue_directory", "var/spool/postfix"),
        ("default_database_type", "hash;id"),
    ],
)
def test_1_host_paths_that_are_not_system_paths_are_refused(param, value):
    f = recorded("debian12")
    f.postconf_d[param] = value
    s = S(HOST)
    with pytest.raises(plan.PlanError) as e:
        plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), material())
    assert param in str(e.value) and HOST in str(e.value)


def test_1_config_directory_is_data_in_the_stage_command(tmp_path):
    conf = f"{tmp_path}/c$(touch {tmp_path}/pwned)`touch {tmp_path}/pwned2`"
    cmd = host_ops._prepare_stage(conf, f"{conf}/.pfs-stage-x", []).get_raw_value()
    r = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True)
    assert r.returncode != 0 and "KiB free" in r.stderr
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


# --- 3. tls_dir cleanup, dangerous directories ---------------------------------------------


def test_3_cleanup_removes_only_files_named_like_the_deploys_own():
    f = recorded("debian12")
    own = [
        "/etc/postfix/tls/rsa-0123456789ab.pem",
        "/etc/postfix/tls/ecdsa-0123456789ab.key",
        "/etc/postfix/tls/ecdsa-0123456789ab.crt",
        "/etc/postfix/tls/fleet-ca.pem",
        "/etc/postfix/tls/ffdhe3072.pem",
    ]
    other = ["/etc/postfix/tls/notes.txt", "/etc/postfix/tls/rsa-backup.pem", "/etc/postfix/tls/x"]
    for p in own + other:
        f.files[p] = FileState(p, True, "x", "600", "root", "root")
    s = S(HOST)
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), material())
    assert sorted(p.remove) == sorted(own)


def opt_postfix():
    """A Postfix built with its own prefix, as on a BSD or a source install."""
    f = recorded("debian12")
    f.postconf_d.update(
        config_directory="/opt/pf/etc",
        queue_directory="/opt/pf/spool",
        data_directory="/opt/pf/data",
        daemon_directory="/opt/pf/libexec",
    )
    return f


@pytest.mark.parametrize(
    "key,value,param",
    [
        ("tls_dir", "/opt/pf/etc", "config_directory"),
        ("table_dir", "/opt/pf/etc", "config_directory"),
        ("tls_dir", "/opt/pf/spool", "queue_directory"),
        ("table_dir", "/opt/pf/data", "data_directory"),
        ("tls_dir", "/opt/pf/libexec", "daemon_directory"),
        ("tls_dir", "/opt/pf", "config_directory"),
    ],
)
def test_3_plan_refuses_dirs_that_are_or_contain_the_hosts_postfix_dirs(key, value, param):
    f = opt_postfix()
    s = S(HOST, **{key: value})
    with pytest.raises(plan.PlanError) as e:
        plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), material())
    assert f"{HOST}: {key}: {value} is or contains this host's {param}" in str(e.value)


def test_3_plan_accepts_dirs_of_their_own_beside_the_hosts_postfix_dirs():
    f = opt_postfix()
    s = S(HOST, tls_dir="/opt/pf/etc/tls", table_dir="/opt/pf/etc/maps")
    assert plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), material()).changed


# --- 6. secrets masked ------------------------------------------------------------------------


def new_report(tmp_path) -> report.Report:
    r = report.Report(None, "t", tmp_path)
    atexit.unregister(r.finish)  # no pyinfra state here: written by the test only
    return r


def test_6_credentials_in_host_parameters_never_reach_plan_report_or_notes(tmp_path):
    f = recorded("debian12")
    f.postconf_n["smtp_sasl_password_maps"] = "static:relayuser:hunter2"
    f.postconf_n["lmtp_sasl_password_maps"] = "inline:{ [lmtp.example]=u:hunter3 }"
    f.postconf_n_warnings = [
        "postconf: warning: /etc/postfix/main.cf: unused parameter: smtp_sasl_passwd=u:hunter4"
    ]
    s = S(HOST, postfix_extra={"smtp_sasl_password_maps": "static:u:hunter5"})
    mats = material()
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), mats)
    view = plan_view.describe(p, f, s, mats)
    rec = report.HostRecord(HOST, plan=view, notes=list(p.notes))
    r = new_report(tmp_path)
    r.hosts[HOST] = rec
    r.write_json()
    text = "\n".join(plan_view.render(HOST, view)) + r.path.read_text() + "\n".join(p.notes)
    for secret in ("hunter2", "hunter3", "hunter4", "hunter5"):
        assert secret not in text
    assert "smtp_sasl_password_maps" in text  # the parameter itself is still shown
    assert "static:u:hunter5" in p.main_cf  # the host gets the real value


def test_6_secret_files_have_no_plain_digest_in_the_facts_output(tmp_path):
    host = FakeHost(tmp_path)
    sasl = b"[relay.example]:587 mx1:hunter2\n"
    key = material()[0].key_pem
    (host.maps / "sasl_passwd").write_bytes(sasl)
    (host.tls / "rsa-0123456789ab.pem").write_bytes(key)
    out = "\n".join(host.run())
    for content in (sasl, key):
        assert hashlib.sha256(content).hexdigest() not in out
    assert "PRIVATE KEY" not in out and "hunter2" not in out


def test_6_a_converged_secret_file_is_recognised_by_its_keyed_digest(tmp_path):
    """The host digests secret files with a key only it and the controller's store hold."""
    host = FakeHost(tmp_path)
    dkey = b"k" * 32
    (host.conf / ".pfs-digest-key").write_bytes(dkey)
    (host.maps / "sasl_passwd").write_bytes(b"secret\n")
    f = facts.parse(host.run()).file(str(host.maps / "sasl_passwd"))
    assert f.keyed == hashlib.sha256(dkey + b"secret\n").hexdigest() and f.sha256 == ""


# --- 7. lookup-table keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,value",
    [
        ("aliases", {"postmaster:attacker@evil.example,": "root"}),
        ("aliases", {"post,master": "root"}),
        ("aliases", {".postmaster": "root"}),
        ("aliases", {"Postmaster": "root", "postmaster": "alice"}),
        ("virtual_alias_maps", {"info@example.net.": "alice"}),
        ("virtual_alias_maps", {"a@example.net,b@example.net": "alice"}),
        ("canonical_maps", {".example.net": "x@example.org"}),
        ("transport_maps", {"example.net.": "smtp:[mx.example]"}),
        ("transport_maps", {"Example.net": "smtp:a", "example.NET": "smtp:b"}),
        ("sender_access", {"#spam.example": "REJECT"}),
        ("smtp_tls_policy", {"[mx.example]:25 ": "verify"}),
    ],
)
def test_7_table_keys_that_change_meaning_are_refused(key, value):
    with pytest.raises(settings.SettingsError) as e:
        settings.resolve("mx9.example.net", [("host", {key: value})])
    (line,) = e.value.problems
    assert line.startswith(f"mx9.example.net: {key}: ")


@pytest.mark.parametrize(
    "key,value",
    [
        ("transport_maps", {".example.net": "smtp:[mx.example]"}),
        ("sender_access", {"2001:db8::1": "REJECT", "user@": "OK"}),
        ("smtp_tls_policy", {"[mx.example]:25": "verify", ".example.org": "encrypt"}),
        ("virtual_alias_maps", {"@example.net": "catchall"}),
        ("aliases", {"mailer-daemon": "postmaster", "abuse+x": "root"}),
    ],
)
def test_7_table_keys_that_postfix_means_are_kept(key, value):
    assert settings.resolve("mx9.example.net", [("host", {key: value})]).values[key] == value


# --- 8. validation gaps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,value,fragment",
    [
        ("extra_maps", {"smtpd_banner": ["hash:/etc/postfix/x"]}, "not a map parameter"),
        ("extra_maps", {"smtp_tls_policy_maps": ["hash:/etc/postfix/x"]}, "not a map parameter"),
        ("extra_maps", {"alias_maps": ["hash:/etc/postfix/x\n"]}, "control character"),
        ("tls_dir", "/etc/postfix/my tls", "letters, digits"),
        ("table_dir", "/etc/postfix/a,b", "letters, digits"),
        ("table_dir", "/etc/postfix/a|b", "letters, digits"),
        ("tls_dir", "/etc/postfix/$x", "letters, digits"),
        ("mynetworks", ["::1/128"], "[::1]/128"),
        ("mynetworks", ["[::1]/999"], "not an address or CIDR"),
        ("mynetworks", ["1.2.3.4]"], "not an address or CIDR"),
        ("mynetworks", ["[1.2.3.4]"], "not an address or CIDR"),
        ("mynetworks", ["[::1]]/128"], "not an address or CIDR"),
        ("mynetworks", ["10.0.0.0/8\n"], "control character"),
        ("tls_cert_globs", ["/home/*/cert/*.pem\n"], "control character"),
    ],
)
def test_8_validation_gaps_are_closed(key, value, fragment):
    with pytest.raises(settings.SettingsError) as e:
        settings.resolve("mx9.example.net", [("host", {key: value})])
    (line,) = e.value.problems
    assert line.startswith(f"mx9.example.net: {key}: ") and fragment in line


@pytest.mark.parametrize(
    "check,value",
    [
        (settings.is_hostname, "mx.example.net\n"),
        (settings.is_glob, "/home/*/cert/*.pem\n"),
        (settings.is_relayhost, "relay.example.net\n"),
        (settings.is_extra, {"message_size_limit\n": "1"}),
        (settings.is_extra_maps, {"alias_maps": ["hash:/etc/postfix/x\n"]}),
        (settings.is_network, "10.0.0.0/8\n"),
    ],
)
def test_8_no_check_accepts_a_trailing_newline(check, value):
    assert check(value) is not None


# --- 9. keys found by globs --------------------------------------------------------------------


def found_pair(f, m, owner="alice", mode="644"):
    cert, key = "/home/alice/cert/mx.pem", "/home/alice/cert/mx.key"
    f.files[cert] = FileState(cert, True, "x", "644", owner, owner)
    f.files[cert].cert_pub_sha256, f.files[cert].certs_pem = m.spki_sha256, pem_of(m)
    f.files[key] = FileState(key, True, "", mode, owner, owner, key_pub_sha256=m.spki_sha256)
    return cert, key


def test_9_a_key_found_by_globs_is_copied_into_tls_dir_root_only():
    m = material()[1]
    f = recorded("debian13")
    cert, key = found_pair(f, m)
    s = S(HOST, tls_cert_globs=["/home/*/cert/*.pem"], tls_key_globs=["/home/*/cert/*.key"])
    d = plan.choose_cert(s, f, NOW)
    p = plan.make(HOST, s, f, d, [])
    assert key not in p.main_cf and cert not in p.main_cf
    copied = [hf for hf in p.changed if hf.key_from]
    assert [(hf.key_from, hf.mode, hf.secret) for hf in copied] == [(key, "600", True)]
    assert copied[0].path == f"/etc/postfix/tls/ecdsa-{pki_fp(m)[:12]}.pem"
    assert f"smtpd_tls_chain_files = {copied[0].path}" in p.main_cf
    assert p.expected == {"ecdsa": pki_fp(m)}
    line = host_ops.manifest(p).decode().splitlines()[0]
    assert line == f"key|{copied[0].path}|600|{key}|{m.spki_sha256}"
    text = "\n".join(plan_view.render(HOST, plan_view.describe(p, f, s, [])))
    assert f"key copied from {key} (owner alice, mode 644)" in text
    assert "root-only" in text and copied[0].path in text


def test_9_a_copied_key_is_not_copied_again():
    m = material()[1]
    f = recorded("debian13")
    found_pair(f, m)
    s = S(HOST, tls_cert_globs=["/home/*/cert/*.pem"], tls_key_globs=["/home/*/cert/*.key"])
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), [])
    dest = next(hf for hf in p.changed if hf.key_from)
    f.files[dest.path] = FileState(dest.path, True, "", "600", "root", "root", m.spki_sha256)
    f.files[dest.path].keyed = "whatever the host's digest key makes of it"
    f.files[dest.path].cert_pub_sha256, f.files[dest.path].certs_pem = m.spki_sha256, pem_of(m)
    f.postconf_n["smtpd_tls_chain_files"] = dest.path
    p2 = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), [])
    assert not any(hf.key_from for hf in p2.changed)
    assert p2.cert.source == "existing" and dest.path not in p2.remove


def pki_fp(m):
    return m.fingerprint


# --- verify: what a broken judge would let through -------------------------------------
# The handshake is classified on the host (tls_check.sh pfs_probe, from openssl's
# own output) and judged by verify.py; both are run here on canned client output.

S_CLIENT = {  # what `openssl s_client` prints for each kind of handshake (the lines read)
    "tls13": "CONNECTED(00000003)\nNew, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384\n"
    "Negotiated TLS1.3 group: X25519\nProtocol  : TLSv1.3\n",
    "ecdhe": "CONNECTED(00000003)\nServer Temp Key: X25519, 253 bits\n"
    "New, TLSv1.2, Cipher is ECDHE-RSA-AES256-GCM-SHA384\nProtocol  : TLSv1.2\n",
    "krsa": "CONNECTED(00000003)\nNew, TLSv1.2, Cipher is AES256-GCM-SHA384\nProtocol  : TLSv1.2\n",
}


def probe_line(tmp_path: Path, output: str, probe: str = "tls1_2") -> str:
    """pfs_probe (tls_check.sh) against a stub openssl that prints `output`."""
    return run_probe(tmp_path / "bin", output, probe)[-1]


@pytest.mark.parametrize("kind,fs", [("tls13", True), ("ecdhe", True), ("krsa", False)])
def test_verify_forward_secrecy_is_judged_per_handshake(tmp_path, kind, fs):
    ev = verify.parse_evidence([probe_line(tmp_path, S_CLIENT[kind])])
    r = ev.probes["smtp"]["tls1_2"]
    assert r.status == "accepted" and r.fs is fs
    problems = verify.judge_policy("intermediate", {"tls1_2": r, "rsa": r}).problems
    assert any("has no forward secrecy" in p for p in problems) is not fs


def test_verify_served_certificate_mismatch_is_a_problem():
    deployed, other = (m.fingerprint for m in material())
    lines = [
        f"@probe|smtp|rsa|accepted|TLSv1.3|TLS_AES_256_GCM_SHA384|X25519|yes|{deployed}|",
        f"@probe|smtp|ecdsa|accepted|TLSv1.3|TLS_AES_256_GCM_SHA384|X25519|yes|{other}|",
    ]
    results = verify.parse_evidence(lines).probes["smtp"]
    mine = material()[1].fingerprint
    assert verify.judge_certs(results, {"rsa": deployed}) == []
    (problem,) = verify.judge_certs(results, {"rsa": deployed, "ecdsa": mine})
    assert problem.startswith("ecdsa: serves certificate") and mine[:16] in problem
    missing = verify.judge_certs({"rsa": results["rsa"]}, {"ecdsa": mine})
    assert missing == ["the deployed ecdsa certificate is not served"]


# --- 4. the host lock ------------------------------------------------------------------------

LOCK_SH = Path(__file__).resolve().parents[2] / "operations" / "lock.sh"
CRITICAL = """
. {lock_sh}
pfs_lock "$1/.pfs-lock" 30
mkdir "$1/inside" 2>/dev/null || echo DOUBLE >> "$1/log"
sleep 0.05
rmdir "$1/inside" 2>/dev/null
echo "in $$" >> "$1/log"
pfs_unlock
"""


def lock_env(tmp: Path, mode: str) -> dict:
    """PATH with or without flock (the fallback of hosts without util-linux)."""
    if mode == "flock":
        return dict(os.environ)
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("cat", "sed", "cut", "mkdir", "rm", "rmdir", "find", "sleep"):
        if not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(shutil.which(tool))
    return {**os.environ, "PATH": str(bin_dir)}


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def stale_lock(d: Path, owner: str) -> None:
    (d / ".pfs-lock").mkdir(exist_ok=True)
    (d / ".pfs-lock/owner").write_text(owner + "\n")
    (d / ".pfs-lock/pid").write_text(owner.split()[0] + "\n")  # as the old lock wrote it


def run_two(d: Path, env: dict) -> list[str]:
    script = CRITICAL.format(lock_sh=LOCK_SH)
    procs = [
        subprocess.Popen(["/bin/sh", "-c", script, "sh", str(d)], env=env, stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    for p in procs:
        p.communicate(timeout=60)
        assert p.returncode == 0
    return (d / "log").read_text().split("\n")


@pytest.mark.parametrize("mode", ["flock", "mkdir"])
def test_4_two_runs_finding_a_dead_runs_lock_never_both_enter(tmp_path, mode):
    env = lock_env(tmp_path, mode)
    doubles = 0
    for trial in range(40):
        d = tmp_path / f"t{trial}"
        d.mkdir()
        stale_lock(
            d, f"{dead_pid()} {Path('/proc/sys/kernel/random/boot_id').read_text().strip()} 1"
        )
        log = run_two(d, env)
        doubles += log.count("DOUBLE")
        assert sum(1 for line in log if line.startswith("in ")) == 2
    assert doubles == 0


@pytest.mark.parametrize("mode", ["flock", "mkdir"])
def test_4_a_live_pid_reused_after_a_reboot_does_not_block(tmp_path, mode):
    """The lock of a run before a reboot names a pid that a live process has now."""
    d = tmp_path / "h"
    d.mkdir()
    stale_lock(d, f"{os.getpid()} 00000000-0000-0000-0000-000000000000 42")
    r = subprocess.run(
        ["/bin/sh", "-c", CRITICAL.format(lock_sh=LOCK_SH), "sh", str(d)],
        env=lock_env(tmp_path, mode),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert r.returncode == 0, r.stderr
    assert (d / "log").read_text().startswith("in ")


@pytest.mark.parametrize("mode", ["flock", "mkdir"])
def test_4_a_live_holder_makes_the_next_run_wait_then_time_out(tmp_path, mode):
    d = tmp_path / "h"
    d.mkdir()
    env = lock_env(tmp_path, mode)
    hold = f'. {LOCK_SH}; pfs_lock "$1/.pfs-lock" 5; echo held; sleep 30 9>&-'
    holder = subprocess.Popen(
        ["/bin/sh", "-c", hold, "sh", str(d)], env=env, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout.readline().strip() == b"held"
        wait = f'. {LOCK_SH}; pfs_lock "$1/.pfs-lock" 2; echo entered'
        r = subprocess.run(
            ["/bin/sh", "-c", wait, "sh", str(d)], env=env, capture_output=True, text=True
        )
        assert r.returncode == 1 and "entered" not in r.stdout
        assert (
            f"another deploy (pid {holder.pid}) has been activating on this host for 2s" in r.stderr
        )
        assert "waiting for another deploy" in r.stdout
    finally:
        holder.kill()
        holder.wait()
    r = subprocess.run(
        ["/bin/sh", "-c", wait, "sh", str(d)], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0 and "entered" in r.stdout  # the killed holder blocks nothing


def test_1_raw_pem_lines_count_only_in_hand_written_input():
    """Hand-written facts (no boundary header) may list PEM lines after @file; the
    script's real output never does, so there they are ignored."""
    m = material()[0]
    pem = m.cert_pem.decode().splitlines()
    legacy = ["@@env", "installed=yes", "@@pem", "@file /c.pem||" + "ab" * 32, *pem]
    assert facts.parse(legacy).file("/c.pem").certs_pem == m.cert_pem.decode()
    b = "2e" * 16
    real = [f"@@pfs-facts {b}", f"@@{b} env", "installed=yes", f"@@{b} pem"]
    real += ["@file /c.pem||" + "ab" * 32 + "|", *pem]
    assert facts.parse(real).file("/c.pem").certs_pem == ""


def test_tls_dir_certificates_in_one_awk_are_data_only(tmp_path):
    """The files in tls_dir go through one awk (each certificate line behind "|"): the
    certificates come back whole and in order, a key file gives none, and lines that
    imitate the facts output inside a certificate block inject nothing."""
    host = FakeHost(tmp_path)
    rsa, ec = material()[:2]
    chain = pem_of(rsa) + pem_of(ec)
    (host.tls / "rsa.pem").write_text(chain)
    (host.tls / "rsa.key").write_text(
        "-----BEGIN " + "PRIVATE KEY-----\nAAAA\n-----END " + "PRIVATE KEY-----\n"  # not a key
    )
    inner = pem_of(ec).replace("-----END CERTIFICATE-----\n", "")
    forged = [f"@file {host.conf}/injected.pem|||", "@@pfs-facts 0", "uid=0"]
    (host.tls / "odd.pem").write_text(inner + "\n".join(forged) + "\n-----END CERTIFICATE-----\n")
    (host.tls / "empty.pem").write_text("")
    found = facts.parse(host.run())
    assert found.file(str(host.tls / "rsa.pem")).certs_pem == chain
    assert found.file(str(host.tls / "rsa.key")).certs_pem == ""
    assert found.file(str(host.tls / "rsa.key")).exists
    assert found.file(str(host.tls / "odd.pem")).certs_pem == ""  # not a valid certificate
    assert found.file(str(host.tls / "empty.pem")).exists
    assert str(host.conf / "injected.pem") not in found.files
    assert found.uid == facts.parse(FakeHost(tmp_path / "clean").run()).uid
