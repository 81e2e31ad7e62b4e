import dataclasses
import hashlib

import pytest

from postfix_pfs import maincf, pki, plan
from postfix_pfs.facts import FileState
from tests.unit.helpers import NOW, recorded
from tests.unit.helpers import make_settings as _make_settings

HOST = "d12-mx1.sandbox.test"


def make_settings(host, **kw):
    # the recorded hosts are sandbox hosts: listening on their own address, IPv4 only
    kw.setdefault("inet_interfaces", ["127.0.2.1"])
    kw.setdefault("inet_protocols", "ipv4")
    return _make_settings(host, **kw)


def comment_tlsmgr(f):
    f.master_cf = f.master_cf.replace("\ntlsmgr", "\n#tlsmgr")
    sha = hashlib.sha256(f.master_cf.encode()).hexdigest()
    f.files["/etc/postfix/master.cf"] = dataclasses.replace(
        f.files["/etc/postfix/master.cf"], sha256=sha
    )


def edit_inet_interfaces(f):
    """Someone changed inet_interfaces in main.cf by hand."""
    f.postconf_n["inet_interfaces"] = "127.0.0.1"
    f.files["/etc/postfix/main.cf"] = dataclasses.replace(
        f.files["/etc/postfix/main.cf"], sha256="edited"
    )


def material(names=(HOST,)):
    return [pki.generate(k, list(names), 90, NOW) for k in pki.KINDS]


def with_pair(
    f,
    cert_pem: bytes,
    cert_path="/etc/ssl/c.pem",
    key_path="/etc/ssl/k.pem",
    match=True,
    encrypted=False,
):
    f.postconf_n["smtpd_tls_cert_file"] = cert_path
    f.postconf_n["smtpd_tls_key_file"] = key_path
    f.files[cert_path] = FileState(
        cert_path, True, "aa", "644", "root", "root", "", "pub1", certs_pem=cert_pem.decode()
    )
    f.files[key_path] = FileState(
        key_path, True, "bb", "600", "root", "root", "pub1" if match else "pub2", "", encrypted
    )
    return f


# --- certificate source: every branch -------------------------------------------------------


def test_generate_when_nothing_configured():
    d = plan.choose_cert(make_settings(HOST), recorded("debian13"), NOW)
    assert (d.source, d.reason) == ("generate", "no smtpd_tls_cert_file configured")


def test_snakeoil_naming_another_host_is_replaced():
    d = plan.choose_cert(make_settings(HOST), recorded("debian12"), NOW)
    assert d.source == "generate" and "not d12-mx1.sandbox.test" in d.reason


def test_valid_configured_cert_is_reused():
    m = material()[0]
    f = with_pair(recorded("debian13"), m.cert_pem)
    d = plan.choose_cert(make_settings(HOST), f, NOW)
    assert d.source == "existing" and d.files == {
        "smtpd_tls_cert_file": "/etc/ssl/c.pem",
        "smtpd_tls_key_file": "/etc/ssl/k.pem",
    }


@pytest.mark.parametrize(
    "kw,reason",
    [
        ({"match": False}, "does not match"),
        ({"encrypted": True}, "passphrase-protected"),
    ],
)
def test_unusable_pairs_are_regenerated_in_auto_and_refused_in_existing(kw, reason):
    f = with_pair(recorded("debian13"), material()[0].cert_pem, **kw)
    assert reason in plan.choose_cert(make_settings(HOST), f, NOW).reason
    with pytest.raises(plan.PlanError, match=reason):
        plan.choose_cert(make_settings(HOST, tls_cert_source="existing"), f, NOW)


def test_missing_key_file():
    f = with_pair(recorded("debian13"), material()[0].cert_pem)
    del f.files["/etc/ssl/k.pem"]
    assert "/etc/ssl/k.pem does not exist" in plan.choose_cert(make_settings(HOST), f, NOW).reason


def test_expired_cert_is_replaced():
    old = pki.generate("rsa", [HOST], 2, NOW.replace(year=2025))
    f = with_pair(recorded("debian13"), old.cert_pem)
    assert "expired" in plan.choose_cert(make_settings(HOST), f, NOW).reason


def test_existing_keeps_wrong_name_with_warning():
    d = plan.choose_cert(make_settings(HOST, tls_cert_source="existing"), recorded("debian12"), NOW)
    assert d.source == "existing" and "names vm" in d.reason


def test_forced_generate_and_own_files():
    assert (
        plan.choose_cert(
            make_settings(HOST, tls_cert_source="generate"), recorded("debian12"), NOW
        ).source
        == "generate"
    )
    f = recorded("debian13")
    f.postconf_n["smtpd_tls_chain_files"] = (
        "/etc/postfix/tls/rsa-1.pem, /etc/postfix/tls/ecdsa-1.pem"
    )
    d = plan.choose_cert(make_settings(HOST), f, NOW)
    assert d.source == "generate" and "managed by postfix-pfs" in d.reason


# --- files and activation ----------------------------------------------------------------------


