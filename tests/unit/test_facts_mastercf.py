import pytest

from postfix_pfs import facts, mastercf
from tests.unit.helpers import recorded


def test_recorded_debian12_facts_parse():
    f = recorded("debian12")
    assert f.installed and f.uid == 0
    assert f.version == (3, 7, 11) and f.openssl_version[:2] == (3, 0)
    assert f.init == "sysv" and f.distro == "debian" and f.distro_version == "12"
    assert f.running and f.master_pid > 0
    assert f.postconf_d["daemon_directory"] == "/usr/lib/postfix/sbin"
    assert f.postconf_n["smtpd_tls_cert_file"] == "/etc/ssl/certs/ssl-cert-snakeoil.pem"
    assert f.postconf_n_warnings == []
    cert = f.file("/etc/ssl/certs/ssl-cert-snakeoil.pem")
    key = f.file("/etc/ssl/private/ssl-cert-snakeoil.key")
    assert cert.exists and cert.certs_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert key.exists and key.mode == "640" and key.certs_pem == ""
    assert key.key_pub_sha256 == cert.cert_pub_sha256 != ""
    assert "tlsmgr" in f.master_cf


def test_recorded_systemd_host_facts_parse():
    f = recorded("debian12-systemd")  # systemd as PID 1 (the sandbox's systemd-bookworm host)
    assert f.init == "systemd" and f.systemd_instance == "postfix@-" and f.running
    assert recorded("debian12").systemd_instance == ""  # SysV-started: no unit


def test_recorded_debian13_facts_parse():
    f = recorded("debian13")
    assert f.version[:2] == (3, 10) and f.openssl_version[:2] == (3, 5)
    assert "smtpd_tls_cert_file" not in f.postconf_n


def test_fact_output_never_contains_private_keys():
    for name in ("debian12", "debian13"):
        assert "PRIVATE KEY" not in recorded(name).to_json()


def test_not_installed_and_stopped():
    f = facts.parse(["@@env", "uid=0", "init=systemd", "installed=no"])
    assert not f.installed and f.init == "systemd" and not f.running


def test_file_section_parses_missing_and_modes():
    sha = "ab" * 32
    f = facts.parse(
        [
            "@@env",
            "installed=yes",
            "@@files",
            "-|/x/key.pem",
            f"{sha}  /etc/postfix/main.cf",
            "/etc/postfix/main.cf|644|root|root",
        ]
    )
    main = f.file("/etc/postfix/main.cf")
    assert (main.exists, main.sha256, main.mode, main.owner, main.group) == (
        True,
        sha,
        "644",
        "root",
        "root",
    )
    assert not f.file("/x/key.pem").exists
    assert not f.file("/never/listed").exists


def test_encrypted_key_is_flagged():
    f = facts.parse(["@@env", "installed=yes", "@@pem", "@file /k.pem|encrypted|"])
    assert f.file("/k.pem").key_encrypted and f.file("/k.pem").key_pub_sha256 == ""


@pytest.mark.parametrize(
    "text,version",
    [("3.10.13", (3, 10, 13)), ("3.7.11", (3, 7, 11)), ("2.11.3-rc1", (2, 11, 3)), ("", (0,))],
)
def test_parse_version(text, version):
    assert facts.parse_version(text) == version


def test_script_quotes_tls_dir():
    assert "'/etc/postfix/my tls'/*" in facts.script("/etc/postfix/my tls/")


# --- master.cf ---------------------------------------------------------------------------

DEBIAN = "smtp      inet  n       -       y       -       -       smtpd\ntlsmgr    unix  -       -       y       1000?   1       tlsmgr\n"
SLES11 = "smtp      inet  n       -       n       -       -       smtpd\n#tlsmgr    unix  -       -       n       1000?   1       tlsmgr\n"


def test_active_tlsmgr_is_left_alone():
    assert mastercf.tlsmgr_state(DEBIAN) == "active"
    assert mastercf.enable_tlsmgr(DEBIAN) == DEBIAN


def test_commented_tlsmgr_is_uncommented_keeping_columns():
    out = mastercf.enable_tlsmgr(SLES11)
    assert "tlsmgr    unix  -       -       n       1000?   1       tlsmgr" in out.splitlines()
    assert mastercf.tlsmgr_state(out) == "active"


def test_commented_with_space_and_several_comments():
    text = "# tlsmgr    unix  -       -       n       1000?   1       tlsmgr\n#tlsmgr unix - - n 1000? 1 tlsmgr\n"
    out = mastercf.enable_tlsmgr(text)
    assert out.splitlines() == [
        "tlsmgr    unix  -       -       n       1000?   1       tlsmgr",
        "#tlsmgr unix - - n 1000? 1 tlsmgr",
    ]


def test_missing_tlsmgr_is_appended_once():
    out = mastercf.enable_tlsmgr("smtp inet n - y - - smtpd\n")
    assert out.endswith(mastercf.UPSTREAM_TLSMGR + "\n")
    assert mastercf.enable_tlsmgr(out) == out


def test_duplicates_are_commented_out():
    out = mastercf.enable_tlsmgr(DEBIAN + DEBIAN.splitlines()[1] + "\n")
    assert mastercf.tlsmgr_state(DEBIAN + DEBIAN.splitlines()[1] + "\n") == "duplicated"
    assert [line for line in out.splitlines() if line.startswith("tlsmgr")] == [
        DEBIAN.splitlines()[1]
    ]


def test_tlsmgr_as_argument_or_continuation_is_not_a_service():
    text = "smtp inet n - y - - smtpd\n  -o tlsmgr unix\nfoo unix - - n - - pipe tlsmgr\n"
    assert mastercf.tlsmgr_state(text) == "missing"


def test_recorded_master_cf_unchanged():
    for name in ("debian12", "debian13"):
        mc = recorded(name).master_cf
        assert mastercf.enable_tlsmgr(mc) == mc


def test_postconf_d_sent_compressed_on_one_line():
    import base64
    import gzip

    text = "mail_version = 3.7.11\nconfig_directory = /etc/postfix\n"
    packed = "gz:" + base64.b64encode(gzip.compress(text.encode())).decode()
    f = facts.parse(["@@env", "installed=yes", "@@postconf_d", packed, "@@postconf_n", "a = b"])
    assert f.postconf_d == {"mail_version": "3.7.11", "config_directory": "/etc/postfix"}
    assert f.postconf_n == {"a": "b"}
    broken = facts.parse(["@@env", "installed=yes", "@@postconf_d", "gz:!!!"])
    assert broken.postconf_d == {}
