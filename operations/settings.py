"""Every inventory key this deploy reads: one schema, one place.

Each key has a type, a default, a one-line doc and a check. Values are layered
the pyinfra way: host data > group data (group_data/GROUP.py) > all
(group_data/all.py) > the defaults here. `validate_inventory` checks every host
before any host is touched; each problem is one line naming host, key and what
is wrong. The README's data reference is generated from SCHEMA
(`python -m postfix_pfs.settings`) and a test keeps the two equal.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import acme, dane

PROFILES = ("fs-only", "mozilla-intermediate", "tls13-only", "postfix-defaults", "custom")
# Old profile names, kept working; the plan and the summary say they are deprecated.
PROFILE_ALIASES = {"intermediate": "fs-only", "compat": "postfix-defaults", "modern": "tls13-only"}


def canonical_profile(name: str) -> str:
    """The profile a (possibly deprecated) name means."""
    return PROFILE_ALIASES.get(name, name)


CERT_SOURCES = ("auto", "existing", "files", "generate", "ca", "acme")
POLICY_LEVELS = ("none", "may", "encrypt", "dane", "dane-only", "verify", "secure")
SECRET_KEYS = ("relayhost_password", "dane_tsig_secret")
CLIENT_LEVELS = ("none", "may", "encrypt", "dane", "verify", "secure")
DH_GROUPS = ("ffdhe2048", "ffdhe3072", "ffdhe4096")


def in_cwd(name: str) -> Callable[[str], str]:
    """A controller-side default: NAME in the directory pyinfra runs in (the user's
    project), resolved when the inventory is read, never next to the installed package."""
    return lambda _host: str(Path.cwd() / name)


# Keys that belong to pyinfra or its connectors, not to this deploy.
PYINFRA_PREFIXES = ("ssh_", "_", "winrm_", "docker_", "chroot_", "local_", "vagrant_", "pyinfra_")

_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*",
    re.I,
)
_PARAM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_VAR = re.compile(r"\$(\{[a-z_]+\}|[a-z_]+)")
# C0 and C1 controls, and the Unicode line and paragraph separators: Postfix ends a main.cf
# line at a newline byte only, Python's str.splitlines() at these too
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class SettingsError(Exception):
    """Bad inventory data; str() is one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


# --- checks: return None when fine, else what is wrong -------------------------


def is_hostname(v: str) -> str | None:
    if _HOSTNAME.fullmatch(v) and not re.fullmatch(r"[0-9.]+", v):
        return None
    return f"{v!r} is not a valid host name"


def is_domain_or_var(v: str) -> str | None:
    """A domain that may use $myhostname-style variables, as Postfix allows."""
    return None if is_hostname(_VAR.sub("x", v)) is None else f"{v!r} is not a valid domain"


def is_interface(v: str) -> str | None:
    if v in ("all", "loopback-only"):
        return None
    try:
        ipaddress.ip_address(v)
        return None
    except ValueError:
        return is_hostname(v) and f"{v!r} is not 'all', 'loopback-only', an address or a host name"


