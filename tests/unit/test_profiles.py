"""TLS profiles (issue 21): the cipher settings each profile renders, per Postfix/OpenSSL
version (real facts recorded on Debian 11, 12 and 13), the old names as aliases."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from postfix_pfs import plan, settings, verify
from tests.unit.helpers import NOW, recorded
from tests.unit.test_plan import HOST, material
from tests.unit.test_plan import make_settings as S

# Mozilla's intermediate configuration, its TLS 1.2 suites (written out here, not read
# from the code under test)
MOZILLA = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
OLD_12 = "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1"  # Postfix < 3.6 syntax
CIPHER_PARAMS = (
    "smtpd_tls_protocols",
    "smtpd_tls_mandatory_protocols",
    "smtpd_tls_ciphers",
    "smtpd_tls_mandatory_ciphers",
    "smtpd_tls_exclude_ciphers",
    "tls_high_cipherlist",
    "tls_preempt_cipherlist",
    "smtpd_tls_dh1024_param_file",
)
FS = {"smtpd_tls_exclude_ciphers": "kRSA, aNULL"}
STRICT = {
    "smtpd_tls_ciphers": "high",
    "smtpd_tls_mandatory_ciphers": "high",
    "smtpd_tls_exclude_ciphers": "kRSA, aNULL",
    "tls_high_cipherlist": MOZILLA,
    "tls_preempt_cipherlist": "no",
}
DH = {"smtpd_tls_dh1024_param_file": "/etc/postfix/tls/ffdhe2048.pem"}  # Postfix < 3.7 only
P12 = {"smtpd_tls_protocols": ">=TLSv1.2", "smtpd_tls_mandatory_protocols": ">=TLSv1.2"}
P13 = {"smtpd_tls_protocols": ">=TLSv1.3", "smtpd_tls_mandatory_protocols": ">=TLSv1.3"}
O12 = {"smtpd_tls_protocols": OLD_12, "smtpd_tls_mandatory_protocols": OLD_12}
O13 = {k: OLD_12 + ", !TLSv1.2" for k in O12}

TABLE = [
    # profile, facts (Postfix / OpenSSL), the cipher parameters main.cf gets
    ("fs-only", "debian11", {**O12, **FS, **DH}),  # 3.5.25 / 1.1.1w
    ("fs-only", "debian12", {**P12, **FS}),  # 3.7.11 / 3.0
    ("fs-only", "debian13", {**P12, **FS}),  # 3.10.13 / 3.5
    ("mozilla-intermediate", "debian11", {**O12, **STRICT, **DH}),
    ("mozilla-intermediate", "debian12", {**P12, **STRICT}),
    ("mozilla-intermediate", "debian13", {**P12, **STRICT}),
    ("tls13-only", "debian11", {**O13, **DH}),
    ("tls13-only", "debian12", P13),
    ("tls13-only", "debian13", P13),
    ("postfix-defaults", "debian11", DH),
    ("postfix-defaults", "debian12", {}),
    ("postfix-defaults", "debian13", {}),
    ("custom", "debian12", {**P12, **FS}),
    # the old names render exactly what they stand for
    ("intermediate", "debian11", {**O12, **FS, **DH}),
    ("intermediate", "debian13", {**P12, **FS}),
    ("modern", "debian12", P13),
    ("compat", "debian13", {}),
]


def rendered(profile: str, distro: str) -> tuple[dict[str, str], plan.Plan]:
    f = recorded(distro)
    s = S(HOST, tls_profile=profile)
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), material())
    params = dict(
        line.split(" = ", 1)
        for line in p.main_cf.splitlines()
        if line and not line.startswith("#") and " = " in line
    )
    return params, p


@pytest.mark.parametrize("profile,distro,want", TABLE, ids=[f"{p}-{d}" for p, d, _ in TABLE])
def test_cipher_settings_per_profile_and_version(profile, distro, want):
    params, _ = rendered(profile, distro)
    assert {k: params[k] for k in CIPHER_PARAMS if k in params} == want


@pytest.mark.skipif(not shutil.which("openssl"), reason="no openssl")
def test_strict_list_expands_to_exactly_mozillas_nine_tls12_suites():
    """What OpenSSL makes of the strict profile's smtpd cipher list ("high" grade plus
    Postfix's appended exclusions): Mozilla's nine TLS 1.2 suites, nothing else."""
    params, _ = rendered("mozilla-intermediate", "debian12")
    excl = "".join(f":!{e.strip()}" for e in params["smtpd_tls_exclude_ciphers"].split(","))
    out = subprocess.run(
        ["openssl", "ciphers", "-tls1_2", "-s", params["tls_high_cipherlist"] + excl],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tls12 = [c for c in out.split(":") if not c.startswith("TLS_")]  # TLS 1.3 names aside
    assert sorted(tls12) == sorted(MOZILLA.split(":"))


@pytest.mark.parametrize(
    "old,new",
    [("intermediate", "fs-only"), ("compat", "postfix-defaults"), ("modern", "tls13-only")],
)
def test_old_names_are_deprecated_aliases(old, new):
    s = S(HOST, tls_profile=old)
    assert s.tls_profile == new
    _, p = rendered(old, "debian12")
    assert [n for n in p.notes if "deprecated" in n] == [
        f"warning: the tls_profile name {old!r} is deprecated: it means {new!r}, "
        f"the same settings; write {new!r} (from host)"
    ]
    assert verify.promise(old) == verify.promise(new)


def test_new_names_carry_no_deprecation_note():
    _, p = rendered("mozilla-intermediate", "debian12")
    assert not [n for n in p.notes if "deprecated" in n]


def test_unknown_profile_is_refused_naming_the_choices():
    with pytest.raises(settings.SettingsError) as e:
        S(HOST, tls_profile="mozilla")
    assert "tls_profile: 'mozilla' is not one of fs-only, mozilla-intermediate" in str(e.value)


@pytest.mark.parametrize(
    "profile,refused",
    [
        ("fs-only", {"tls1", "tls1_1", "tls1_2-krsa"}),
        ("mozilla-intermediate", {"tls1", "tls1_1", "tls1_2-krsa", "tls1_2-cbc"}),
        ("tls13-only", {"tls1", "tls1_1", "tls1_2", "tls1_2-krsa", "tls1_2-cbc"}),
        ("postfix-defaults", set()),
    ],
)
def test_each_profile_promises_what_it_refuses(profile, refused):
    assert set(verify.promise(profile).refuse) == refused
