"""Single stages on recipe-shaped hosts (issue 20): which warnings are fatal, and
when the certificates stage brings tlsmgr along."""

import pytest

from postfix_pfs import pipeline, plan
from postfix_pfs.plan import HostFile
from tests.unit.helpers import NOW, make_settings, recorded

MAIN = "/etc/postfix/main.cf"
CAPTH = "/usr/sbin/postconf: warning: /etc/postfix/main.cf: unused parameter: smtpd_tls_CApth=/etc/ssl/certs"
USE_TLS = (
    'postconf: warning: /etc/postfix/main.cf: support for parameter "smtpd_use_tls" will be '
    'removed; instead, specify "smtpd_tls_security_level"'
)


@pytest.mark.parametrize(
    "warnings, written, expected",
    [
        ([], [], []),
        # the tlsmgr/reload stages write no main.cf: the host's warning is pre-existing
        (
            [CAPTH],
            ["/etc/postfix/master.cf"],
            [
                "pre-existing warning: /etc/postfix/main.cf: unused parameter: "
                "smtpd_tls_CApth=/etc/ssl/certs (reported, not fatal: this run does not write "
                "/etc/postfix/main.cf)"
            ],
        ),
        # a run that rewrites main.cf: its warnings go with it (and the new one must not warn)
        (
            [CAPTH, USE_TLS],
            [MAIN],
            [
                "current warning, gone with the new main.cf: /etc/postfix/main.cf: unused "
                "parameter: smtpd_tls_CApth=/etc/ssl/certs",
                "current warning, gone with the new main.cf: /etc/postfix/main.cf: support for "
                'parameter "smtpd_use_tls" will be removed; instead, specify "smtpd_tls_security_level"',
            ],
        ),
    ],
)
def test_warning_notes_judge_by_what_the_run_writes(warnings, written, expected):
    f = recorded("debian12")
    f.postconf_n_warnings = warnings
    changed = [HostFile(p, b"") for p in written]
    assert plan.warning_notes(f, changed) == expected


ACTIVE = "smtp inet n - y - - smtpd\ntlsmgr unix - - y 1000? 1 tlsmgr\n"
COMMENTED = "smtp inet n - y - - smtpd\n#tlsmgr unix - - y 1000? 1 tlsmgr\n"
MISSING = "smtp inet n - y - - smtpd\n"


@pytest.mark.parametrize(
    "stages, master_cf, want, noted",
    [
        (("certificates",), ACTIVE, ("certificates",), False),
        (("certificates",), COMMENTED, ("certificates", "tlsmgr"), True),
        (("certificates",), MISSING, ("certificates", "tlsmgr"), True),
        (("tlsmgr",), COMMENTED, ("tlsmgr",), False),
        (
            ("certificates", "maincf", "tlsmgr"),
            COMMENTED,
            ("certificates", "maincf", "tlsmgr"),
            False,
        ),
    ],
)
def test_certificates_stage_brings_tlsmgr_along_when_starttls_needs_it(
    stages, master_cf, want, noted
):
    got, notes = pipeline.with_tlsmgr(stages, master_cf)
    assert got == want
    assert bool(notes) == noted
    if noted:
        assert "brought along" in notes[0] and "STARTTLS cannot work" in notes[0]


def test_tlsmgr_stage_plan_leaves_main_cf_alone_on_a_recipe_host():
    """Plan of deploys/tlsmgr.py on a host with #tlsmgr and a warning in main.cf."""
    f = recorded("debian12")
    f.master_cf = f.master_cf.replace("\ntlsmgr", "\n#tlsmgr")
    f.files["/etc/postfix/master.cf"].sha256 = "commented"
    f.postconf_n_warnings = [CAPTH]
    s = make_settings("d12-mx1.sandbox.test", inet_interfaces=["127.0.2.1"], inet_protocols="ipv4")
    decision = plan.choose_cert(s, f, NOW)
    p = plan.make("d12-mx1", s, f, decision, [], stages={"tlsmgr"})
    assert [x.path for x in p.changed] == ["/etc/postfix/master.cf"]
    assert p.activation == "restart"
    assert any(n.startswith("pre-existing warning: /etc/postfix/main.cf") for n in p.notes)
