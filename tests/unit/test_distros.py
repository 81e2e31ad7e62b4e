"""Plan and template over every distribution fixture (tests/fixtures/facts)."""

import pytest

from postfix_pfs import maincf, plan
from tests.unit.helpers import DISTROS, NOW, make_settings, recorded
from tests.unit.test_plan import material

HOST = "mx1.example.net"

EXPECT = {
    # distro: (daemon_directory, setgid_group, database type, CA bundle, init command, chain files?, DH file?)
    "debian12": (
        "/usr/lib/postfix/sbin",
        "postdrop",
        "hash",
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/init.d/postfix %s",
        True,
        False,
    ),
    "debian13": (
        "/usr/lib/postfix/sbin",
        "postdrop",
        "hash",
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/init.d/postfix %s",
        True,
        False,
    ),
    "debian12-systemd": (  # recorded on the sandbox's systemd-booted host
        "/usr/lib/postfix/sbin",
        "postdrop",
        "hash",
        "/etc/ssl/certs/ca-certificates.crt",
        "systemctl %s postfix@- postfix",
        True,
        False,
    ),
    "ubuntu2404": (
        "/usr/lib/postfix/sbin",
        "postdrop",
        "hash",
        "/etc/ssl/certs/ca-certificates.crt",
        "systemctl %s postfix@- postfix",
        True,
        False,
    ),
    "rhel9": (
        "/usr/libexec/postfix",
        "postdrop",
        "lmdb",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "systemctl %s postfix",
        True,
        True,
    ),
    "opensuse15": (
        "/usr/lib/postfix/bin",
        "maildrop",
        "hash",
        "/etc/ssl/ca-bundle.pem",
        "systemctl %s postfix",
        True,
        False,
    ),
    "alpine": (
        "/usr/libexec/postfix",
        "postdrop",
        "lmdb",
        "/etc/ssl/certs/ca-certificates.crt",
        "rc-service postfix %s",
        True,
        False,
    ),
}


def params_of(text: str) -> dict[str, str]:
    return dict(
        line.split(" = ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )


@pytest.mark.parametrize("distro", DISTROS)
def test_rendered_main_cf_uses_the_distros_own_values(distro):
    daemon, sgid, db, ca, ctl, chain, dh = EXPECT[distro]
    f = recorded(distro)
    s = make_settings(HOST)
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), material((HOST,)))
    got = params_of(p.main_cf)
    assert got["daemon_directory"] == daemon
    assert got["setgid_group"] == sgid
    assert got["alias_maps"] == f"{db}:/etc/aliases"
    assert got["smtpd_tls_session_cache_database"].startswith("lmdb:" if db == "lmdb" else "btree:")
    assert got["smtp_tls_CAfile"] == ca
    assert plan.init_command(f.init, f.systemd_instance) == ctl
    assert ("smtpd_tls_chain_files" in got) == chain
    assert ("smtpd_tls_dh1024_param_file" in got) == dh
    for name in got:  # nothing outside its version range
        assert name not in maincf.PARAMS or maincf.in_range(name, f.version), name


@pytest.mark.parametrize("distro", DISTROS)
def test_no_deprecated_parameter_is_ever_emitted(distro):
    f = recorded(distro)
    for profile in ("intermediate", "compat", "modern"):
        s = make_settings(HOST, tls_profile=profile, smtp_tls_security_level="dane")
        text = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), material((HOST,))).main_cf
        for old in (
            "smtpd_use_tls",
            "smtp_use_tls",
            "smtpd_enforce_tls",
            "smtpd_tls_eecdh_grade",
            "dh512",
            "tls_random_source",
            "tls_preempt_cipherlist",
            "CApth",
        ):
            assert old not in text, (distro, profile, old)


@pytest.mark.parametrize(
    "distro,compat,pq",
    [
        ("debian12", "3.6", False),
        ("debian13", "3.9", True),
        ("ubuntu2404", "3.6", False),
        ("rhel9", "2", False),
        ("opensuse15", "3.6", False),
        ("alpine", "3.9", False),
    ],
)
def test_compatibility_level_and_post_quantum_by_version(distro, compat, pq):
    f = recorded(distro)
    params = maincf.build(HOST, make_settings(HOST), f, {}).params
    assert params["compatibility_level"] == compat
    curves = params.get("tls_eecdh_auto_curves", "")
    assert curves.startswith("X25519MLKEM768") == pq


def test_protocol_syntax_by_version():
    assert (
        params_of(
            plan.make(
                HOST,
                make_settings(HOST),
                recorded("rhel9"),
                plan.CertDecision("existing", "", {}),
                [],
            ).main_cf
        )["smtpd_tls_protocols"]
        == "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1"
    )


@pytest.mark.parametrize(
    "init,cmd", sorted(plan.INIT_COMMANDS.items()) + [("unknown", "postfix %s")]
)
def test_init_commands(init, cmd):
    assert plan.init_command(init) == cmd


@pytest.mark.parametrize(
    "init,instance,cmd",
    [
        # Debian/Ubuntu: the instance that runs Postfix is named, or its failure goes unseen
        ("systemd", "postfix@-", "systemctl %s postfix@- postfix"),
        ("systemd", "", "systemctl %s postfix"),  # RHEL, SUSE: postfix.service itself
        ("sysv", "postfix@-", "/etc/init.d/postfix %s"),  # only systemd has instances
        ("none", "postfix@-", "postfix %s"),
    ],
)
def test_init_command_names_the_systemd_instance(init, instance, cmd):
    assert plan.init_command(init, instance) == cmd
