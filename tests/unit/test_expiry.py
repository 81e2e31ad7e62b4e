"""Expiry of every served certificate, and the check's verdict line (pure)."""

import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization

from postfix_pfs import expiry, pki
from postfix_pfs.report import HostRecord, verdict
from tests.unit.helpers import NOW

HOST = "mx1.example.net"


def cert(days_from_now: int, kind: str = "rsa"):
    start = NOW - dt.timedelta(days=400) if days_from_now < 0 else NOW
    days = days_from_now + 400 if days_from_now < 0 else days_from_now
    return pki.generate(kind, [HOST], days, start).cert


@pytest.mark.parametrize(
    "source,days,warn,problem",
    [
        ("existing", 200, False, False),
        ("existing", 20, True, False),  # inside tls_renew_days: renew it
        ("files", 2, True, False),
        ("auto", 30, True, False),
        ("existing", -3, False, True),  # expired: the host fails
        ("generate", 20, False, False),  # this deploy renews it by itself
        ("acme", 5, False, False),
        ("generate", -1, False, True),
    ],
)
def test_judge_table(source, days, warn, problem):
    left, warnings, problems = expiry.judge(source, {"rsa": cert(days)}, NOW, 30)
    assert abs(left["rsa"] - days) <= 1
    assert bool(warnings) == warn and bool(problems) == problem
    if warn:
        assert f"({source}) expires in" in warnings[0] and "tls_renew_days = 30" in warnings[0]
    if problem:
        assert "expired on" in problems[0]


def test_served_certs_by_kind_from_the_files_the_plan_serves():
    rsa, ec = cert(90), cert(90, "ecdsa")
    pems = {
        "/a.pem": rsa.public_bytes(serialization.Encoding.PEM).decode(),
        "/b.pem": ec.public_bytes(serialization.Encoding.PEM).decode(),
    }
    got = expiry.served_certs({"smtpd_tls_chain_files": "/a.pem, /b.pem"}, pems)
    assert set(got) == {"rsa", "ecdsa"}
    got = expiry.served_certs({"smtpd_tls_cert_file": "/a.pem", "smtpd_tls_key_file": "/k"}, pems)
    assert set(got) == {"rsa"}


@pytest.mark.parametrize(
    "fields,line",
    [
        ({}, "OK"),
        ({"notes": ["warning: the rsa certificate (existing) expires in 3 days"]}, "WARN the rsa"),
        ({"failed": True, "reason": "TLS policy not proven: x"}, "FAILED TLS policy not proven: x"),
        (
            {"failed": True, "reason": "r", "problems": ["drift: /etc/postfix/main.cf missing"]},
            "FAILED r; drift: /etc/postfix/main.cf missing",
        ),
    ],
)
def test_check_verdict_line(fields, line):
    rec = HostRecord("mx1", **fields)
    assert verdict(rec).startswith(line)
