"""The TLS policy proof: each profile's promise against probe results (table driven, in
Python and in the shell judge that decides rollbacks on the host), staleness of the
recorded proof, the protocol floor of master.cf overrides, parsing of the record."""

from __future__ import annotations

import base64
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization

from postfix_pfs import pki, settings, verify
from postfix_pfs.verify import Probe
from tests.unit.helpers import NOW

FS = ("TLSv1.3", "TLS_AES_256_GCM_SHA384", "X25519", True)
FS12 = ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384", "X25519", True)
KRSA = ("TLSv1.2", "AES256-GCM-SHA384", "", False)
OLD = ("TLSv1", "ECDHE-RSA-AES256-SHA", "X25519", True)


def acc(shape=FS, fp=""):
    proto, cipher, group, fs = shape
    return ("accepted", proto, cipher, group, fs, fp)


REF = ("refused", "", "", "", None, "")
UNT = ("untestable", "", "", "", None, "")
ERR = ("error", "", "", "", None, "")


def results(**probes) -> dict[str, Probe]:
    """Probe results of one listener; unnamed probes: best paths FS, the rest refused."""
    base = {"rsa": acc(), "ecdsa": acc(), "tls1": REF, "tls1_1": REF, "tls1_2": acc(FS12)}
    base |= {"tls1_2-krsa": REF, "tls1_3": acc()}
    base |= {k.replace("tls1_2_krsa", "tls1_2-krsa"): v for k, v in probes.items()}
    return {
        name: Probe("smtp", name, st, proto, cipher, group, fs, fp, "no protocols available")
        for name, (st, proto, cipher, group, fs, fp) in base.items()
        if st is not None
    }


GONE = (None,) * 6
CASES = [
    # (id, profile, probe results, problems (substrings), untested count)
    ("intermediate-holds", "intermediate", {}, [], 0),
    ("intermediate-tls1", "intermediate", {"tls1": acc(OLD)}, ["accepts TLS 1.0"], 0),
    ("intermediate-tls1_1", "intermediate", {"tls1_1": acc(OLD)}, ["accepts TLS 1.1"], 0),
    ("intermediate-krsa", "intermediate", {"tls1_2_krsa": acc(KRSA)}, ["accepts TLS 1.2 kRSA"], 0),
    (
        "intermediate-tls12-no-fs",
        "intermediate",
        {"tls1_2": acc(KRSA)},
        ["TLS 1.2: TLSv1.2 AES256-GCM-SHA384 has no forward secrecy"],
        0,
    ),
    ("intermediate-best-no-fs", "intermediate", {"rsa": acc(KRSA)}, ["best RSA"], 0),
    (
        "intermediate-untestable-old",
        "intermediate",
        {"tls1": UNT, "tls1_1": UNT},
        [],
        2,
    ),
    ("intermediate-only-12", "intermediate", {"tls1_3": REF}, [], 0),
    ("intermediate-none-accepted", "intermediate", {"tls1_3": REF, "tls1_2": REF}, ["none of"], 0),
    (
        "intermediate-accept-untestable",
        "intermediate",
        {"tls1_3": UNT, "tls1_2": UNT},
        [],
        2,
    ),
    ("intermediate-probe-error", "intermediate", {"tls1": ERR}, ["TLS 1.0 could not be probed"], 0),
    (
        "no-handshake",
        "intermediate",
        {"rsa": REF, "ecdsa": ERR},
        ["no TLS handshake succeeded"],
        0,
    ),
    ("modern-holds", "modern", {"tls1_2": REF}, [], 0),
    ("modern-tls12", "modern", {}, ["accepts TLS 1.2"], 0),
    ("modern-no-tls13", "modern", {"tls1_2": REF, "tls1_3": REF}, ["none of TLS 1.3"], 0),
    ("modern-tls13-untestable", "modern", {"tls1_2": REF, "tls1_3": UNT}, [], 1),
    ("compat-old-and-krsa", "compat", {"tls1": acc(OLD), "tls1_2_krsa": acc(KRSA)}, [], 0),
    ("compat-best-no-fs", "compat", {"ecdsa": acc(KRSA)}, ["best ECDSA"], 0),
    ("compat-rsa-only-server", "compat", {"ecdsa": REF}, [], 0),
    ("missing-probes", "intermediate", {"tls1": GONE, "tls1_1": GONE}, [], 0),
]


