"""Golden renders of main.cf (issue 14 point 4): the template may be rewritten, what Postfix
reads may not change.

Every facts fixture x a representative set of settings is rendered and compared with the
text recorded from the code before the template became the main.cf
(tests/unit/golden_maincf/CASE.cf), comment and blank lines aside. The parameters whose
value is the host's own (adopt.py) and the plan view's provenance of every rendered
parameter are recorded too (meta.json), so yields-to-host and postfix_extra
override-in-place semantics stay as they were.

Re-record only on purpose, when main.cf is meant to change:
    .venv/bin/python -m tests.unit.test_maincf_golden --write
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

import pytest

from postfix_pfs import adopt, maincf, pki, plan, plan_view
from tests.unit.helpers import NOW, make_settings, recorded

GOLDEN = Path(__file__).resolve().parent / "golden_maincf"
HOST = "mx1.example.net"

FIXTURES = (
    "debian11",  # Postfix 3.5, OpenSSL 1.1.1: old protocol syntax, DH file
    "debian12",  # 3.7, OpenSSL 3.0
    "debian13",  # 3.10, OpenSSL 3.5: post-quantum group
    "debian12-systemd",
    "ubuntu2404",  # 3.8, fresh install
    "rhel9",  # 3.5, lmdb
    "opensuse15",  # 3.8
    "alpine",  # 3.9, lmdb
)

CHAIN = {
    "smtpd_tls_chain_files": "/etc/postfix/tls/rsa-0123456789ab.pem, "
    "/etc/postfix/tls/ecdsa-ba9876543210.pem"
}
PAIRS = {
    "smtpd_tls_cert_file": "/etc/ssl/certs/mx.pem",
    "smtpd_tls_key_file": "/etc/ssl/private/mx.key",
    "smtpd_tls_eccert_file": "/etc/ssl/certs/mx-ec.pem",
    "smtpd_tls_eckey_file": "/etc/ssl/private/mx-ec.key",
}

# what a production MX carries (tests/unit/test_adopt.py's, plus host TLS values that are
# protected or obsolete, and identity values the inventory does not set)
LIVED_IN = {
    "smtpd_milters": "unix:/run/opendkim/opendkim.sock",
    "non_smtpd_milters": "$smtpd_milters",
    "smtpd_sasl_auth_enable": "yes",
    "smtpd_recipient_restrictions": "permit_mynetworks, permit_sasl_authenticated, "
    "reject_unauth_destination",
    "virtual_mailbox_domains": "virt.example",
    "message_size_limit": "20480000",
    "header_checks": "regexp:/etc/postfix/header_checks",
    "recipient_delimiter": "-",
    "biff": "yes",
    "smtpd_relay_restrictions": "permit_mynetworks reject_unauth_destination",
    "inet_interfaces": "127.0.2.9",
    "myhostname": "mail.example.org",
    "mydomain": "example.org",
    "relayhost": "[old-relay.example.org]",
    "smtpd_banner": "$myhostname ESMTP ready",
    "smtpd_tls_loglevel": "2",
    "smtp_tls_session_cache_database": "btree:/var/lib/postfix/old_scache",
    "smtpd_use_tls": "yes",
    "tls_preempt_cipherlist": "yes",
    "smtpd_tls_protocols": "!SSLv2",
    "alias_maps": "hash:/etc/aliases, hash:/etc/postfix/old-aliases",
}

TABLES = {
    "aliases": {"postmaster": "root"},
    "virtual_alias_maps": {"info@virt.example": "root"},
    "virtual_alias_domains": ["virt.example"],
    "canonical_maps": {"root": "admin@example.net"},
    "sender_canonical_maps": {"www-data": "web@example.net"},
    "relocated_maps": {"old@example.net": "new@example.net"},
    "transport_maps": {"example.com": "smtp:[10.0.0.1]:25"},
    "sender_access": {"spam.example": "REJECT"},
    "smtp_tls_policy": {"example.com": "encrypt"},
}

# case -> (inventory data, postconf -n laid over the fixture's, server files,
#          client files, fleet CA file)
CASES: dict[str, tuple[dict, dict, dict, dict, str | None]] = {
    "default": ({}, {}, CHAIN, {}, None),
    "mozilla-intermediate": ({"tls_profile": "mozilla-intermediate"}, {}, CHAIN, {}, None),
    "tls13-only": ({"tls_profile": "tls13-only"}, {}, CHAIN, {}, None),
    "postfix-defaults": ({"tls_profile": "postfix-defaults"}, {}, CHAIN, {}, None),
    "alias-intermediate": ({"tls_profile": "intermediate"}, {}, CHAIN, {}, None),
    "custom": (
        {
            "tls_profile": "custom",
            "postfix_extra": {
                "smtpd_tls_exclude_ciphers": "kRSA, aNULL, SHA1",
                "tls_preempt_cipherlist": True,
                "smtpd_tls_mandatory_protocols": ">=TLSv1.3",
            },
        },
        {},
        CHAIN,
        {},
        None,
    ),
    "relay-password": (
        {
            "relayhost": "[smtp.example.net]:587",
            "relayhost_username": "mx1",
            "relayhost_password": "s3cret-golden",
            "relay_tls_level": "verify",
        },
        {},
        CHAIN,
        {},
        None,
    ),
    "tables": (TABLES, {}, CHAIN, {}, None),
    "extra-maps": (
        {
            "aliases": {"postmaster": "root"},
            "extra_maps": {
                "alias_maps": ["ldap:/etc/postfix/ldap-aliases.cf"],
                "virtual_alias_maps": ["mysql:/etc/postfix/mysql-virtual.cf"],
                "transport_maps": ["hash:/etc/postfix/transport-by-hand"],
            },
            "transport_maps": {"example.com": "smtp:[10.0.0.1]:25"},
        },
        {},
        CHAIN,
        {},
        None,
    ),
    "postfix-extra": (
        {
            "postfix_extra": {
                "smtpd_tls_loglevel": 2,
                "biff": True,
                "message_size_limit": 1024,
                "smtputf8_enable": False,
            }
        },
        {},
        CHAIN,
        {},
        None,
    ),
    "dane-client": ({"smtp_tls_security_level": "dane"}, {}, CHAIN, {}, None),
    "maillog-identity": (
        {
            "maillog_file": "/var/log/postfix.log",
            "myhostname": "mx9.example.net",
            "mydomain": "example.net",
            "mydestination": ["$myhostname", "example.net"],
            "inet_interfaces": ["127.0.2.1", "::1"],
            "inet_protocols": "ipv4",
            "mynetworks": ["127.0.0.0/8", "10.0.0.0/8"],
            "smtpd_banner": "$myhostname ESMTP",
            "tls_loglevel": 2,
        },
        {},
        CHAIN,
        {},
        None,
    ),
    "no-pq-dh4096": ({"tls_pq_hybrid": False, "tls_dh_group": "ffdhe4096"}, {}, CHAIN, {}, None),
    "pairs": ({}, {}, PAIRS, {}, None),
    "lived-in": ({}, LIVED_IN, CHAIN, {}, None),
    "lived-in-inventory-wins": (
        {"relayhost": "", "inet_interfaces": ["all"], "drop_host_params": ["header_checks"]},
        LIVED_IN,
        CHAIN,
        {},
        None,
    ),
    "lived-in-drop-all": ({"drop_host_params": ["all"]}, LIVED_IN, CHAIN, {}, None),
    "server-encrypt": ({}, {"smtpd_tls_security_level": "encrypt"}, CHAIN, {}, None),
    "server-enforce-obsolete": ({}, {"smtpd_enforce_tls": "yes"}, CHAIN, {}, None),
    "fleet-ca-client-files": (
        {"tls_cert_source": "ca"},
        {
            "smtp_tls_cert_file": "/etc/ssl/certs/client.pem",
            "smtp_tls_key_file": "/etc/ssl/private/client.key",
        },
        CHAIN,
        {
            "smtp_tls_cert_file": "/etc/ssl/certs/client.pem",
            "smtp_tls_key_file": "/etc/ssl/private/client.key",
        },
        "/etc/postfix/tls/fleet-ca.pem",
    ),
}


def case_inputs(case: str, fixture: str):
    data, host_n, server, client, ca = CASES[case]
    f = recorded(fixture)
    f.postconf_n.update(host_n)
    s = adopt.effective(make_settings(HOST, **data), f)
    dh = f"{s.tls_dir}/{s.tls_dh_group}.pem" if maincf.needs_dh_file(f) else None
    return s, f, server, dh, client, ca


def render_case(case: str, fixture: str) -> tuple[str, set[str], dict[str, str]]:
    """(main.cf text, parameters kept from the host, provenance of every rendered one)."""
    s, f, server, dh, client, ca = case_inputs(case, fixture)
    main = maincf.build(HOST, s, f, server, dh, client, ca)
    return main.text, main.kept, {n: plan_view.provenance(n, s, main.kept) for n in main.params}


# --- through the whole plan: certificate decision, files, DH upload --------------------


def _recipe_host():
    f = recorded("debian12")
    f.postconf_n.update(
        {
            "smtp_tls_cert_file": "/etc/ssl/certs/ssl-cert-snakeoil.pem",
            "smtp_tls_key_file": "/etc/ssl/private/ssl-cert-snakeoil.key",
            "smtpd_use_tls": "yes",
            "smtpd_tls_eecdh_grade": "strong",
            "smtpd_tls_dh512_param_file": "/etc/postfix/dh_0512.pem",
        }
    )
    f.files["/etc/postfix/main.cf"] = dataclasses.replace(
        f.files["/etc/postfix/main.cf"], sha256="edited"
    )
    return f


def _material():
    return [pki.generate(k, [HOST], 90, NOW) for k in pki.KINDS]


def plan_case(fixture: str) -> str:
    """main.cf of plan.make with generated material (its file names normalised)."""
    f = _recipe_host() if fixture == "recipe" else recorded(fixture)
    s = adopt.effective(make_settings(HOST), f)
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), _material())
    return _normalise(p.main_cf)


def _normalise(text: str) -> str:
    return re.sub(r"/(rsa|ecdsa)-[0-9a-f]{12}\.", r"/\1-HASH.", text)


PLAN_FIXTURES = ("debian11", "debian12", "debian13", "rhel9", "recipe")


# --- the comparison ----------------------------------------------------------------------


def settings_lines(text: str) -> list[str]:
    """What Postfix reads: the file without comment and blank lines."""
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def golden_ids():
    return [(c, fx) for c in CASES for fx in FIXTURES]


@pytest.mark.parametrize("case,fixture", golden_ids())
def test_render_equals_golden(case, fixture):
    text, kept, provenance = render_case(case, fixture)
    golden = (GOLDEN / f"{case}--{fixture}.cf").read_text()
    assert settings_lines(text) == settings_lines(golden)
    meta = json.loads((GOLDEN / "meta.json").read_text())[f"{case}--{fixture}"]
    assert sorted(kept) == meta["kept"]
    assert provenance == meta["provenance"]


@pytest.mark.parametrize("fixture", PLAN_FIXTURES)
def test_plan_render_equals_golden(fixture):
    golden = (GOLDEN / f"plan--{fixture}.cf").read_text()
    assert settings_lines(plan_case(fixture)) == settings_lines(golden)


def write() -> None:
    GOLDEN.mkdir(exist_ok=True)
    meta = {}
    for case, fixture in golden_ids():
        text, kept, provenance = render_case(case, fixture)
        (GOLDEN / f"{case}--{fixture}.cf").write_text(text)
        meta[f"{case}--{fixture}"] = {"kept": sorted(kept), "provenance": provenance}
    (GOLDEN / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    for fixture in PLAN_FIXTURES:
        (GOLDEN / f"plan--{fixture}.cf").write_text(plan_case(fixture))


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    write()