def is_network(v: str) -> str | None:
    """A mynetworks entry as Postfix reads it: an IPv4 address or CIDR, or an IPv6
    address or CIDR in brackets ([2001:db8::]/32)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](/\d{1,3})?", v)
    raw = m.group(1) + (m.group(2) or "") if m else v
    try:
        net = ipaddress.ip_network(raw, strict=False)
    except ValueError:
        return f"{v!r} is not an address or CIDR network"
    if m and net.version == 4:
        return f"{v!r} is not an address or CIDR network (IPv4 goes without brackets)"
    if not m and net.version == 6:
        bracketed = f"[{net.network_address}]/{net.prefixlen}" if "/" in v else f"[{v}]"
        return f"{v!r}: an IPv6 network must be bracketed for Postfix, e.g. {bracketed}"
    return None


def is_relayhost(v: str) -> str | None:
    if v == "":
        return None
    m = re.fullmatch(r"(\[(?P<b>[^\]]+)\]|(?P<h>[^:\[\]]+))(:(?P<port>\d{1,5}))?", v)
    if not m:
        return f"{v!r} is not host, [host], host:port or [host]:port"
    host = m.group("b") or m.group("h")
    if m.group("port") and not 0 < int(m.group("port")) < 65536:
        return f"port in {v!r} is out of range"
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        return is_hostname(host)


def is_abs_path(v: str) -> str | None:
    return (
        None if v.startswith("/") and ".." not in v.split("/") else f"{v!r} is not an absolute path"
    )


_HOST_PATH = re.compile(r"/[A-Za-z0-9._/+-]*")

# Directories the deploy must never manage as tls_dir/table_dir (equal, or a parent of one):
# a cleanup or a chmod there would hit the system's own files.
SYSTEM_DIRS = (
    "/", "/bin", "/boot", "/dev", "/etc", "/etc/postfix", "/etc/ssl", "/etc/ssl/certs",
    "/etc/ssl/private", "/etc/pki", "/home", "/lib", "/lib64", "/media", "/mnt", "/opt",
    "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin",
    "/usr/lib", "/usr/libexec", "/usr/local", "/usr/sbin", "/var", "/var/lib",
    "/var/lib/postfix", "/var/log", "/var/spool", "/var/spool/postfix", "/var/tmp",
)  # fmt: skip


def is_host_path(v: str) -> str | None:
    """A path on the host that goes into main.cf and the activation's manifest."""
    if err := is_abs_path(v):
        return err
    if not _HOST_PATH.fullmatch(v):
        return f"{v!r}: use letters, digits and . _ + - / only (no spaces, commas, |, $ or quotes)"
    return None


def contains(parent: str, path: str) -> bool:
    """parent is path or one of its ancestors (both absolute, normalised here)."""
    parent, path = parent.rstrip("/") or "/", path.rstrip("/") or "/"
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def is_host_dir(v: str) -> str | None:
    if err := is_host_path(v):
        return err
    hit = next((d for d in SYSTEM_DIRS if contains(v, d)), None)
    if hit:
        return f"{v!r} is or contains the system directory {hit}; use a directory of its own, e.g. /etc/postfix/tls"
    return None


def is_maillog(v: str) -> str | None:
    return None if v == "" else is_host_path(v)


