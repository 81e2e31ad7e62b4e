"""Adopt what a lived-in host already has: its own main.cf parameters stay.

Pure (no I/O). A production MX carries years of configuration this deploy does
not manage (milters, SASL, restrictions, virtual domains, size limits). The
rules, in order:

1. The **protected TLS set** (PROTECTED) is the profile's: host values and
   `postfix_extra` cannot override it (`tls_profile = custom` allows the latter).
2. **Identity and network keys** (HOST_DEFAULT_KEYS) that the inventory does not
   set take the host's current value; the schema's defaults apply only where
   the host has none (a fresh install).
3. Every other parameter of the host's `postconf -n` that the deploy does not
   render is **kept** unchanged, in its own main.cf section, unless Postfix
   warns about it (misspelled, removed), it is obsolete (OBSOLETE), or the
   admin drops it (`drop_host_params`).
4. An **open relay** is refused unless `allow_open_relay` acknowledges it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace
from typing import TYPE_CHECKING

from .facts import HostFacts

if TYPE_CHECKING:
    from .settings import Settings

# The TLS policy a profile sets: never taken from the host, never from postfix_extra
# (unless tls_profile = custom). Certificates are the certificate decision's.
PROTECTED = frozenset(
    {
        "smtpd_tls_security_level",
        "smtpd_tls_protocols",
        "smtpd_tls_mandatory_protocols",
        "smtpd_tls_ciphers",
        "smtpd_tls_mandatory_ciphers",
        "smtpd_tls_exclude_ciphers",
        "smtpd_tls_mandatory_exclude_ciphers",
        "smtpd_tls_chain_files",
        "smtpd_tls_cert_file",
        "smtpd_tls_key_file",
        "smtpd_tls_eccert_file",
        "smtpd_tls_eckey_file",
        "smtpd_tls_dcert_file",
        "smtpd_tls_dkey_file",
        "smtpd_tls_dh1024_param_file",
        "smtpd_tls_dh512_param_file",
        "smtpd_tls_eecdh_grade",
        "tls_eecdh_auto_curves",
        "tls_ffdhe_auto_groups",
        "tls_high_cipherlist",
        "tls_medium_cipherlist",
        "tls_low_cipherlist",
        "tls_export_cipherlist",
        "tls_null_cipherlist",
        "tls_preempt_cipherlist",  # server cipher order: the profile's choice (README)
    }
)

# Parameters dropped from the host's configuration, with the reason.
OBSOLETE = {
    "smtpd_use_tls": "replaced by smtpd_tls_security_level (Postfix 2.3)",
    "smtpd_enforce_tls": "replaced by smtpd_tls_security_level (Postfix 2.3)",
    "smtp_use_tls": "replaced by smtp_tls_security_level (Postfix 2.3)",
    "smtp_enforce_tls": "replaced by smtp_tls_security_level (Postfix 2.3)",
}

# Inventory keys whose default is the host's own value (the main.cf parameter of the
# same name; tls_loglevel reads smtpd_tls_loglevel).
HOST_DEFAULT_KEYS = (
    "myhostname",
    "mydomain",
    "mydestination",
    "inet_interfaces",
    "inet_protocols",
    "mynetworks",
    "relayhost",
    "smtpd_banner",
    "maillog_file",
    "smtp_tls_security_level",
    "tls_loglevel",
)

HOST_ORIGIN = "host-config"  # Settings.origins value of a key taken from the host


def tokens(value: str) -> list[str]:
    """A Postfix list value (commas and/or white space) as its items."""
    return [t for t in re.split(r"[\s,]+", value) if t]


def drops_all(s: Settings) -> bool:
    return "all" in s.drop_host_params


def _client_level(n: dict[str, str]) -> str | None:
    """The client TLS level a host had, also when it still uses the obsolete switches."""
    if "smtp_tls_security_level" in n:
        return n["smtp_tls_security_level"]
    if n.get("smtp_enforce_tls") == "yes":
        return "encrypt"
    if n.get("smtp_use_tls") == "yes":
        return "may"
    return None


def _host_value(key: str, n: dict[str, str]) -> str | None:
    if key == "smtp_tls_security_level":
        return _client_level(n)
    return n.get("smtpd_tls_loglevel" if key == "tls_loglevel" else key)


def effective(s: Settings, facts: HostFacts) -> Settings:
    """Settings with the host's own identity and network values where the inventory is
    silent (origin HOST_ORIGIN). maincf renders the host's own text for them."""
    if drops_all(s):
        return s
    values, origins = dict(s.values), dict(s.origins)
    for key in HOST_DEFAULT_KEYS:
        host = _host_value(key, facts.postconf_n)
        if s.origins.get(key) != "default" or host is None:
            continue
        if key == "myhostname" and ("$" in host or not host):
            continue  # a derived name: the certificate keeps the inventory name
        if isinstance(values[key], list):
            values[key] = tokens(host)
        elif isinstance(values[key], int):
            if not host.isdigit():
                continue
            values[key] = int(host)
        else:
            values[key] = host
        origins[key] = HOST_ORIGIN
    return replace(s, values=values, origins=origins)


