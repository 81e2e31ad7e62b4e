"""TLS policy profiles, judged by sslyze; post-quantum key exchange, judged by openssl."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import deploy, forward_secret, reset, starttls
from tests.e2e.scan import accepted_suites


@pytest.fixture(scope="module")
def fresh(hosts):
    reset()
    return hosts


def scan_all(hosts):
    return {h.name: accepted_suites(h.address, h.fqdn) for h in hosts}


def test_fs_only_every_accepted_suite_is_forward_secret(fresh, store):
    run = deploy(store=store)
    assert run.returncode == 0, run.output[-2000:]
    for name, suites in scan_all(fresh).items():
        for proto in ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"):
            assert suites[proto] == [], f"{name} accepts {proto}"
        assert suites["TLSv1.2"] and suites["TLSv1.3"], name
        no_fs = [s for proto in suites for s, fs in suites[proto] if not fs]
        assert no_fs == [], f"{name} accepts suites without forward secrecy: {no_fs}"
    for h in fresh:
        assert fresh and h.ssh("postconf -n >/dev/null").stderr == "", h.name


def test_postfix_defaults_by_its_old_name_compat_still_works(fresh, store):
    run = deploy(store=store, extra_data={"tls_profile": "compat"})
    assert run.returncode == 0, run.output[-2000:]
    for h in fresh:
        text = h.ssh("cat /etc/postfix/main.cf").stdout
        assert "smtpd_tls_protocols" not in text and "smtpd_tls_exclude_ciphers" not in text
        proto, cipher, _ = starttls(h)
        assert forward_secret(proto, cipher)  # a modern client still gets FS
        assert h.ssh("postconf -n >/dev/null").stderr == "", h.name
    # the trade-off the README names: old protocols and RSA key exchange come back
    suites = accepted_suites(fresh[0].address, fresh[0].fqdn)
    assert suites["TLSv1.0"] and any(not fs for _, fs in suites["TLSv1.2"])


def test_tls13_only_accepts_only_tls13(fresh, store):
    run = deploy(store=store, extra_data={"tls_profile": "tls13-only"})
    assert run.returncode == 0, run.output[-2000:]
    for name, suites in scan_all(fresh).items():
        assert [p for p, s in suites.items() if s] == ["TLSv1.3"], name


def test_post_quantum_hybrid_on_debian13_only(fresh, store):
    run = deploy(store=store)
    assert run.returncode == 0, run.output[-2000:]
    for h in fresh:
        main_cf = h.ssh("cat /etc/postfix/main.cf").stdout
        if h.suite == "trixie":
            assert "tls_eecdh_auto_curves = X25519MLKEM768 " in main_cf
            # the host's own OpenSSL 3.5 client, offering only the hybrid group
            out = h.ssh(
                f"echo QUIT | openssl s_client -starttls smtp -connect {h.address}:25 "
                "-groups X25519MLKEM768 -brief 2>&1",
                check=False,
            ).stdout
            assert "CONNECTION ESTABLISHED" in out and "group: X25519MLKEM768" in out, out
        else:
            assert "X25519MLKEM768" not in main_cf, h.name
    if not any(h.suite == "trixie" for h in fresh):
        pytest.fail("the fleet has no Debian 13 host (sandbox/fleet.py up trixie=1)")