def converged(f, s, mats):
    """Facts as they are after a successful deploy of this plan."""
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), mats)
    f = dataclasses.replace(f, files=dict(f.files))
    for hf in p.files:
        # the facts command digests secret files with the host's digest key (none here)
        digest = hashlib.sha256(hf.content).hexdigest()
        f.files[hf.path] = FileState(
            hf.path, True, "" if hf.secret else digest, hf.mode, "root", "root"
        )
        f.files[hf.path].keyed = digest if hf.secret else ""
    return f


def test_first_run_uploads_material_and_main_cf_and_reloads():
    s, f, mats = make_settings(HOST), recorded("debian12"), material()
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), mats)
    assert [hf.path.rsplit("/", 1)[-1].split("-")[0] for hf in p.changed] == [
        "rsa",
        "ecdsa",
        "main.cf",
    ]
    assert [hf.mode for hf in p.changed] == ["600", "600", "644"]
    assert p.changed[0].secret and not p.changed[-1].secret
    assert p.activation == "reload" and not p.master_changed
    assert "smtpd_tls_chain_files = /etc/postfix/tls/rsa-" in p.main_cf


def test_converged_host_has_nothing_to_do():
    s, mats = make_settings(HOST), material()
    f = converged(recorded("debian12"), s, mats)
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), mats)
    assert (p.changed, p.remove, p.activation, p.has_changes) == ([], [], "none", False)


@pytest.mark.parametrize(
    "change,activation",
    [
        (lambda f: setattr(f, "master_pid", None), "start"),
        (comment_tlsmgr, "restart"),
        (edit_inet_interfaces, "restart"),
        (
            lambda f: f.files.update(
                {
                    "/etc/postfix/main.cf": FileState(
                        "/etc/postfix/main.cf", True, "x", "644", "root", "root"
                    )
                }
            ),
            "reload",
        ),
    ],
    ids=["stopped", "master.cf", "inet_interfaces", "main.cf"],
)
def test_activation_table(change, activation):
    s, mats = make_settings(HOST), material()
    f = converged(recorded("debian12"), s, mats)
    change(f)
    assert plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), mats).activation == activation


def test_key_mode_drift_is_repaired():
    s, mats = make_settings(HOST), material()
    f = converged(recorded("debian12"), s, mats)
    key = next(p for p in f.files if p.startswith("/etc/postfix/tls/rsa-"))
    f.files[key] = dataclasses.replace(f.files[key], mode="644")
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), mats)
    assert [hf.path for hf in p.changed] == [key] and p.activation == "reload"


def test_stale_material_is_removed_but_never_referenced_files():
    s, mats = make_settings(HOST), material()
    f = converged(recorded("debian12"), s, mats)
    old = "/etc/postfix/tls/rsa-0123456789ab.pem"
    f.files[old] = FileState(old, True, "z", "600", "root", "root")
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), mats)
    assert p.remove == [old]


def test_stage_subsets():
    s, f, mats = make_settings(HOST), recorded("debian12"), material()
    comment_tlsmgr(f)
    d = plan.choose_cert(s, f, NOW)
    only_tlsmgr = plan.make(HOST, s, f, d, mats, stages={"tlsmgr"})
    assert [hf.path for hf in only_tlsmgr.changed] == ["/etc/postfix/master.cf"]
    assert only_tlsmgr.activation == "restart"
    certs = plan.make(HOST, s, f, d, mats, stages={"certificates"})
    assert [hf.path.split("/")[-1][:3] for hf in certs.changed] == ["rsa", "ecd", "mai"]
    assert not certs.master_changed and certs.activation == "reload"


def test_dh_file_only_before_postfix_3_7():
    s, mats = make_settings(HOST), material()
    f = recorded("debian12")
    assert "dh1024" not in plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), mats).main_cf
    f.postconf_d["mail_version"] = "3.5.25"
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), mats)
    assert "smtpd_tls_dh1024_param_file = /etc/postfix/tls/ffdhe2048.pem" in p.main_cf
    dh = next(hf for hf in p.files if hf.path.endswith("ffdhe2048.pem"))
    assert b"BEGIN DH PARAMETERS" in dh.content and not dh.secret


def test_old_postfix_gets_separate_cert_and_key_files():
    s, mats = make_settings(HOST), material()
    f = recorded("debian12")
    f.postconf_d["mail_version"] = "3.3.0"
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), mats)
    for param in (
        "smtpd_tls_cert_file",
        "smtpd_tls_key_file",
        "smtpd_tls_eccert_file",
        "smtpd_tls_eckey_file",
    ):
        assert f"\n{param} = /etc/postfix/tls/" in p.main_cf
    assert "chain_files" not in p.main_cf
    assert {
        hf.path[-3:]: hf.mode for hf in p.files if "/tls/" in hf.path and "ffdhe" not in hf.path
    } == {"key": "600", "crt": "644"}