def from_host(s: Settings, key: str | None) -> bool:
    """Does a parameter driven by inventory key `key` (None: deploy policy) yield to the
    host's own value? Only when the inventory does not set the key."""
    if drops_all(s):
        return False
    return key is None or s.origins.get(key) in ("default", HOST_ORIGIN)


def warned(facts: HostFacts) -> dict[str, tuple[str, str]]:
    """Parameters the host's `postconf -n` warns about -> (value, warning)."""
    out = {}
    for w in facts.postconf_n_warnings:
        text = w.split("warning:", 1)[-1].strip()
        if m := re.search(r"unused parameter: ([A-Za-z0-9_]+)=(.*)$", w):
            out[m.group(1)] = (m.group(2), text)
        elif m := re.search(r'parameter "([A-Za-z0-9_]+)"', w):
            out[m.group(1)] = (facts.postconf_n.get(m.group(1), ""), text)
    return out


def drop_reason(name: str, s: Settings, warnings: dict[str, tuple[str, str]]) -> str | None:
    """Why a host parameter is not carried into the new main.cf (None: keep it)."""
    if name in warnings:
        return f"Postfix warns: {warnings[name][1]}"
    if name in OBSOLETE:
        return OBSOLETE[name]
    if name in PROTECTED:
        return f"protected TLS setting of tls_profile {s.tls_profile}"
    if drops_all(s) or name in s.drop_host_params:
        return "drop_host_params"
    return None


def carry_over(
    s: Settings, facts: HostFacts, rendered: set[str]
) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """(kept, dropped): the host's parameters the deploy does not render, kept as they
    are, and the ones dropped as (name, old value, reason)."""
    warnings = warned(facts)
    kept, dropped = [], []
    for name, value in sorted(facts.postconf_n.items()):
        if name in rendered or name in s.postfix_extra:
            continue
        reason = drop_reason(name, s, warnings)
        if reason:
            dropped.append((name, value, reason))
        else:
            kept.append((name, value))
    for name, (value, text) in sorted(warnings.items()):  # unknown names: not in postconf -n
        if name not in facts.postconf_n:
            dropped.append((name, value, f"Postfix warns: {text}"))
    return kept, dropped


# --- open relay ----------------------------------------------------------------------

_UNAUTH = ("reject_unauth_destination", "defer_unauth_destination", "reject", "defer")


def _rejects_unauth(restrictions: str) -> bool:
    """Does this restriction list stop relaying to foreign destinations before a bare permit?"""
    for t in tokens(restrictions):
        if t in _UNAUTH:
            return True
        if t == "permit":
            return False
    return False


def _everyone(network: str) -> bool:
    raw = network.strip("[]").replace("]", "")
    try:
        return ipaddress.ip_network(raw, strict=False).prefixlen == 0
    except ValueError:
        return False


def open_relay_problem(params: dict[str, str], defaults: dict[str, str]) -> str | None:
    """Why the rendered main.cf makes an open relay (None: it does not)."""
    everyone = [n for n in tokens(params.get("mynetworks", "")) if _everyone(n)]
    if everyone:
        return f"mynetworks = {', '.join(everyone)} lets every client on the internet relay"
    relay = params.get("smtpd_relay_restrictions", defaults.get("smtpd_relay_restrictions", ""))
    recipient = params.get(
        "smtpd_recipient_restrictions", defaults.get("smtpd_recipient_restrictions", "")
    )
    if not _rejects_unauth(relay) and not _rejects_unauth(recipient):
        return (
            "neither smtpd_relay_restrictions nor smtpd_recipient_restrictions rejects "
            "unauthorized destinations (reject_unauth_destination) before a permit"
        )
    return None
