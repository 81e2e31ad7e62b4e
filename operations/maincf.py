"""main.cf: the values this deploy sets on a host, rendered by templates/main.cf.j2.

The template is the main.cf: its sections, every managed parameter by name, and why each
TLS choice is made. This module only computes the values (pure: settings + facts +
certificate decision) and hands them over in a flat context, one variable per
parameter; a parameter without a value on this host (not wanted, not valid for its
Postfix) is left undefined, and the template writes it under `{% if NAME is defined %}`.

Every parameter the template may write is declared once, in PARAMS: the Postfix
versions where it is valid and where its value comes from (the plan's provenance).
`build()` parses the rendered file and refuses any parameter outside its version range
or not declared at all, so an edited template cannot give a host's Postfix a parameter
it does not know. The host's own parameters (kept) and postfix_extra's site parameters
are exempt: the host's Postfix knows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from . import adopt
from .facts import HostFacts
from .settings import BY_NAME, Settings, canonical_profile

# package data of postfix_pfs (the repository's templates/): found wherever it is installed
TEMPLATES = resources.files(f"{__package__}.templates")
TEMPLATE = "main.cf.j2"

# special sources (provenance) besides inventory keys
POSTCONF_D = "postconf -d"  # the host's compiled-in value
HOST_N = "postconf -n"  # the host's configured value, kept as it is
VERSION = "version"  # decided by the host's Postfix/OpenSSL version
CERTIFICATE = "certificate"  # the certificate decision


@dataclass(frozen=True)
class Param:
    """One main.cf parameter this deploy may write: where its value comes from (an
    inventory key, one of the special sources above, or None: this deploy's policy) and
    the Postfix versions that know it (since, and until: gone or deprecated)."""

    source: str | None = None
    since: tuple[int, ...] = (2, 0)
    until: tuple[int, ...] | None = None
    path: bool = False  # a compiled-in path or owner, written out from postconf -d


def _path(since: tuple[int, ...] = (2, 0)) -> Param:
    return Param(POSTCONF_D, since, path=True)


PARAMS: dict[str, Param] = {
    # paths
    "queue_directory": _path(),
    "command_directory": _path(),
    "daemon_directory": _path(),
    "data_directory": _path((2, 5)),
    "mail_owner": _path(),
    "setgid_group": _path(),
    "sendmail_path": _path(),
    "newaliases_path": _path(),
    "mailq_path": _path(),
    "manpage_directory": _path(),
    "sample_directory": _path(),
    "readme_directory": _path(),
    "html_directory": _path(),
    "meta_directory": _path((3, 0)),
    "shlib_directory": _path((3, 0)),
    # general
    "compatibility_level": Param(VERSION, (3, 0)),
    "smtpd_banner": Param("smtpd_banner"),
    "biff": Param(),
    "append_dot_mydomain": Param(),
    "recipient_delimiter": Param(),
    "mailbox_size_limit": Param(),
    "maillog_file": Param("maillog_file", (3, 4)),
    # network
    "myhostname": Param("myhostname"),
    "mydomain": Param("mydomain"),
    "myorigin": Param(),
    "mydestination": Param("mydestination"),
    "inet_interfaces": Param("inet_interfaces"),
    "inet_protocols": Param("inet_protocols", (2, 2)),
    "mynetworks": Param("mynetworks"),
    "relayhost": Param("relayhost"),
    # mappings
    "alias_maps": Param("aliases"),
    "alias_database": Param("aliases"),
    "virtual_alias_maps": Param("virtual_alias_maps"),
    "virtual_alias_domains": Param("virtual_alias_domains"),
    "canonical_maps": Param("canonical_maps"),
    "sender_canonical_maps": Param("sender_canonical_maps"),
    "relocated_maps": Param("relocated_maps"),
    "transport_maps": Param("transport_maps"),
    "smtpd_sender_restrictions": Param("sender_access"),
    # SMTP client
    "smtp_tls_security_level": Param("smtp_tls_security_level", (2, 3)),
    "smtp_tls_policy_maps": Param("smtp_tls_policy", (2, 3)),
    "smtp_sasl_auth_enable": Param("relayhost_password"),
    "smtp_sasl_password_maps": Param("relayhost_password"),
    "smtp_sasl_security_options": Param("relayhost_password"),
    "smtp_sasl_tls_security_options": Param("relayhost_password", (2, 2)),
    "smtp_tls_chain_files": Param(HOST_N, (3, 4)),
    "smtp_tls_cert_file": Param(HOST_N, (2, 2)),
    "smtp_tls_key_file": Param(HOST_N, (2, 2)),
    "smtp_dns_support_level": Param("smtp_tls_security_level", (2, 11)),
    "smtp_tls_CAfile": Param(POSTCONF_D, (2, 2)),
    "smtp_tls_loglevel": Param("tls_loglevel", (2, 2)),
    "smtp_tls_session_cache_database": Param(None, (2, 2)),
    # SMTP server
    "smtpd_relay_restrictions": Param(None, (2, 10)),
    "smtpd_tls_security_level": Param(None, (2, 3)),
    "smtpd_tls_chain_files": Param(CERTIFICATE, (3, 4)),
    "smtpd_tls_cert_file": Param(CERTIFICATE, (2, 2)),
    "smtpd_tls_key_file": Param(CERTIFICATE, (2, 2)),
    "smtpd_tls_eccert_file": Param(CERTIFICATE, (2, 6)),
    "smtpd_tls_eckey_file": Param(CERTIFICATE, (2, 6)),
    "smtpd_tls_loglevel": Param("tls_loglevel", (2, 2)),
    "smtpd_tls_received_header": Param(None, (2, 2)),
    "smtpd_tls_session_cache_database": Param(None, (2, 2)),
    "smtpd_tls_protocols": Param("tls_profile", (2, 6)),
    "smtpd_tls_mandatory_protocols": Param("tls_profile", (2, 3)),
    "smtpd_tls_ciphers": Param("tls_profile", (2, 6)),
    "smtpd_tls_mandatory_ciphers": Param("tls_profile", (2, 3)),
    "smtpd_tls_exclude_ciphers": Param("tls_profile", (2, 3)),
    # Postfix >= 3.7 with OpenSSL 3 picks groups itself; the file warns from 3.9
    "smtpd_tls_dh1024_param_file": Param("tls_dh_group", (2, 2), (3, 7)),
    # TLS library
    "tls_high_cipherlist": Param("tls_profile", (2, 3)),
    "tls_preempt_cipherlist": Param("tls_profile", (2, 8)),
    "tls_eecdh_auto_curves": Param("tls_pq_hybrid", (3, 2)),
}

# views of PARAMS for the plan: where each value comes from, which values are paths
SOURCES: dict[str, str] = {n: p.source for n, p in PARAMS.items() if p.source}
PATH_PARAMS = tuple(n for n, p in PARAMS.items() if p.path)

PQ_GROUP = "X25519MLKEM768"

# Mozilla's intermediate configuration (v5.7), its TLS 1.2 suites in its order (OpenSSL
# names): ECDHE/DHE with AES-GCM or ChaCha20-Poly1305, nothing else. TLS 1.3 suites are
# OpenSSL's own list (tls_high_cipherlist does not touch them).
MOZILLA_INTERMEDIATE_TLS12 = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-CHACHA20-POLY1305",
)

# setting -> (main.cf parameter, file name in table_dir); aliases are compiled with postalias
TABLE_PARAMS = {
    "aliases": ("alias_maps", "aliases"),
    "virtual_alias_maps": ("virtual_alias_maps", "virtual"),
    "canonical_maps": ("canonical_maps", "canonical"),
    "sender_canonical_maps": ("sender_canonical_maps", "sender_canonical"),
    "relocated_maps": ("relocated_maps", "relocated"),
    "transport_maps": ("transport_maps", "transport"),
    "sender_access": ("smtpd_sender_restrictions", "sender_access"),
    "smtp_tls_policy": ("smtp_tls_policy_maps", "tls_policy"),
}


def tls_policy(s: Settings) -> dict[str, str]:
    """smtp_tls_policy from data, plus the relay's own entry when it authenticates."""
    policy = dict(s.smtp_tls_policy)
    if s.relayhost and s.relayhost_password:
        policy.setdefault(s.relayhost, s.relay_tls_level)
    return policy


def table_contents(s: Settings) -> dict[str, dict[str, str]]:
    """Table setting -> entries, for every table that has entries (sasl_passwd included)."""
    out = {k: dict(getattr(s, k)) for k in TABLE_PARAMS if k != "smtp_tls_policy" and getattr(s, k)}
    if policy := tls_policy(s):
        out["smtp_tls_policy"] = policy
    if s.relayhost and s.relayhost_password:
        out["sasl_passwd"] = {s.relayhost: f"{s.relayhost_username}:{s.relayhost_password}"}
    return out


def table_paths(s: Settings) -> dict[str, str]:
    d = s.table_dir.rstrip("/")
    return {k: f"{d}/{TABLE_PARAMS[k][1] if k in TABLE_PARAMS else k}" for k in table_contents(s)}


class MainCfError(Exception):
    """The template cannot make a main.cf for this host; str() is one line per problem."""


class VersionGateError(MainCfError):
    """The rendered main.cf has a parameter this host's Postfix does not know."""


def in_range(param: str, version: tuple[int, ...]) -> bool:
    p = PARAMS[param]
    return version >= p.since and (p.until is None or version < p.until)


def compatibility_level(version: tuple[int, ...]) -> str | None:
    if version >= (3, 9):
        return "3.9"
    if version >= (3, 6):
        return "3.6"
    if version >= (3, 0):
        return "2"
    return None


def driving_key(name: str, s: Settings) -> str | None:
    """The inventory key a parameter's value comes from (None: the deploy's own policy)."""
    if name in s.extra_maps:
        return "extra_maps"
    if name == "smtp_tls_CAfile":  # the fleet CA, when tls_cert_source = ca is set
        return "tls_cert_source"
    source = SOURCES.get(name)
    return source if source in BY_NAME else None


def yields_to_host(name: str, s: Settings, facts: HostFacts) -> bool:
    """Is the host's own value of this parameter kept instead of the deploy's?"""
    if name not in facts.postconf_n or name in adopt.PROTECTED:
        return False
    return adopt.from_host(s, driving_key(name, s))


def server_level(facts: HostFacts) -> str:
    """smtpd_tls_security_level: may, unless the host already required TLS (never weaker)."""
    n = facts.postconf_n
    if n.get("smtpd_tls_security_level") == "encrypt" or n.get("smtpd_enforce_tls") == "yes":
        return "encrypt"
    return "may"


def protocols(profile: str, version: tuple[int, ...]) -> str | None:
    profile = canonical_profile(profile)
    if profile == "postfix-defaults":
        return None
    tls13 = profile == "tls13-only"
    floor = "TLSv1.3" if tls13 else "TLSv1.2"
    if version >= (3, 6):
        return f">={floor}"
    old = ["!SSLv2", "!SSLv3", "!TLSv1", "!TLSv1.1"] + (["!TLSv1.2"] if tls13 else [])
    return ", ".join(old)


def cipher_settings(profile: str) -> dict[str, str]:
    """The profile's cipher parameters (protocols aside): parameter -> value.

    fs-only and custom drop the suites without forward secrecy from Postfix's own list;
    mozilla-intermediate lets the server offer exactly Mozilla's nine TLS 1.2 suites: the
    "high" grade for smtpd, whose list (tls_high_cipherlist, a global parameter) is
    Mozilla's. Anything else using the "high" grade (e.g. a postfix_extra
    smtp_tls_mandatory_ciphers = high) gets that list too. The client picks the suite
    (tls_preempt_cipherlist = no), as Mozilla's intermediate says: every suite is strong.
    """
    profile = canonical_profile(profile)
    if profile in ("fs-only", "custom"):
        # TLS 1.2 without (EC)DHE is not forward secret; TLS 1.3 always is
        return {"smtpd_tls_exclude_ciphers": "kRSA, aNULL"}
    if profile == "mozilla-intermediate":
        return {
            "smtpd_tls_ciphers": "high",
            "smtpd_tls_mandatory_ciphers": "high",
            "smtpd_tls_exclude_ciphers": "kRSA, aNULL",
            "tls_high_cipherlist": ":".join(MOZILLA_INTERMEDIATE_TLS12),
            "tls_preempt_cipherlist": "no",
        }
    return {}


def needs_dh_file(facts: HostFacts) -> bool:
    """Postfix < 3.7 gets an RFC 7919 group file; newer ones choose groups themselves."""
    return in_range("smtpd_tls_dh1024_param_file", facts.version)


# --- the values: parameter -> value (None: Postfix's own default) ------------------------


@dataclass
class Inputs:
    """What a main.cf is made of: settings, facts and the plan's file decisions."""

    s: Settings
    facts: HostFacts
    server_files: dict[str, str]  # smtpd_tls_* file parameters -> paths (the certificate)
    dh_file: str | None = None
    client_files: dict[str, str] = field(default_factory=dict)  # the client's own, kept
    ca_file: str | None = None  # the fleet CA (tls_cert_source = ca)

    @property
    def db(self) -> str:
        return self.facts.postconf_d.get("default_database_type", "hash")

    @property
    def cache_db(self) -> str:
        return "lmdb" if self.db == "lmdb" else "btree"


def _paths(i: Inputs) -> dict[str, str | None]:
    d = i.facts.postconf_d
    return {p: d[p] for p in PATH_PARAMS if p in d}


def _general(i: Inputs) -> dict[str, str | None]:
    s = i.s
    out = {
        "compatibility_level": compatibility_level(i.facts.version),
        "smtpd_banner": s.smtpd_banner,
        "biff": "no",
        "append_dot_mydomain": "no",
        "recipient_delimiter": "+",
        "mailbox_size_limit": "0",
    }
    if s.maillog_file:
        out["maillog_file"] = s.maillog_file
    return out


def _network(i: Inputs) -> dict[str, str | None]:
    s = i.s
    out = {"myhostname": s.myhostname}
    if s.mydomain:
        out["mydomain"] = s.mydomain
    return out | {
        "myorigin": "$myhostname",
        "mydestination": ", ".join(s.mydestination),
        "inet_interfaces": ", ".join(s.inet_interfaces),
        "inet_protocols": s.inet_protocols,
        "mynetworks": " ".join(s.mynetworks),
        "relayhost": s.relayhost,
    }


def _mappings(i: Inputs) -> dict[str, str | None]:
    """Map parameters: the tables written from data, then extra_maps' own references."""
    s, db, tables = i.s, i.db, table_paths(i.s)
    aliases = [f"{db}:/etc/aliases"] + (
        [f"{db}:{tables['aliases']}"] if "aliases" in tables else []
    )
    out: dict[str, str | None] = {"alias_database": ", ".join(aliases)}
    for setting, (param, _) in TABLE_PARAMS.items():
        if param in ("smtpd_sender_restrictions", "smtp_tls_policy_maps"):
            continue
        own = [f"{db}:{tables[setting]}"] if setting in tables else []
        refs = [*(aliases if setting == "aliases" else own), *s.extra_maps.get(param, [])]
        out[param] = ", ".join(refs) if refs else None
    if s.virtual_alias_domains:
        out["virtual_alias_domains"] = ", ".join(s.virtual_alias_domains)
    if "sender_access" in tables:
        out["smtpd_sender_restrictions"] = f"check_sender_access {db}:{tables['sender_access']}"
    return out


def _client(i: Inputs) -> dict[str, str | None]:
    s, db, tables = i.s, i.db, table_paths(i.s)
    out: dict[str, str | None] = {"smtp_tls_security_level": s.smtp_tls_security_level}
    if "smtp_tls_policy" in tables:
        out["smtp_tls_policy_maps"] = f"{db}:{tables['smtp_tls_policy']}"
    if s.relayhost and s.relayhost_password:
        out["smtp_sasl_auth_enable"] = "yes"
        out["smtp_sasl_password_maps"] = f"{db}:{tables['sasl_passwd']}"
        out["smtp_sasl_security_options"] = "noanonymous"
        out["smtp_sasl_tls_security_options"] = "noanonymous"
    out |= i.client_files  # the client's own certificate, kept as configured
    if s.smtp_tls_security_level == "dane":
        out["smtp_dns_support_level"] = "dnssec"
    if i.ca_file or i.facts.ca_bundle:  # fleet CA mode: members trust the fleet CA
        out["smtp_tls_CAfile"] = i.ca_file or i.facts.ca_bundle
    out["smtp_tls_loglevel"] = str(s.tls_loglevel)
    out["smtp_tls_session_cache_database"] = f"{i.cache_db}:${{data_directory}}/smtp_scache"
    return out


def _server(i: Inputs) -> dict[str, str | None]:
    s = i.s
    proto = protocols(s.tls_profile, i.facts.version)
    out: dict[str, str | None] = {
        "smtpd_relay_restrictions": "permit_mynetworks permit_sasl_authenticated "
        "defer_unauth_destination",
        "smtpd_tls_security_level": server_level(i.facts),
        **i.server_files,
        "smtpd_tls_loglevel": str(s.tls_loglevel),
        "smtpd_tls_received_header": "yes",
        "smtpd_tls_session_cache_database": f"{i.cache_db}:${{data_directory}}/smtpd_scache",
        "smtpd_tls_protocols": proto,
        "smtpd_tls_mandatory_protocols": proto,
    }
    if i.dh_file:
        out["smtpd_tls_dh1024_param_file"] = i.dh_file
    return out


def _tls(i: Inputs) -> dict[str, str | None]:
    s, facts = i.s, i.facts
    out: dict[str, str | None] = dict(cipher_settings(s.tls_profile))
    curves = facts.postconf_d.get("tls_eecdh_auto_curves", "")
    if s.tls_pq_hybrid and facts.openssl_version >= (3, 5) and curves and PQ_GROUP not in curves:
        out["tls_eecdh_auto_curves"] = f"{PQ_GROUP} {curves}"
    return out


def wanted(i: Inputs) -> dict[str, str | None]:
    """Every parameter this deploy sets on the host, with the value it wants (None:
    Postfix's own default), before the host's own values and version ranges apply."""
    out: dict[str, str | None] = {}
    for part in (_paths, _general, _network, _mappings, _client, _server, _tls):
        out |= part(i)
    if undeclared := sorted(set(out) - set(PARAMS)):
        raise MainCfError(f"no entry in maincf.PARAMS for {', '.join(undeclared)}")
    return out


def context(i: Inputs) -> tuple[dict[str, str], set[str]]:
    """(parameter -> value for the template, parameters whose value is the host's own).

    A host value wins where adopt.py says so; a parameter with no value, or not valid
    for this host's Postfix, is left out (undefined in the template)."""
    ctx, kept = {}, set()
    for name, value in wanted(i).items():
        if yields_to_host(name, i.s, i.facts):  # the host's own value stays (adopt.py)
            value = i.facts.postconf_n[name]
            kept.add(name)
        if value is not None and in_range(name, i.facts.version):
            ctx[name] = value
    return ctx, kept


# --- rendering, and the gates on what was rendered -----------------------------------------


@dataclass
class MainCf:
    """A rendered main.cf: its text, its parameters in file order, and the parameters whose
    value is the host's own (adopted in place, or carried over in the kept section)."""

    text: str
    params: dict[str, str]
    kept: set[str]


_LINE = re.compile(r"([^\s=#]+)\s*=\s*(.*?)\s*")


def parse(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """main.cf as Postfix reads it: ([(name, value)] in file order, lines that are not a
    parameter). A comment line starts with #; a line starting with white space continues
    the one before. Lines end at a newline only, as Postfix reads them (str.splitlines()
    would also end one at U+2028 and other separators a value may hold)."""
    params: list[tuple[str, str]] = []
    bad: list[str] = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and params:
            name, value = params[-1]
            params[-1] = (name, f"{value} {line.strip()}".strip())
        elif m := _LINE.fullmatch(line):
            params.append((m.group(1), m.group(2)))
        else:
            bad.append(f"line {number} is not NAME = VALUE: {line.strip()[:60]!r}")
    return params, bad


def gate_problems(
    params: list[tuple[str, str]], exempt: set[str], version: tuple[int, ...]
) -> list[str]:
    """Why a rendered main.cf must not reach this host (empty: it may). Every parameter
    outside `exempt` (the host's own, postfix_extra's site ones) must be declared in
    PARAMS and valid for this Postfix; none may be written twice."""
    problems, seen = [], set()
    v = ".".join(map(str, version))
    for name, _ in params:
        if name in seen:
            problems.append(f"{name} is written twice")
        seen.add(name)
        if name in exempt:
            continue
        if name not in PARAMS:
            problems.append(
                f"{name} is not declared in maincf.PARAMS (no version range): declare it "
                "there, or set it with postfix_extra"
            )
        elif not in_range(name, version):
            p = PARAMS[name]
            until = f" until {'.'.join(map(str, p.until))}" if p.until else ""
            problems.append(
                f"{name} is not valid on Postfix {v} (valid from "
                f"{'.'.join(map(str, p.since))}{until})"
            )
    return problems


@cache
def _environment():
    from jinja2 import Environment, FunctionLoader, StrictUndefined

    return Environment(
        loader=FunctionLoader(lambda name: TEMPLATES.joinpath(name).read_text()),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def _render(source: str | None, variables: dict) -> str:
    from jinja2 import TemplateError, UndefinedError

    env = _environment()
    try:
        tpl = env.get_template(TEMPLATE) if source is None else env.from_string(source)
        return tpl.render(variables)
    except UndefinedError as e:
        name = re.sub(r"^'?([^' ]+)'? is undefined$", r"\1", str(e))
        raise MainCfError(
            f"{TEMPLATE} writes {name}, which has no value on this host (Postfix "
            f"{variables['postfix_version']}): write it inside {{% if {name} is defined %}}"
        ) from None
    except TemplateError as e:
        raise MainCfError(f"{TEMPLATE}: {e}") from None


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def build(
    host: str,
    s: Settings,
    facts: HostFacts,
    server_files: dict[str, str],
    dh_file: str | None = None,
    client_files: dict[str, str] | None = None,
    ca_file: str | None = None,
    template: str | None = None,
) -> MainCf:
    """The host's main.cf, rendered from templates/main.cf.j2 (or `template`, a template's
    text) and checked. postfix_extra overrides a parameter the template writes where it
    stands; the others go to the site section. Raises MainCfError (VersionGateError)."""
    i = Inputs(s, facts, server_files, dh_file, client_files or {}, ca_file)
    ctx, kept = context(i)
    base = {"host": host, "postfix_version": ".".join(map(str, facts.version))}
    managed = {n for n, _ in parse(_render(template, base | ctx | _extras([], [])))[0]}
    site = []
    for name, value in sorted(s.postfix_extra.items()):
        if name in managed:
            ctx[name] = _fmt(value)
            kept.discard(name)  # postfix_extra's value now, not the host's own
        else:
            site.append((name, _fmt(value)))
    host_params = adopt.carry_over(s, facts, managed | {n for n, _ in site})[0]
    text = _render(template, base | ctx | _extras(site, host_params))
    params, bad = parse(text)
    exempt = {n for n, _ in site + host_params}
    if problems := bad + gate_problems(params, exempt, facts.version):
        raise VersionGateError("\n".join(f"{TEMPLATE}: {p}" for p in problems))
    return MainCf(text, dict(params), kept | {n for n, _ in host_params})


def _extras(site: list[tuple[str, str]], host_params: list[tuple[str, str]]) -> dict:
    return {"site_params": site, "host_params": host_params}