@pytest.mark.parametrize(
    "profile,probes,problems,untested", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_judge_policy(profile, probes, problems, untested):
    v = verify.judge_policy(profile, results(**probes))
    assert len(v.problems) == len(problems), v.problems
    for want, got in zip(problems, v.problems, strict=True):
        assert want in got
    assert len(v.untested) == untested and v.ok == (not problems)
    assert all("not testable" in u for u in v.untested)


def shell_judge(profile: str, res: dict[str, Probe], expected: dict[str, str] | None = None):
    lines = ["@listener|smtp|yes|127.0.0.1|25|starttls"]
    for r in res.values():
        fs = {True: "yes", False: "no", None: ""}[r.fs]
        lines.append(
            f"@probe|smtp|{r.probe}|{r.status}|{r.proto}|{r.cipher}|{r.group}|{fs}|{r.fingerprint}|{r.detail}"
        )
    pairs = " ".join(f"{k}={v}" for k, v in (expected or {}).items())
    script = f'. ./operations/tls_check.sh; pfs_judge "$1" {pairs}'
    spec = verify.promise(profile).spec()
    return subprocess.run(
        ["sh", "-c", script, "sh", spec],
        input="\n".join(lines) + "\n",
        text=True,
        capture_output=True,
    )


@pytest.mark.parametrize(
    "profile,probes,problems,untested", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_shell_judge_agrees(profile, probes, problems, untested):
    """activate.sh decides rollbacks with pfs_judge: it must say what judge_policy says."""
    r = shell_judge(profile, results(**probes))
    assert (r.returncode == 0) == (not problems), r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == len(problems), r.stderr


@pytest.mark.parametrize(
    "served,expected,ok",
    [
        ({"rsa": "a1", "ecdsa": "e1"}, {"rsa": "a1", "ecdsa": "e1"}, True),
        ({"rsa": "xx", "ecdsa": "e1"}, {"rsa": "a1", "ecdsa": "e1"}, False),
        ({"rsa": "a1", "ecdsa": None}, {"rsa": "a1", "ecdsa": "e1"}, False),
        ({"rsa": "a1", "ecdsa": None}, {"rsa": "a1"}, True),
    ],
)
def test_certificate_judgement_python_and_shell(served, expected, ok):
    probes = {k: acc(FS, fp) if fp else REF for k, fp in served.items()}
    res = results(**probes)
    assert (verify.judge_certs(res, expected) == []) == ok
    assert (shell_judge("intermediate", res, expected).returncode == 0) == ok


def test_every_profile_has_a_promise():
    assert set(settings.PROFILES) <= set(verify.PROMISES)
    for name, pr in verify.PROMISES.items():
        assert set(pr.refuse + pr.accept_any + pr.fs) <= set(verify.PROBES), name
        assert not set(pr.refuse) & set(pr.accept_any), name


@pytest.mark.parametrize(
    "kind,probes,want",
    [
        ("rsa", {}, "yes"),
        ("ecdsa", {}, "yes"),
        ("rsa", {"tls1_2_krsa": acc(KRSA)}, "no"),
        ("ecdsa", {"tls1_2_krsa": acc(KRSA)}, "yes"),  # kRSA needs an RSA certificate
        ("rsa", {"tls1_2_krsa": UNT}, "?"),
        ("rsa", {"tls1_2": acc(KRSA)}, "no"),
        ("ecdsa", {"ecdsa": REF}, "?"),
    ],
)
def test_fs_only_per_key_type(kind, probes, want):
    assert verify.fs_only("intermediate", results(**probes), kind) == want


@pytest.mark.parametrize(
    "value,floor",
    [
        (">=TLSv1.2", "TLSv1.2"),
        (">=TLSv1", "TLSv1"),
        ("<=TLSv1.2", "SSLv2"),
        ("!SSLv2, !SSLv3, !TLSv1, !TLSv1.1", "TLSv1.2"),
        ("!SSLv2:!SSLv3", "TLSv1"),
        ("TLSv1.2 TLSv1.3", "TLSv1.2"),
        ("", "TLSv1"),
        (">=TLSv1.3", "TLSv1.3"),
    ],
)
def test_protocol_floor(value, floor):
    assert verify.protocol_floor(value) == floor


@pytest.mark.parametrize(
    "param,value,profile,private,weak",
    [
        ("smtpd_tls_protocols", ">=TLSv1", "intermediate", False, True),
        ("smtpd_tls_protocols", ">=TLSv1.3", "intermediate", False, False),
        ("smtpd_tls_protocols", ">=TLSv1.2", "modern", False, True),
        ("smtpd_tls_mandatory_protocols", "!SSLv2, !SSLv3", "intermediate", False, True),
        ("smtpd_tls_protocols", ">=TLSv1", "compat", False, False),
        ("smtpd_tls_exclude_ciphers", "aNULL", "intermediate", False, True),
        ("smtpd_tls_exclude_ciphers", "aNULL, kRSA, RC4", "intermediate", False, False),
        ("smtpd_tls_mandatory_exclude_ciphers", "RC4", "intermediate", False, False),
        ("smtpd_tls_ciphers", "high", "intermediate", False, False),
        ("smtpd_tls_mandatory_ciphers", "low", "intermediate", False, True),
        ("tls_medium_cipherlist", "kRSA", "intermediate", False, True),
        ("smtpd_tls_security_level", "none", "intermediate", False, True),
        ("smtpd_tls_security_level", "none", "intermediate", True, False),
        ("smtpd_tls_security_level", "encrypt", "intermediate", False, False),
        ("smtpd_tls_security_level", "none", "compat", False, True),
        ("smtpd_sasl_auth_enable", "yes", "intermediate", False, False),
        ("smtpd_tls_auth_only", "yes", "intermediate", False, False),
    ],
)
def test_which_overrides_weaken_a_profile(param, value, profile, private, weak):
    assert (verify.weakens(param, value, profile, private) is not None) == weak


def record(**kw) -> verify.Evidence:
    ev = verify.parse_evidence(
        [
            "now=1000000",
            f"current={kw.get('current', 'd1')}",
            "digest=d1",
            f"profile={kw.get('profile', 'intermediate')}",
            f"promise={verify.promise('intermediate').spec()}",
            f"time={kw.get('time', 1000000 - 3600)}",
            "@listener|smtp|yes|127.0.0.1|25|starttls",
            "@probe|smtp|rsa|accepted|TLSv1.3|TLS_AES_256_GCM_SHA384|X25519|yes||",
        ]
    )
    return ev


@pytest.mark.parametrize(
    "ev,profile,max_age,full,reason",
    [
        (record(), "intermediate", 24, False, None),
        (record(), "intermediate", 24, True, "verify_full"),
        (record(current="d2"), "intermediate", 24, False, "configuration changed"),
        (record(), "modern", 24, False, "profile changed (intermediate -> modern)"),
        (record(time=1000000 - 25 * 3600), "intermediate", 24, False, "proven 25h ago"),
        (record(), "intermediate", 0, False, "verify_max_age_hours = 0"),
        (verify.parse_evidence(["now=5", "current=d1"]), "intermediate", 24, False, "no verif"),
    ],
)
def test_stale_reason(ev, profile, max_age, full, reason):
    got = verify.stale_reason(ev, profile, max_age, full)
    assert got == reason if reason is None else reason in got


def test_record_round_trip_with_served_certificates():
    m = pki.generate("rsa", ["mx1.example.net"], 90, NOW)
    der = m.cert.public_bytes(serialization.Encoding.DER)
    lines = [
        "@listener|submission|no|127.0.0.1|587|starttls",
        f"@cert|{m.fingerprint}|{base64.b64encode(der).decode()}",
        f"@probe|submission|rsa|accepted|TLSv1.2|ECDHE-RSA-AES256-GCM-SHA384|prime256v1|yes|{m.fingerprint}|",
        "@probe|submission|ecdsa|refused||||||alert handshake failure",
        "@probe|submission|tls1|untestable||||||no protocols available",
        "@probe|submission|tls1_3|accepted|TLSv1.3|TLS_AES_128_GCM_SHA256|X25519|yes||",
    ]
    ev = verify.parse_evidence(["postfix-pfs: something else", *lines])
    assert ev.listeners["submission"] == {
        "cert": "no",
        "host": "127.0.0.1",
        "port": "587",
        "mode": "starttls",
    }
    hs = ev.handshakes()
    assert hs["rsa"].forward_secret and hs["rsa"].names == ["mx1.example.net"]
    assert hs["rsa"].tlsa == m.spki_sha256 and not hs["ecdsa"].ok
    view = verify.listener_report("intermediate", ev, "submission", {"rsa": "other"})
    assert view["protocols"]["TLS 1.0"] == "not testable"
    assert view["key_types"]["rsa"]["fs_only"] == "?"  # the kRSA probe is missing
    assert view["problems"] == []  # cert "no": the listener serves its own certificate
    assert view["untested"] and view["address"] == "127.0.0.1:587"
