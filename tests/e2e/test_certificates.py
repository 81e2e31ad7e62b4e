"""Certificates on real hosts: reuse, lend, find, refuse, renew, serve RSA and ECDSA."""

from __future__ import annotations

import hashlib
import ssl

from tests.e2e.conftest import deploy, inventory_with, reset, starttls

MAKE_CERT = (
    "openssl req -x509 -newkey {alg} -nodes -keyout {key} -out {cert} -days 90 "
    "-subj /CN={cn} -addext subjectAltName=DNS:{cn} >/dev/null 2>&1"
)


def sha(h, path) -> str:
    return h.ssh(f"sha256sum {path}").stdout.split()[0]


def cert_der(h, path) -> bytes:
    pem = h.ssh(f"cat {path}").stdout
    return ssl.PEM_cert_to_DER_cert(pem[: pem.index("-----END CERTIFICATE-----") + 25])


def test_a_valid_configured_cert_is_kept(hosts, store):
    h = hosts[0]
    reset(h.name)
    h.ssh(
        MAKE_CERT.format(
            alg="rsa:2048", key="/etc/ssl/private/mx.key", cert="/etc/ssl/certs/mx.pem", cn=h.fqdn
        )
    )
    h.ssh(
        "postconf -e smtpd_tls_cert_file=/etc/ssl/certs/mx.pem smtpd_tls_key_file=/etc/ssl/private/mx.key && postfix reload"
    )
    before = (sha(h, "/etc/ssl/certs/mx.pem"), sha(h, "/etc/ssl/private/mx.key"))
    run = deploy("--limit", h.name, store=store)
    assert run.returncode == 0, run.output[-2000:]
    assert "reused: smtpd_tls_cert_file = /etc/ssl/certs/mx.pem" in run.output
    assert (sha(h, "/etc/ssl/certs/mx.pem"), sha(h, "/etc/ssl/private/mx.key")) == before
    assert starttls(h)[2] == cert_der(h, "/etc/ssl/certs/mx.pem")
    assert (
        h.ssh("ls /etc/postfix/tls 2>/dev/null | wc -l").stdout.strip() == "0"
    )  # nothing generated


def test_smtp_side_cert_is_lent_to_smtpd(hosts, store):
    h = hosts[1]
    reset(h.name)
    h.ssh(
        MAKE_CERT.format(
            alg="ec -pkeyopt ec_paramgen_curve:P-256",
            key="/etc/postfix/c.key",
            cert="/etc/postfix/c.pem",
            cn=h.fqdn,
        )
    )
    h.ssh(
        "postconf -X smtpd_tls_cert_file smtpd_tls_key_file && "
        "postconf -e smtp_tls_cert_file=/etc/postfix/c.pem smtp_tls_key_file=/etc/postfix/c.key && postfix reload"
    )
    run = deploy("--limit", h.name, store=store)
    assert run.returncode == 0, run.output[-2000:]
    assert "lent from smtp_tls_*" in run.output
    assert h.ssh("postconf -h smtpd_tls_cert_file").stdout.strip() == "/etc/postfix/c.pem"
    assert starttls(h)[2] == cert_der(h, "/etc/postfix/c.pem")


def test_cert_under_a_configured_glob_is_found(hosts, store, tmp_path):
    h = hosts[0]
    reset(h.name)
    h.ssh("mkdir -p /home/ops/cert/my.corp /etc/ssl/private")
    h.ssh(
        MAKE_CERT.format(
            alg="rsa:2048",
            key="/home/ops/cert/my.corp/1234.key.op.pem",
            cert=f"/home/ops/cert/{h.name}.intranet.my.corp.pem",
            cn=h.fqdn,
        )
    )
    inv = inventory_with(
        tmp_path,
        {},
        groups={
            "sandbox": "maillog_file = '/var/log/postfix.log'\ntls_cert_globs = ['/home/*/cert/*.intranet.my.corp.pem']\ntls_key_globs = ['/home/*/*cert/my.corp/*key.op.pem']\n"
        },
    )
    run = deploy("--limit", h.name, store=store, inventory=inv)
    assert run.returncode == 0, run.output[-2000:]
    assert "found under tls_cert_globs" in run.output
    assert starttls(h)[2] == cert_der(h, f"/home/ops/cert/{h.name}.intranet.my.corp.pem")


def test_mismatched_pair_fails_clearly_and_changes_nothing(hosts, store):
    h = hosts[1]
    reset(h.name)
    h.ssh(
        MAKE_CERT.format(
            alg="rsa:2048", key="/etc/ssl/private/a.key", cert="/etc/ssl/certs/a.pem", cn=h.fqdn
        )
    )
    h.ssh(
        MAKE_CERT.format(
            alg="rsa:2048", key="/etc/ssl/private/b.key", cert="/etc/ssl/certs/b.pem", cn=h.fqdn
        )
    )
    h.ssh(
        "postconf -e smtpd_tls_cert_file=/etc/ssl/certs/a.pem smtpd_tls_key_file=/etc/ssl/private/b.key"
    )
    main_cf, pid = sha(h, "/etc/postfix/main.cf"), h.master_pid()
    run = deploy("--limit", h.name, store=store, extra_data={"tls_cert_source": "existing"})
    assert run.returncode != 0
    assert (
        f"{h.fqdn}: tls_cert_source = existing, but /etc/ssl/private/b.key does not match the certificate in /etc/ssl/certs/a.pem"
        in run.output
    )
    assert sha(h, "/etc/postfix/main.cf") == main_cf and h.master_pid() == pid


def test_short_validity_is_renewed_once(hosts, store):
    h = hosts[-1]
    reset(h.name)
    first = deploy("--limit", h.name, store=store, extra_data={"tls_cert_days": 20})
    assert first.returncode == 0, first.output[-2000:]
    der1 = starttls(h)[2]
    second = deploy("--limit", h.name, store=store)  # 20 days left < 30-day window: renew
    assert second.returncode == 0 and "inside the 30-day renewal window" in second.output, (
        second.output[-2000:]
    )
    der2 = starttls(h)[2]
    assert der2 != der1
    third = deploy("--limit", h.name, store=store)
    assert (
        third.returncode == 0 and third.totals()["changed"] == 0 and "generated" not in third.output
    )
    assert starttls(h)[2] == der2


def test_both_rsa_and_ecdsa_are_served(hosts, store):
    h = hosts[0]
    reset(h.name)
    assert deploy("--limit", h.name, store=store).returncode == 0
    kinds = {}
    for kind, cipher in (
        ("rsa", "ECDHE-RSA-AES128-GCM-SHA256"),
        ("ecdsa", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ):
        # a TLS 1.2 client that can only accept one signature type
        proto, name, der = starttls(h, maximum_version=ssl.TLSVersion.TLSv1_2, set_ciphers=cipher)
        assert (proto, name) == ("TLSv1.2", cipher)
        kinds[kind] = hashlib.sha256(der).hexdigest()
    store_fp = {
        k: hashlib.sha256(
            ssl.PEM_cert_to_DER_cert((store / h.name / f"{k}.crt").read_text())
        ).hexdigest()
        for k in kinds
    }
    assert kinds == store_fp
