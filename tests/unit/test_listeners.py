"""master.cf listeners (where TLS is spoken and how to probe it) and the deploy's handling
of smtpd services' TLS -o overrides that weaken the profile."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from postfix_pfs import mastercf, plan, plan_view, verify
from tests.unit.helpers import NOW, recorded
from tests.unit.test_plan import HOST, converged, make_settings, material

LIVED_IN = """\
# a comment
smtp      inet  n       -       y       -       1       postscreen
smtpd     pass  -       -       y       -       -       smtpd
  -o smtpd_tls_exclude_ciphers=aNULL
submission inet n       -       y       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
# a comment inside the entry
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_chain_files=/etc/ssl/private/submission.pem
smtps     inet  n       -       y       -       -       smtpd
  -o smtpd_tls_wrappermode=yes
127.0.0.1:10025 inet n  -       n       -       -       smtpd
  -o smtpd_tls_security_level=none
2525      inet  n       -       y       -       -       smtpd -o { smtpd_tls_protocols = >=TLSv1 }
mail.example.net:submissions inet n - y - - smtpd -o smtpd_tls_wrappermode=yes
relay-in  inet  n       -       y       -       -       smtpd
#2526     inet  n       -       y       -       -       smtpd
pickup    unix  n       -       y       60      1       pickup
tlsmgr    unix  -       -       y       1000?   1       tlsmgr
"""


def by_name(text, interfaces=("127.0.2.1",), level="may"):
    return {li.name: li for li in mastercf.listeners(text, list(interfaces), level)}


def test_listeners_of_a_lived_in_master_cf():
    ls = by_name(LIVED_IN)
    assert list(ls) == [
        "smtp",
        "submission",
        "smtps",
        "127.0.0.1:10025",
        "2525",
        "mail.example.net:submissions",
        "relay-in",
    ]
    want = {  # name: (host, port, wrapper, private, not_probed)
        "smtp": ("127.0.2.1", 25, False, False, ""),
        "submission": ("127.0.2.1", 587, False, False, ""),
        "smtps": ("127.0.2.1", 465, True, False, ""),
        "127.0.0.1:10025": (
            "127.0.0.1",
            10025,
            False,
            True,
            "TLS off (-o smtpd_tls_security_level=none)",
        ),
        "2525": ("127.0.2.1", 2525, False, False, ""),
        "mail.example.net:submissions": ("mail.example.net", 465, True, False, ""),
        "relay-in": ("127.0.2.1", None, False, False, "unknown port for service name relay-in"),
    }
    for name, (host, port, wrapper, private, why) in want.items():
        li = ls[name]
        assert (li.host, li.port, li.wrapper, li.private, li.not_probed) == (
            host,
            port,
            wrapper,
            private,
            why,
        ), name
    # postscreen on 25 is the smtp listener; the smtpd it passes clients to has the -o
    assert ls["smtp"].tls_overrides == {"smtpd_tls_exclude_ciphers": "aNULL"}
    assert ls["2525"].overrides == {"smtpd_tls_protocols": ">=TLSv1"}
    assert ls["submission"].cert_override and not ls["smtp"].cert_override
    assert ls["submission"].spec() == "submission,127.0.2.1,587,starttls,no"
    assert ls["smtps"].spec() == "smtps,127.0.2.1,465,wrapper,yes"


@pytest.mark.parametrize(
    "interfaces,host",
    [(["all"], "127.0.0.1"), (["loopback-only"], "127.0.0.1"), (["192.0.2.7", "all"], "192.0.2.7")],
)
def test_listener_address_from_inet_interfaces(interfaces, host):
    assert by_name("smtp inet n - y - - smtpd\n", interfaces)["smtp"].host == host


def test_main_cf_tls_off_means_not_probed_unless_the_listener_turns_it_on():
    text = "smtp inet n - y - - smtpd\nsubmission inet n - y - - smtpd -o smtpd_tls_security_level=encrypt\n"
    ls = by_name(text, level="none")
    assert ls["smtp"].not_probed == "TLS off (main.cf)" and ls["submission"].not_probed == ""


def weak(profile="intermediate"):
    return lambda private, n, v: verify.weakens(n, v, profile, private)


def test_weakening_overrides_are_removed_and_others_kept():
    text, removed = mastercf.drop_overrides(LIVED_IN, weak())
    assert removed == [
        "smtpd: -o smtpd_tls_exclude_ciphers=aNULL removed (protected TLS policy: drops the exclusion of kRSA)",
        "2525: -o smtpd_tls_protocols=>=TLSv1 removed (protected TLS policy: allows TLSv1, the intermediate profile nothing below TLSv1.2)",
    ]
    lines = text.splitlines()
    assert "  -o smtpd_tls_exclude_ciphers=aNULL" not in lines  # its own line goes
    assert "2525      inet  n       -       y       -       -       smtpd" in lines  # inline
    for kept in (
        "  -o smtpd_tls_security_level=encrypt",
        "  -o smtpd_tls_security_level=none",  # a private listener may switch TLS off
        "  -o smtpd_tls_chain_files=/etc/ssl/private/submission.pem",
        "# a comment inside the entry",
        "#2526     inet  n       -       y       -       -       smtpd",
    ):
        assert kept in lines
    assert len(lines) == len(LIVED_IN.splitlines()) - 1
    assert mastercf.drop_overrides(text, weak()) == (text, [])  # idempotent


def test_the_issue_example_and_tls_off_on_a_public_listener():
    text = (
        "smtp      inet  n       -       y       -       -       smtpd"
        " -o smtpd_tls_protocols=>=TLSv1 -o smtpd_tls_exclude_ciphers=aNULL\n"
        "submission inet n - y - - smtpd\n  -o smtpd_tls_security_level=none\n  -o smtpd_sasl_auth_enable=yes\n"
    )
    out, removed = mastercf.drop_overrides(text, weak())
    assert out == (
        "smtp      inet  n       -       y       -       -       smtpd\n"
        "submission inet n - y - - smtpd\n  -o smtpd_sasl_auth_enable=yes\n"
    )
    assert [r.split(" removed")[0] for r in removed] == [
        "smtp: -o smtpd_tls_protocols=>=TLSv1",
        "smtp: -o smtpd_tls_exclude_ciphers=aNULL",
        "submission: -o smtpd_tls_security_level=none",
    ]
    assert mastercf.drop_overrides(text, weak("compat"))[1] == [removed[2]]


def test_recorded_hosts_have_one_probed_smtp_listener():
    for name in ("debian12", "debian13"):
        ls = recorded(name).listeners()
        assert [(li.name, li.port, li.not_probed) for li in ls] == [("smtp", 25, "")]


def with_master(f, text):
    f.master_cf = text
    f.files["/etc/postfix/master.cf"] = dataclasses.replace(
        f.files["/etc/postfix/master.cf"], sha256=hashlib.sha256(text.encode()).hexdigest()
    )


def test_plan_removes_a_weakening_override_with_a_reload_and_says_so():
    s, mats = make_settings(HOST), material()
    f = converged(recorded("debian12"), s, mats)
    mc = f.master_cf.replace(
        "smtpd\n",
        "smtpd\n  -o smtpd_tls_protocols=>=TLSv1\n  -o smtpd_tls_exclude_ciphers=aNULL\n",
        1,
    )
    with_master(f, mc)
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), mats)
    assert [hf.path for hf in p.changed] == ["/etc/postfix/master.cf"]
    assert p.activation == "reload" and p.master_changed  # a reload re-reads master.cf
    assert p.changed[0].content.decode() == recorded("debian12").master_cf
    assert p.probe_listeners == "smtp,127.0.2.1,25,starttls,yes"
    lines = plan_view.render(HOST, plan_view.describe(p, f, s, mats))
    assert lines[0] == f"{HOST}: would reload Postfix"
    assert any(
        "master.cf: smtp: -o smtpd_tls_protocols=>=TLSv1 removed (protected TLS policy" in ln
        for ln in lines
    )
    # the certificates stage does not own master.cf: it leaves it, the proof judges it
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), mats, stages={"certificates"})
    assert not p.master_changed and p.overrides_removed == []


def test_a_stage_that_does_not_write_main_cf_proves_the_profile_only_where_it_is_in_force():
    s, mats = make_settings(HOST), material()
    fresh = recorded("debian12")
    p = plan.make(HOST, s, fresh, plan.choose_cert(s, fresh, NOW), mats, stages={"tlsmgr"})
    assert p.promise_profile == "postfix-defaults"  # Postfix's defaults are still in main.cf
    done = converged(recorded("debian12"), s, mats)
    p = plan.make(HOST, s, done, plan.choose_cert(s, done, NOW), mats, stages={"tlsmgr"})
    assert p.promise_profile == "fs-only"
    p = plan.make(HOST, s, fresh, plan.choose_cert(s, fresh, NOW), mats)
    assert p.promise_profile == "fs-only"