def one_of(choices: tuple[str, ...]) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        if v in choices:
            return None
        close = difflib.get_close_matches(v, choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{v!r} is not one of {', '.join(choices)}{hint}"

    return check


def int_range(lo: int, hi: int) -> Callable[[int], str | None]:
    return lambda v: None if lo <= v <= hi else f"{v} is outside {lo}..{hi}"


_GLOB = re.compile(r"/[A-Za-z0-9._/*?\[\]-]+")


def is_glob(v: str) -> str | None:
    return (
        None
        if _GLOB.fullmatch(v) and ".." not in v.split("/")
        else f"{v!r} is not an absolute path pattern (letters, digits, . _ - / * ? [ ] only)"
    )


_TABLE_KEYS = re.compile(r"[^\s#,]+(?:\n[^\s#,]+)*")


def _table_fast_ok(v: dict, kind: str) -> bool:
    """Every key one word without '#' or ',' (nor the aliases' ':"|'), no trailing dot,
    no leading dot outside lookup tables, no two keys differing only in case, every
    value a non-blank string: checked in a few passes at C speed over all entries (a
    100,000-entry table stays cheap)."""
    if not v:
        return True
    if set(map(type, v)) != {str} or set(map(type, v.values())) != {str}:
        return False
    keys = "\n".join(v)
    return (
        keys.count("\n") == len(v) - 1
        and _TABLE_KEYS.fullmatch(keys) is not None
        and not any(c in keys for c in _KEY_BAD[kind])
        and ".\n" not in keys + "\n"
        and (kind == "lookup" or "\n." not in "\n" + keys)
        and len(set(keys.lower().split("\n"))) == len(v)
        and all(map(str.strip, v.values()))
    )


# Characters a table type gives a meaning to in a key, so a key holding one does
# something else than it says: aliases ends a key at ':' and lists with ',';
# every table splits at whitespace and comments with '#'.
_KEY_BAD = {
    "aliases": ':,"|',
    "address": ",",  # virtual, canonical, relocated: keys are addresses
    "lookup": ",",  # transport, access, TLS policy: ':' is part of [host]:port and IPv6
}
TABLE_KINDS = {
    "aliases": "aliases",
    "virtual_alias_maps": "address",
    "canonical_maps": "address",
    "sender_canonical_maps": "address",
    "relocated_maps": "address",
    "transport_maps": "lookup",
    "sender_access": "lookup",
    "smtp_tls_policy": "lookup",
}


def key_problem(key: str, kind: str) -> str | None:
    """Why a table key would mean something other than what it says (None: fine)."""
    if not key or re.search(r"[\s#]", key):
        return f"table key {key!r} must be one word without '#'"
    bad = sorted({c for c in key if c in _KEY_BAD[kind]})
    if bad:
        return (
            f"table key {key!r}: {' '.join(bad)} has a meaning in this table; not allowed in a key"
        )
    if key.endswith("."):
        return f"table key {key!r}: a trailing dot never matches"
    if key.startswith(".") and kind != "lookup":
        return f"table key {key!r}: a leading dot is not a pattern in this table"
    return None


def table_check(kind: str) -> Callable[[dict], str | None]:
    def check(v: dict) -> str | None:
        if _table_fast_ok(v, kind):
            return None
        seen: dict[str, str] = {}
        for key, value in v.items():  # something is wrong: find and name it
            if not isinstance(key, str):
                return f"table key {key!r} must be a string"
            if err := key_problem(key, kind):
                return err
            if key.lower() in seen:  # Postfix folds case: one of them would be dropped
                return f"table keys {seen[key.lower()]!r} and {key!r} differ only in case"
            seen[key.lower()] = key
            if not isinstance(value, str) or not value.strip():
                return f"value for {key!r} must be a non-empty string"
        return None

    return check


is_table = table_check("lookup")


def is_policy(v: dict) -> str | None:
    if err := table_check("lookup")(v):
        return err
    for dest, level in v.items():
        if level.split()[0] not in POLICY_LEVELS:
            return f"{dest}: {level.split()[0]!r} is not one of {', '.join(POLICY_LEVELS)}"
    return None


# main.cf parameters extra_maps may extend (the ones maincf appends to)
EXTRA_MAP_PARAMS = (
    "alias_maps",
    "virtual_alias_maps",
    "canonical_maps",
    "sender_canonical_maps",
    "relocated_maps",
    "transport_maps",
)


def is_extra_maps(v: dict) -> str | None:
    for name, refs in v.items():
        if not isinstance(name, str) or not _PARAM_NAME.fullmatch(name):
            return f"{name!r} is not a Postfix parameter name"
        if name not in EXTRA_MAP_PARAMS:
            return f"{name} is not a map parameter extra_maps applies to ({', '.join(EXTRA_MAP_PARAMS)})"
        if not isinstance(refs, list) or not all(
            isinstance(r, str) and re.fullmatch(r"[a-z0-9]+:/[A-Za-z0-9._/+-]+", r) for r in refs
        ):
            return f"{name}: must be a list of TYPE:/path table references"
    return None


def is_extra(v: dict) -> str | None:
    for name, value in v.items():
        if not isinstance(name, str) or not _PARAM_NAME.fullmatch(name):
            return f"parameter name {name!r} is not a Postfix parameter name"
        if not isinstance(value, str | int | bool):
            return f"value of {name!r} must be a string or number"
    return None


# --- the schema ---------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any  # a value, or a callable(host_name) -> value
    doc: str
    check: Callable[[Any], str | None] | None = None
    item_check: Callable[[Any], str | None] | None = None  # for lists: each item

    def default_for(self, host_name: str) -> Any:
        return self.default(host_name) if callable(self.default) else self.default


SCHEMA: tuple[Setting, ...] = (
    # network
    Setting(
        "myhostname",
        str,
        lambda h: h,
        "FQDN of the host; certificate SAN. Default: the inventory name.",
        is_hostname,
    ),
    Setting(
        "mydomain",
        str,
        "",
        "Domain of the host; empty lets Postfix derive it from myhostname.",
        lambda v: None if v == "" else is_hostname(v),
    ),
    Setting(
        "mydestination",
        list,
        ["$myhostname", "localhost.$mydomain", "localhost"],
        "Domains delivered locally.",
        item_check=is_domain_or_var,
    ),
    Setting(
        "inet_interfaces",
        list,
        ["all"],
        "Addresses Postfix listens on; a change restarts Postfix.",
        item_check=is_interface,
    ),
    Setting(
        "inet_protocols",
        str,
        "all",
        "ipv4, ipv6 or all; a change restarts Postfix.",
        one_of(("all", "ipv4", "ipv6", "ipv4, ipv6")),
    ),
    Setting(
        "mynetworks",
        list,
        ["127.0.0.0/8", "[::1]/128"],
        "Trusted client networks (CIDR) allowed to relay.",
        item_check=is_network,
    ),
    Setting(
        "relayhost",
        str,
        "",
        "Next hop for all outbound mail: host, [host], host:port; empty = direct MX delivery.",
        is_relayhost,
    ),
    # general
    Setting("smtpd_banner", str, "$myhostname ESMTP", "Greeting banner (no version on purpose)."),
    Setting(
        "maillog_file",
        str,
        "",
        "Log to this file (postlog) instead of syslog; empty = syslog.",
        is_maillog,
    ),
    # tls policy
    Setting(
        "tls_profile",
        str,
        "fs-only",
        "Server TLS policy: fs-only (TLS>=1.2, every suite forward secret), mozilla-intermediate (exactly Mozilla's intermediate TLS 1.2 suites), tls13-only, postfix-defaults, custom (fs-only, and postfix_extra may override the protected TLS set). Deprecated aliases: intermediate = fs-only, compat = postfix-defaults, modern = tls13-only.",
        one_of(PROFILES + tuple(PROFILE_ALIASES)),
    ),
    Setting(
        "tls_pq_hybrid",
        bool,
        True,
        "Offer X25519MLKEM768 first where the host's OpenSSL has it (>= 3.5).",
    ),
    Setting(
        "smtp_tls_security_level",
        str,
        "may",
        "Client (outbound) TLS level; dane also sets smtp_dns_support_level = dnssec.",
        one_of(CLIENT_LEVELS),
    ),
    Setting(
        "verify_max_age_hours",
        int,
        24,
        "Re-prove the TLS policy (handshakes) when the host's last proof is older; 0 = every run.",
        int_range(0, 8760),
    ),
    Setting(
        "verify_full",
        bool,
        False,
        "Re-prove the TLS policy on this run even when nothing it depends on changed.",
    ),
    Setting("tls_loglevel", int, 1, "smtpd/smtp TLS log level (0-4).", int_range(0, 4)),
    Setting(
        "tls_dh_group",
        str,
        "ffdhe2048",
        "RFC 7919 group uploaded on Postfix < 3.7 (3.7+ uses built-in groups).",
        one_of(DH_GROUPS),
    ),
    # certificates
    Setting(
        "tls_cert_source",
        str,
        "auto",
        "auto: reuse a valid configured cert naming myhostname, else generate; existing; files; generate; ca (fleet CA); acme (an ACME CA, see acme_*).",
        one_of(CERT_SOURCES),
    ),
    Setting(
        "tls_cert_file",
        str,
        "",
        "files: certificate (leaf first, then chain) on the controller.",
        lambda v: None if v == "" else is_abs_path(v),
    ),
    Setting(
        "tls_key_file",
        str,
        "",
        "files: its private key on the controller (unencrypted).",
        lambda v: None if v == "" else is_abs_path(v),
    ),
    Setting(
        "tls_cert_globs",
        list,
        [],
        "auto: host paths (glob) where replacement certificates lie, e.g. /home/*/cert/*.pem.",
        item_check=is_glob,
    ),
    Setting(
        "tls_key_globs",
        list,
        [],
        "auto: host paths (glob) where their keys lie.",
        item_check=is_glob,
    ),
    Setting(
        "tls_cert_names",
        list,
        [],
        "Extra DNS names for a generated certificate's SAN.",
        item_check=is_hostname,
    ),
    Setting(
        "tls_cert_days", int, 397, "Validity of generated certificates, days.", int_range(2, 3650)
    ),
    Setting(
        "tls_reuse_min_days",
        int,
        7,
        "auto: a host's own certificate with fewer days left is replaced like a missing one (generated).",
        int_range(0, 90),
    ),
    Setting(
        "tls_renew_days",
        int,
        30,
        "Renew a generated certificate this many days before it expires.",
        int_range(1, 365),
    ),
    Setting(
        "acme_directory",
        str,
        "",
        "acme: the CA's ACME v2 directory URL (Let's Encrypt staging first: https://acme-staging-v02.api.letsencrypt.org/directory).",
        acme.is_directory_url,
    ),
    Setting(
        "acme_email",
        str,
        "",
        "acme: contact e-mail for the ACME account (optional).",
        acme.is_email,
    ),
    Setting(
        "acme_challenge",
        str,
        "dns-01",
        "acme: challenge type; dns-01 (answered by acme_dns_hook on the controller).",
        one_of(acme.CHALLENGES),
    ),
    Setting(
        "acme_dns_hook",
        list,
        [],
        "acme: command (argv) on the controller that publishes/removes the DNS-01 TXT record; called with add or remove, DOMAIN, RECORD, VALUE.",
    ),
    Setting(
        "acme_ca_bundle",
        str,
        "",
        "acme: CA bundle on the controller to verify the directory's HTTPS (a private or test CA); empty = system trust.",
        lambda v: None if v == "" else is_abs_path(v),
    ),
    # DANE: TLSA records by RFC 2136 dynamic update (operations/dane.py)
    Setting(
        "dane_server",
        str,
        "",
        "DANE: authoritative DNS server that takes signed dynamic updates (ADDRESS, ADDRESS:PORT, [IPv6]:PORT, HOST:PORT); empty = do not publish (reports/tlsa.txt only).",
        dane.is_server,
    ),
    Setting(
        "dane_zone",
        str,
        "",
        "DANE: the zone to update; myhostname must be inside it.",
        lambda v: None if v == "" else is_hostname(v.rstrip(".")),
    ),
    Setting("dane_tsig_name", str, "", "DANE: TSIG key name for the updates.", dane.is_key_name),
    Setting(
        "dane_tsig_secret",
        str,
        "",
        "DANE: the TSIG key's base64 secret; never printed, not in reports or errors.",
        dane.is_secret,
    ),
    Setting(
        "dane_tsig_algorithm",
        str,
        "hmac-sha256",
        "DANE: TSIG algorithm.",
        one_of(dane.ALGORITHMS),
    ),
    Setting(
        "dane_ttl",
        int,
        3600,
        "DANE: TTL (seconds) of the published TLSA records.",
        int_range(1, 86400),
    ),
    Setting(
        "dane_wait",
        int,
        0,
        "DANE: seconds a next key's record must have been visible at the authoritative server before the key goes live; 0 = twice the TTL.",
        int_range(0, 30 * 86400),
    ),
    Setting(
        "tls_dir",
        str,
        "/etc/postfix/tls",
        "Directory on the host for deployed keys and certificates (0700).",
        is_host_dir,
    ),
    Setting(
        "pfs_store",
        str,
        in_cwd(".pfs-store"),
        "Controller-side key store (0700, git-ignored); default: .pfs-store in the directory pyinfra runs in.",
        is_abs_path,
    ),
    Setting(
        "report_dir",
        str,
        in_cwd("reports"),
        "Directory for each run's JSON report (latest.json links the newest); default: reports in the directory pyinfra runs in.",
        is_abs_path,
    ),
    # lookup tables and relay
    Setting(
        "table_dir",
        str,
        "/etc/postfix/maps",
        "Directory on the host for lookup tables written from data.",
        is_host_dir,
    ),
    Setting(
        "aliases",
        dict,
        {},
        "Local aliases {name: 'target, target'} (postalias; /etc/aliases stays too).",
        table_check("aliases"),
    ),
    Setting(
        "virtual_alias_maps",
        dict,
        {},
        "Virtual aliases {address: 'target ...'}.",
        table_check("address"),
    ),
    Setting(
        "virtual_alias_domains",
        list,
        [],
        "Domains whose addresses exist only as virtual aliases.",
        item_check=is_hostname,
    ),
    Setting(
        "canonical_maps",
        dict,
        {},
        "Address rewriting, both directions {from: to}.",
        table_check("address"),
    ),
    Setting(
        "sender_canonical_maps",
        dict,
        {},
        "Sender address rewriting {from: to}.",
        table_check("address"),
    ),
    Setting(
        "relocated_maps",
        dict,
        {},
        "Moved users {old address: 'new address or text'}.",
        table_check("address"),
    ),
    Setting(
        "transport_maps", dict, {}, "Routing {domain: 'smtp:[host]:port'}.", table_check("lookup")
    ),
    Setting(
        "sender_access",
        dict,
        {},
        "smtpd sender restrictions {sender/domain: 'REJECT ...|OK'}.",
        table_check("lookup"),
    ),
    Setting(
        "smtp_tls_policy",
        dict,
        {},
        "Outbound TLS per destination {destination: 'may|encrypt|verify|dane|none ...'}.",
        is_policy,
    ),
    Setting(
        "extra_maps",
        dict,
        {},
        "Hand-managed tables appended to a map parameter, never overwritten {alias_maps: ['ldap:/etc/postfix/ldap-aliases.cf']}.",
        is_extra_maps,
    ),
    Setting(
        "relayhost_username", str, "", "SASL user name for relayhost (with relayhost_password)."
    ),
    Setting(
        "relayhost_password",
        str,
        "",
        "SASL password for relayhost; stored 0600 on the host, never printed.",
    ),
    Setting(
        "relay_tls_level",
        str,
        "encrypt",
        "TLS required to relayhost when it has a password: encrypt or verify.",
        one_of(("encrypt", "verify", "secure")),
    ),
    # escape hatch
    Setting(
        "postfix_extra",
        dict,
        {},
        "Extra main.cf parameters {name: value}; names must be known to the host's Postfix; the protected TLS set only with tls_profile = custom.",
        is_extra,
    ),
    # a lived-in host's own configuration
    Setting(
        "drop_host_params",
        list,
        [],
        "Host main.cf parameters NOT to carry over (kept by default); ['all'] for a strictly declarative main.cf (no host values at all).",
        item_check=lambda v: (
            None
            if v == "all" or _PARAM_NAME.match(v)
            else f"{v!r} is not a parameter name or 'all'"
        ),
    ),
    Setting(
        "pfs_foreign_keys",
        list,
        [],
        "Keys of other deploys in the same inventory that look like this deploy's (a tls_/pfs_/relay_/postfix_ prefix, or close to one of its keys): left alone instead of refused as typos.",
        item_check=lambda v: None if _PARAM_NAME.match(v) else f"{v!r} is not a key name",
    ),
    Setting(
        "allow_open_relay",
        bool,
        False,
        "Acknowledge a main.cf that lets anyone relay (mynetworks 0.0.0.0/0, a permit before reject_unauth_destination); refused otherwise.",
    ),
)

BY_NAME = {s.name: s for s in SCHEMA}


@dataclass(frozen=True)
class Settings:
    values: Mapping[str, Any]
    origins: Mapping[str, str]  # key -> "host", "group:NAME", "all", "default"
    # key -> the deprecated name the inventory gave (values hold what it means)
    deprecated_names: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        shown = {k: ("(secret)" if k in SECRET_KEYS and v else v) for k, v in self.values.items()}
        return f"Settings({shown!r})"

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def _strings(value: Any):
    """Every string in a value, however deeply nested (keys included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _control_problem(value: Any) -> str | None:
    """A newline or control character anywhere in a value (one pass over a big table)."""
    if isinstance(value, dict) and {type(x) for x in (*value, *value.values())} <= {str}:
        if not _CONTROL.search("".join(value) + "".join(value.values())):
            return None
    for text in _strings(value):
        if _CONTROL.search(text):
            return f"{text!r} contains a newline or control character"
    return None


def _check_value(s: Setting, value: Any) -> str | None:
    if s.type is int and isinstance(value, bool) or not isinstance(value, s.type):
        return f"must be {s.type.__name__}, got {type(value).__name__} {value!r}"
    if err := _control_problem(value):
        return err
    for item in value if s.type is list else []:
        if s.type is list and not isinstance(item, str):
            return f"list items must be strings, got {item!r}"
        if s.type is list and s.item_check and (err := s.item_check(item)):
            return err
    if s.check and (err := s.check(value)):
        return err
    return None


# One inventory often serves several deploys. A key this deploy does not know is
# another deploy's (or a helper variable) and is ignored, unless it looks like ours:
# it starts with a prefix only this deploy uses, or it is a close match (difflib
# ratio >= TYPO_CUTOFF) to one of our keys. Then it is a typo, refused with a
# did-you-mean; pfs_foreign_keys names the other deploys' keys that look like ours.
OWN_PREFIXES = ("tls_", "pfs_", "relay_", "relayhost_", "postfix_", "dane_", "acme_")
TYPO_CUTOFF = 0.8


def looks_like_ours(key: str) -> bool:
    return key.startswith(OWN_PREFIXES) or bool(
        difflib.get_close_matches(key, BY_NAME, n=1, cutoff=TYPO_CUTOFF)
    )


def unknown_key_problems(host_name: str, unknown: list[tuple[str, str]], foreign) -> list[str]:
    """One line per unknown key that looks like one of ours; the others are not ours."""
    foreign = set(foreign) if isinstance(foreign, list) else set()
    problems = []
    for key, origin in unknown:
        if key in foreign or not looks_like_ours(key):
            continue
        close = difflib.get_close_matches(key, BY_NAME, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        problems.append(
            f"{host_name}: {key}: unknown key in {origin} data ({hint}"
            "a key another deploy reads: list it in pfs_foreign_keys)"
        )
    return problems


def _dirs_apart(values: Mapping[str, Any], origins: Mapping[str, str]) -> tuple[str, str] | None:
    """tls_dir and table_dir must not be one directory or one inside the other: the
    cleanup of stale key material in tls_dir would otherwise meet the tables."""
    tls, table = values["tls_dir"], values["table_dir"]
    if contains(tls, table) or contains(table, tls):
        key = "table_dir" if origins["table_dir"] != "default" else "tls_dir"
        return key, f"tls_dir {tls!r} and table_dir {table!r} must be separate directories"
    return None


def resolve(host_name: str, layers: list[tuple[str, Mapping[str, Any]]]) -> Settings:
    """Merge data layers (first wins) over the defaults; raise SettingsError on bad data."""
    problems = []
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    unknown: list[tuple[str, str]] = []
    for origin, data in reversed(layers):
        for key, value in data.items():
            if key.startswith(PYINFRA_PREFIXES):
                continue
            if key not in BY_NAME:
                unknown.append((key, origin))
                continue
            values[key] = value
            origins[key] = origin
    problems += unknown_key_problems(host_name, unknown, values.get("pfs_foreign_keys"))
    for s in SCHEMA:
        if s.name not in values:
            values[s.name] = s.default_for(host_name)
            origins[s.name] = "default"
        elif err := _check_value(s, values[s.name]):
            if s.name in SECRET_KEYS:
                err = "invalid value (not shown: it is a secret)"
            problems.append(f"{host_name}: {s.name}: {err} (from {origins[s.name]})")
    deprecated = _canonical_names(values)
    problems += _cross_checks(host_name, values, origins)
    if not problems and (bad := _dirs_apart(values, origins)):
        key, err = bad
        problems.append(f"{host_name}: {key}: {err} (from {origins[key]})")
    if problems:
        raise SettingsError(sorted(set(problems)))
    return Settings(values, origins, deprecated)


def _canonical_names(values: dict) -> dict[str, str]:
    """Replace a deprecated profile name by the profile it means; return {key: old name}."""
    given = values.get("tls_profile")
    if isinstance(given, str) and given in PROFILE_ALIASES:
        values["tls_profile"] = PROFILE_ALIASES[given]
        return {"tls_profile": given}
    return {}


def deprecation_notes(s: Settings) -> list[str]:
    """One plan/summary warning per deprecated name the inventory uses."""
    return [
        f"warning: the tls_profile name {old!r} is deprecated: it means {s.values[key]!r}, "
        f"the same settings; write {s.values[key]!r} (from {s.origins.get(key, 'default')})"
        for key, old in s.deprecated_names.items()
    ]


def _cross_checks(host_name: str, values: dict, origins: dict) -> list[str]:
    """Checks that need more than one key: the profile's protected TLS set."""
    from .adopt import PROTECTED

    problems = acme.settings_problems(host_name, values, origins)
    problems += dane.settings_problems(host_name, values, origins)
    if values["tls_profile"] == "custom" or not isinstance(values["postfix_extra"], dict):
        return problems
    return problems + [
        f"{host_name}: postfix_extra: {name} is part of tls_profile {values['tls_profile']}'s "
        f"protected TLS set; set tls_profile = custom to override it (from {origins['postfix_extra']})"
        for name in sorted(values["postfix_extra"])
        if name in PROTECTED
    ]


def host_layers(host) -> list[tuple[str, Mapping[str, Any]]]:
    """A pyinfra host's data layers, highest precedence first, each with its origin."""
    inv = host.inventory
    layers: list[tuple[str, Mapping[str, Any]]] = [
        ("override", inv.get_override_data()),
        ("host", inv.get_host_data(host.name)),
    ]
    # pyinfra merges groups in order, the last one wins: list them last-first
    for group in reversed(host.groups):
        layers.append((f"group:{group}", inv.get_group_data(group)))
    layers.append(("all", inv.get_data()))
    return layers


def for_host(host) -> Settings:
    return resolve(host.name, host_layers(host))


def validate_inventory(hosts) -> dict[str, Settings]:
    """Settings for every host, or SettingsError listing every problem of every host."""
    out, problems = {}, []
    for host in hosts:
        try:
            out[host.name] = for_host(host)
        except SettingsError as e:
            problems.extend(e.problems)
    if problems:
        raise SettingsError(problems)
    return out


def markdown() -> str:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for s in SCHEMA:
        if s.name in ("pfs_store", "report_dir"):
            default = f"`./{Path(s.default_for('')).name}`"
        elif callable(s.default):
            default = "the inventory name"
        else:
            default = f"`{s.default!r}`"
        rows.append(f"| `{s.name}` | {s.type.__name__} | {default} | {s.doc} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
