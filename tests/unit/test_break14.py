"""Attacks on issue 14's main.cf template and its rendered-output checks (break14).

Postfix ends a main.cf line at a newline byte only. Python's str.splitlines() also
ends one at U+0085, U+2028, U+2029 (and \\x0b, \\x0c, \\x1c-\\x1e): the rendered-file
check must read the file as Postfix does, and the inventory must refuse a value that
holds such a separator with one line naming the key, as it does for a newline.
"""

from __future__ import annotations

import pytest

from postfix_pfs import maincf, plan, plan_view, settings
from tests.unit.helpers import NOW, make_settings, recorded
from tests.unit.test_plan import HOST, material
from tests.unit.test_plan import make_settings as sandbox_settings

CHAIN = {"smtpd_tls_chain_files": "/etc/postfix/tls/rsa-0123456789ab.pem"}
SEPARATORS = ["\x85", "\u2028", "\u2029"]


def _build(f, s) -> maincf.MainCf:
    return maincf.build(HOST, s, f, CHAIN, None)


@pytest.mark.parametrize("sep", SEPARATORS)
@pytest.mark.parametrize(
    "key,value",
    [
        ("smtpd_banner", "$myhostname ESMTP{sep}smtpd_tls_protocols = >=TLSv1"),
        ("postfix_extra", {"smtpd_banner": "hi{sep}smtpd_tls_protocols = >=TLSv1"}),
        ("postfix_extra", {"mynote": "hi{sep} more"}),
    ],
)
def test_inventory_line_separators_are_refused_naming_the_key(key, value, sep):
    value = (
        value.format(sep=sep)
        if isinstance(value, str)
        else {k: v.format(sep=sep) for k, v in value.items()}
    )
    with pytest.raises(settings.SettingsError) as e:
        make_settings("mx9.example.net", **{key: value})
    (line,) = e.value.problems
    assert line.startswith(f"mx9.example.net: {key}: "), line
    assert "control character" in line or "line separator" in line, line


@pytest.mark.parametrize("sep", SEPARATORS + ["\x0b", "\x0c", "\x1c"])
def test_a_host_value_with_a_unicode_line_separator_is_one_line_as_postfix_reads_it(sep):
    """A lived-in host's own value (postconf -n) is not inventory: it cannot be refused
    at validation. Postfix reads it as one line; so must the rendered-file check (on
    main it said 'smtpd_tls_protocols is written twice' and refused the host)."""
    f = recorded("debian12")
    value = f"a{sep}smtpd_tls_protocols = >=TLSv1"
    f.postconf_n["my_note"] = value
    m = _build(f, make_settings(HOST))
    assert m.params["my_note"] == value
    assert m.params["smtpd_tls_protocols"] == ">=TLSv1.2"


def test_postfix_extra_over_a_host_value_is_not_called_kept_from_this_host():
    """postfix_extra overrides the host's own smtpd_relay_restrictions: the plan must
    name postfix_extra as the origin, not 'kept from this host' (which says it stays)."""
    f = recorded("debian12")
    f.postconf_n["smtpd_relay_restrictions"] = "permit_mynetworks reject_unauth_destination"
    new = "permit_mynetworks permit_sasl_authenticated reject_unauth_destination"
    s = sandbox_settings(HOST, postfix_extra={"smtpd_relay_restrictions": new})
    mats = material()
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), mats)
    v = plan_view.describe(p, f, s, mats)
    (change,) = [c for c in v["changes"] if c["param"] == "smtpd_relay_restrictions"]
    assert change["new"] == new
    assert change["origin"].startswith("postfix_extra"), change
    assert "smtpd_relay_restrictions" not in v["kept"]
