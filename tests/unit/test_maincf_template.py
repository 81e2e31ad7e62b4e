"""templates/main.cf.j2 is the main.cf (issue 14 point 4): every managed parameter by
name in its section, and the version gates hold on what it renders, also when an admin
edits it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from postfix_pfs import maincf, plan
from tests.unit.helpers import NOW, make_settings, recorded
from tests.unit.test_plan import material

HOST = "mx1.example.net"
ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = (ROOT / "templates" / "main.cf.j2").read_text()
CHAIN = {"smtpd_tls_chain_files": "/etc/postfix/tls/rsa-0123456789ab.pem"}


def edited(after: str, line: str) -> str:
    """The shipped template with `line` added after the line that starts with `after`."""
    lines = TEMPLATE.splitlines(keepends=True)
    at = next(i for i, text in enumerate(lines) if text.startswith(after))
    return "".join(lines[: at + 1] + [line + "\n"] + lines[at + 1 :])


def build(fixture: str, template: str | None = None, **data) -> maincf.MainCf:
    """main.cf for a recorded host, with the files the plan would give it."""
    f, s = recorded(fixture), make_settings(HOST, **data)
    dh = f"{s.tls_dir}/{s.tls_dh_group}.pem" if maincf.needs_dh_file(f) else None
    return maincf.build(HOST, s, f, CHAIN, dh, template=template)


# --- gates on the rendered output ------------------------------------------------------------

GATE_CASES = [
    # fixture (Postfix), line an admin adds to the template, what the refusal says
    (
        "debian12",  # 3.7: OpenSSL 3 picks the groups; the file warns from 3.9
        "smtpd_tls_dh1024_param_file = /etc/postfix/tls/ffdhe2048.pem",
        "smtpd_tls_dh1024_param_file is not valid on Postfix 3.7.11 (valid from 2.2 until 3.7)",
    ),
    (
        "debian13",
        "smtpd_tls_dh1024_param_file = /etc/postfix/tls/ffdhe2048.pem",
        "smtpd_tls_dh1024_param_file is not valid on Postfix 3.10.13 (valid from 2.2 until 3.7)",
    ),
    (
        "debian12",
        "smtpd_use_tls = yes",
        "smtpd_use_tls is not declared in maincf.PARAMS (no version range)",
    ),
    (
        "debian13",
        "smtpd_tls_eecdh_grade = strong",
        "smtpd_tls_eecdh_grade is not declared in maincf.PARAMS",
    ),
    (
        "debian11",  # 3.5: the template already writes the DH file there
        "smtpd_tls_dh1024_param_file = /etc/postfix/tls/ffdhe4096.pem",
        "smtpd_tls_dh1024_param_file is written twice",
    ),
    ("debian12", "just some words", "is not NAME = VALUE: 'just some words'"),
]


@pytest.mark.parametrize("fixture,line,message", GATE_CASES)
def test_an_edited_template_cannot_give_postfix_a_parameter_it_does_not_know(
    fixture, line, message
):
    template = edited("smtpd_tls_loglevel = ", line)
    with pytest.raises(maincf.VersionGateError) as e:
        build(fixture, template)
    assert re.search(r"main\.cf\.j2: (line \d+ )?" + re.escape(message), str(e.value))
    build(fixture)  # the shipped template renders on the same host


def test_the_same_line_is_fine_where_postfix_knows_it():
    f = recorded("debian11")  # 3.5; no DH file from the plan, so the template has none
    template = edited("smtpd_tls_loglevel = ", "smtpd_tls_dh1024_param_file = /x.pem")
    main = maincf.build(HOST, make_settings(HOST), f, CHAIN, template=template)
    assert main.params["smtpd_tls_dh1024_param_file"] == "/x.pem"


def test_a_parameter_used_without_its_guard_names_the_guard():
    # on 3.7 the deploy has no DH file: the variable is undefined
    template = edited(
        "smtpd_tls_loglevel = ", "smtpd_tls_dh1024_param_file = {{ smtpd_tls_dh1024_param_file }}"
    )
    with pytest.raises(
        maincf.MainCfError,
        match=(
            r"main.cf.j2 writes smtpd_tls_dh1024_param_file, which has no value on this host "
            r"\(Postfix 3.7.11\): write it inside \{% if smtpd_tls_dh1024_param_file is defined %\}"
        ),
    ):
        build("debian12", template)


def test_the_plan_refuses_the_host_with_one_line_per_problem(monkeypatch):
    f = recorded("debian13")
    s = make_settings(HOST)
    bad = edited("smtpd_tls_loglevel = ", "smtpd_use_tls = yes\nsmtpd_tls_dh1024_param_file = /x")
    real = maincf.build
    monkeypatch.setattr(maincf, "build", lambda *a, **kw: real(*a, **kw, template=bad))
    with pytest.raises(plan.PlanError) as e:
        plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), material((HOST,)))
    assert str(e.value).splitlines() == [
        f"{HOST}: main.cf.j2: smtpd_use_tls is not declared in maincf.PARAMS (no version "
        "range): declare it there, or set it with postfix_extra",
        f"  {HOST}: main.cf.j2: smtpd_tls_dh1024_param_file is not valid on Postfix 3.10.13 "
        "(valid from 2.2 until 3.7)",
    ]


def test_host_kept_and_site_parameters_are_exempt():
    f = recorded("debian12")
    f.postconf_n["smtpd_milters"] = "unix:/run/opendkim/opendkim.sock"  # not in PARAMS
    f.postconf_n["dovecot-lmtp_destination_recipient_limit"] = "1"  # a service's own
    s = make_settings(HOST, postfix_extra={"smtputf8_enable": False, "message_size_limit": 1})
    main = maincf.build(HOST, s, f, CHAIN)
    assert main.params["smtpd_milters"] == "unix:/run/opendkim/opendkim.sock"
    assert main.params["dovecot-lmtp_destination_recipient_limit"] == "1"
    assert main.params["smtputf8_enable"] == "no"
    assert {"smtpd_milters", "dovecot-lmtp_destination_recipient_limit"} <= main.kept
    assert not {"smtpd_milters", "smtputf8_enable"} & set(maincf.PARAMS)


# --- how Postfix reads it -------------------------------------------------------------------

PARSE_CASES = [
    ("a = 1\nb=2\n", [("a", "1"), ("b", "2")], []),
    ("relayhost = \n", [("relayhost", "")], []),
    ("# c = 3\n   # indented comment\n\na = 1\n", [("a", "1")], []),
    ("a = x,\n    y\n\tz\n", [("a", "x, y z")], []),  # white space continues a line
    ("a = 1\nnot a parameter\n", [("a", "1")], ["line 2 is not NAME = VALUE: 'not a parameter'"]),
    ("x-y_z = b = c\n", [("x-y_z", "b = c")], []),
]


@pytest.mark.parametrize("text,params,bad", PARSE_CASES)
def test_parse_reads_main_cf_like_postfix(text, params, bad):
    assert maincf.parse(text) == (params, bad)


# --- the template reads like a main.cf ---------------------------------------------------------

SECTION_ORDER = [
    "Paths",
    "General",
    "Network",
    "Mappings",
    "SMTP client",
    "SMTP server",
    "TLS library",
    "Kept from this host",
    "Site-specific",
]

WRITTEN = re.compile(r"^([A-Za-z0-9_]+) = \{\{ \1 \}\}$", re.M)


def test_every_declared_parameter_is_written_by_name_in_the_template():
    written = WRITTEN.findall(TEMPLATE)
    assert sorted(written) == sorted(maincf.PARAMS)  # each one, once, as NAME = {{ NAME }}
    assert len(written) == len(set(written))


def test_the_managed_sections_have_no_loop_and_come_in_an_admins_order():
    headers = [line[6:] for line in TEMPLATE.splitlines() if line.startswith("# --- ")]
    assert [next(s for s in SECTION_ORDER if h.startswith(s)) for h in headers] == SECTION_ORDER
    loops = re.findall(r"\{%-? *for (.*?) %\}", TEMPLATE)
    assert loops == ["name, value in host_params", "name, value in site_params"]
    managed = TEMPLATE.split("# --- Kept from this host")[0]
    assert "{% for" not in managed


TLS_CHOICES = (
    "smtp_tls_security_level",
    "smtp_tls_session_cache_database",
    "smtpd_tls_security_level",
    "smtpd_tls_session_cache_database",
    "smtpd_tls_protocols",
    "smtpd_tls_ciphers",
    "smtpd_tls_exclude_ciphers",
    "smtpd_tls_dh1024_param_file",
    "tls_high_cipherlist",
    "tls_preempt_cipherlist",
    "tls_eecdh_auto_curves",
)


@pytest.mark.parametrize("name", TLS_CHOICES)
def test_each_tls_choice_has_its_reason_right_above_it(name):
    lines = TEMPLATE.splitlines()
    at = lines.index(f"{name} = {{{{ {name} }}}}")
    assert lines[at - 1].startswith("# "), name


def test_the_rendered_file_keeps_the_comments_of_the_choices_it_makes():
    text = build("debian11", tls_profile="mozilla-intermediate").text
    assert "# kRSA: RSA key exchange has no forward secrecy" in text
    assert "# Postfix < 3.7 only: an RFC 7919 group" in text
    assert "# server order off" in text
    assert "# Postfix < 3.7 only" not in build("debian12").text  # no DH file, no comment


def test_no_function_in_maincf_is_longer_than_60_lines():
    tree = ast.parse((ROOT / "operations" / "maincf.py").read_text())
    long = [
        (n.name, n.end_lineno - n.lineno + 1)
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef) and n.end_lineno - n.lineno + 1 > 60
    ]
    assert long == []