def test_unknown_extra_parameter_is_refused_with_host_and_name():
    s = make_settings(HOST, postfix_extra={"smtpd_tls_CApth": "/etc/ssl/certs"})
    f = recorded("debian12")
    with pytest.raises(
        plan.PlanError, match=r"d12-mx1.sandbox.test: postfix_extra: smtpd_tls_CApth unknown"
    ):
        plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), material())


def test_not_installed():
    s, f = make_settings(HOST), recorded("debian12")
    f.installed = False
    with pytest.raises(plan.PlanError, match="not installed"):
        plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), [])


def test_reused_cert_uploads_nothing_but_main_cf():
    m = material()[0]
    s = make_settings(HOST)
    f = with_pair(recorded("debian13"), m.cert_pem)
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), [])
    assert [hf.path for hf in p.files] == ["/etc/postfix/main.cf"]
    assert "smtpd_tls_cert_file = /etc/ssl/c.pem" in p.main_cf


def test_every_parameter_is_gated():
    for name in ("debian12", "debian13"):
        f = recorded(name)
        s = make_settings(HOST, maillog_file="/var/log/postfix.log", smtp_tls_security_level="dane")
        # build() refuses any rendered parameter outside its range (tests/unit/test_maincf_template.py)
        params = maincf.build(HOST, s, f, {"smtpd_tls_chain_files": "/x.pem"}).params
        assert {"maillog_file", "smtp_dns_support_level", "smtpd_tls_chain_files"} <= set(params)


def test_main_cf_template_sections_and_values():
    s, f = make_settings(HOST, relayhost="[relay.example.net]:587"), recorded("debian12")
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), material())
    lines = p.main_cf.splitlines()
    headers = [line[6:] for line in lines if line.startswith("# --- ")]
    assert [h.split(":")[0] for h in headers] == [
        "Paths",
        "General",
        "Network",
        "Mappings",
        "SMTP client (outbound) TLS",
        "SMTP server (inbound) TLS",
        "TLS library settings shared by client and server",  # empty here: OpenSSL 3.0
        "Kept from this host's main.cf",  # smtp_tls_CApath: the host's own, not managed
    ]
    params = dict(
        line.split(" = ", 1)
        for line in lines
        if line and not line.startswith("#") and " = " in line
    )
    assert (
        params["daemon_directory"] == f.postconf_d["daemon_directory"]
    )  # from the host, not a table
    assert params["relayhost"] == "[relay.example.net]:587"
    assert params["compatibility_level"] == "3.6"
    assert params["smtpd_tls_protocols"] == ">=TLSv1.2"
    assert params["smtpd_tls_exclude_ciphers"] == "kRSA, aNULL"
    assert "tls_eecdh_auto_curves" not in params  # OpenSSL 3.0: no post-quantum group
    assert len(params) == len(
        [line for line in lines if line and not line.startswith("#")]
    )  # one per line


@pytest.mark.parametrize(
    "profile,expect",
    [
        (
            "intermediate",
            {"smtpd_tls_protocols": ">=TLSv1.2", "smtpd_tls_exclude_ciphers": "kRSA, aNULL"},
        ),
        (
            "modern",
            {"smtpd_tls_protocols": ">=TLSv1.3", "smtpd_tls_mandatory_protocols": ">=TLSv1.3"},
        ),
        ("compat", {}),
    ],
)
def test_profiles(profile, expect):
    f = recorded("debian13")
    smtpd = maincf.build(HOST, make_settings(HOST, tls_profile=profile), f, {}).params
    for k, v in expect.items():
        assert smtpd[k] == v
    if profile == "compat":
        assert not {"smtpd_tls_protocols", "smtpd_tls_exclude_ciphers"} & set(smtpd)


def test_post_quantum_group_first_on_openssl_35_unless_disabled():
    f = recorded("debian13")
    params = maincf.build(HOST, make_settings(HOST), f, {}).params
    assert params["tls_eecdh_auto_curves"].split()[0] == "X25519MLKEM768"
    off = maincf.build(HOST, make_settings(HOST, tls_pq_hybrid=False), f, {}).params
    assert "tls_eecdh_auto_curves" not in off


def test_old_protocol_syntax_before_3_6():
    assert maincf.protocols("intermediate", (3, 5)) == "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1"
    assert maincf.protocols("modern", (3, 4)).endswith("!TLSv1.2")


def test_extra_parameters_override_in_place_or_go_to_site():
    f = recorded("debian12")
    s = make_settings(
        HOST,
        postfix_extra={
            "smtpd_tls_loglevel": 2,
            "message_size_limit": 1024,
            "smtputf8_enable": False,
        },
    )
    text = maincf.build(HOST, s, f, {}).text
    server, site = text.split("# --- SMTP server")[1], text.split("# --- Site-specific")[1]
    assert text.count("smtpd_tls_loglevel =") == 1
    assert "\nsmtpd_tls_loglevel = 2\n" in server.split("# --- ")[0]  # where it stands
    assert site.splitlines()[1:] == ["message_size_limit = 1024", "smtputf8_enable = no"]
