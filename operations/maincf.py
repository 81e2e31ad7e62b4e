"""main.cf: which parameters, in which section, for which Postfix; rendered by Jinja.

`sections()` decides every value (pure: settings + facts + certificate
decision). Every parameter it may emit is listed in VERSION_RANGES with the
Postfix versions where it is valid, and `render()` refuses to write a parameter
outside its range, so no version-dependent warning can reach a host.
"""

from __future__ import annotations

from importlib import resources

from jinja2 import Environment, FunctionLoader, StrictUndefined

from . import adopt
from .facts import HostFacts
from .settings import BY_NAME, Settings, canonical_profile

# package data of postfix_pfs (the repository's templates/): found wherever it is installed
TEMPLATES = resources.files(f"{__package__}.templates")

ANY = ((2, 0), None)
# parameter -> (first version, first version where it is gone/deprecated or None)
VERSION_RANGES: dict[str, tuple[tuple[int, ...], tuple[int, ...] | None]] = {
    # paths
    "queue_directory": ANY,
    "command_directory": ANY,
    "daemon_directory": ANY,
    "data_directory": ((2, 5), None),
    "mail_owner": ANY,
    "setgid_group": ANY,
    "sendmail_path": ANY,
    "newaliases_path": ANY,
    "mailq_path": ANY,
    "manpage_directory": ANY,
    "sample_directory": ANY,
    "readme_directory": ANY,
    "html_directory": ANY,
    "meta_directory": ((3, 0), None),
    "shlib_directory": ((3, 0), None),
    # general
    "compatibility_level": ((3, 0), None),
    "smtpd_banner": ANY,
    "biff": ANY,
    "append_dot_mydomain": ANY,
    "recipient_delimiter": ANY,
    "mailbox_size_limit": ANY,
    "maillog_file": ((3, 4), None),
    # network
    "myhostname": ANY,
    "mydomain": ANY,
    "myorigin": ANY,
    "mydestination": ANY,
    "inet_interfaces": ANY,
    "inet_protocols": ((2, 2), None),
    "mynetworks": ANY,
    "relayhost": ANY,
    # mappings
    "alias_maps": ANY,
    "alias_database": ANY,
    "virtual_alias_maps": ANY,
    "virtual_alias_domains": ANY,
    "canonical_maps": ANY,
    "sender_canonical_maps": ANY,
    "relocated_maps": ANY,
    "transport_maps": ANY,
    "smtpd_sender_restrictions": ANY,
    # smtp (client)
    "smtp_tls_policy_maps": ((2, 3), None),
    "smtp_sasl_auth_enable": ANY,
    "smtp_sasl_password_maps": ANY,
    "smtp_sasl_security_options": ANY,
    "smtp_sasl_tls_security_options": ((2, 2), None),
    "smtp_tls_chain_files": ((3, 4), None),
    "smtp_tls_cert_file": ((2, 2), None),
    "smtp_tls_key_file": ((2, 2), None),
    "smtp_tls_security_level": ((2, 3), None),
    "smtp_tls_CAfile": ((2, 2), None),
    "smtp_tls_loglevel": ((2, 2), None),
    "smtp_tls_session_cache_database": ((2, 2), None),
    "smtp_dns_support_level": ((2, 11), None),
    # smtpd (server)
    "smtpd_relay_restrictions": ((2, 10), None),
    "smtpd_tls_security_level": ((2, 3), None),
    "smtpd_tls_chain_files": ((3, 4), None),
    "smtpd_tls_cert_file": ((2, 2), None),
    "smtpd_tls_key_file": ((2, 2), None),
    "smtpd_tls_eccert_file": ((2, 6), None),
    "smtpd_tls_eckey_file": ((2, 6), None),
    "smtpd_tls_loglevel": ((2, 2), None),
    "smtpd_tls_received_header": ((2, 2), None),
    "smtpd_tls_session_cache_database": ((2, 2), None),
    "smtpd_tls_protocols": ((2, 6), None),
    "smtpd_tls_mandatory_protocols": ((2, 3), None),
    "smtpd_tls_exclude_ciphers": ((2, 3), None),
    "smtpd_tls_ciphers": ((2, 6), None),
    "smtpd_tls_mandatory_ciphers": ((2, 3), None),
    # Postfix >= 3.7 with OpenSSL 3 picks groups itself; the file warns from 3.9
    "smtpd_tls_dh1024_param_file": ((2, 2), (3, 7)),
    # tls
    "tls_eecdh_auto_curves": ((3, 2), None),
    "tls_high_cipherlist": ((2, 3), None),
    "tls_preempt_cipherlist": ((2, 8), None),
}

# Where each parameter's value comes from (for the dry-run plan's provenance):
# an inventory key, or one of: "postconf -d" (the host's compiled-in value),
# "version" (decided by the host's Postfix/OpenSSL), "certificate" (the
# certificate decision), "fixed" (this deploy's policy, not a setting).
SOURCES: dict[str, str] = {p: "postconf -d" for p in list(VERSION_RANGES)[:15]} | {
    "compatibility_level": "version",
    "smtpd_banner": "smtpd_banner",
    "maillog_file": "maillog_file",
    "myhostname": "myhostname",
    "mydomain": "mydomain",
    "mydestination": "mydestination",
    "inet_interfaces": "inet_interfaces",
    "inet_protocols": "inet_protocols",
    "mynetworks": "mynetworks",
    "relayhost": "relayhost",
    "alias_maps": "aliases",
    "alias_database": "aliases",
    "smtp_tls_security_level": "smtp_tls_security_level",
    "smtp_dns_support_level": "smtp_tls_security_level",
    "smtp_tls_CAfile": "postconf -d",
    "smtp_tls_loglevel": "tls_loglevel",
    "smtpd_tls_loglevel": "tls_loglevel",
    "smtpd_tls_protocols": "tls_profile",
    "smtpd_tls_mandatory_protocols": "tls_profile",
    "smtpd_tls_exclude_ciphers": "tls_profile",
    "smtpd_tls_ciphers": "tls_profile",
    "smtpd_tls_mandatory_ciphers": "tls_profile",
    "tls_high_cipherlist": "tls_profile",
    "tls_preempt_cipherlist": "tls_profile",
    "smtpd_tls_chain_files": "certificate",
    "smtpd_tls_cert_file": "certificate",
    "smtpd_tls_key_file": "certificate",
    "smtpd_tls_eccert_file": "certificate",
    "smtpd_tls_eckey_file": "certificate",
    "smtpd_tls_dh1024_param_file": "tls_dh_group",
    "tls_eecdh_auto_curves": "tls_pq_hybrid",
    "virtual_alias_maps": "virtual_alias_maps",
    "virtual_alias_domains": "virtual_alias_domains",
    "canonical_maps": "canonical_maps",
    "sender_canonical_maps": "sender_canonical_maps",
    "relocated_maps": "relocated_maps",
    "transport_maps": "transport_maps",
    "smtpd_sender_restrictions": "sender_access",
    "smtp_tls_policy_maps": "smtp_tls_policy",
    "smtp_sasl_auth_enable": "relayhost_password",
    "smtp_sasl_password_maps": "relayhost_password",
    "smtp_sasl_security_options": "relayhost_password",
    "smtp_sasl_tls_security_options": "relayhost_password",
    "smtp_tls_chain_files": "postconf -n",
    "smtp_tls_cert_file": "postconf -n",
    "smtp_tls_key_file": "postconf -n",
}

SECTIONS = {
    "paths": "Paths: this host's own compiled-in defaults (postconf -d), written out",
    "general": "General",
    "network": "Network: names, listeners, trusted networks, next hop",
    "mappings": "Mappings: lookup tables",
    "smtp": "SMTP client (outbound) TLS",
    "smtpd": "SMTP server (inbound) TLS",
    "tls": "TLS library settings shared by client and server",
    "kept": "Kept from this host's main.cf: not managed by postfix-pfs, carried over unchanged",
    "site": "Site-specific extra parameters (postfix_extra)",
}

PATH_PARAMS = list(VERSION_RANGES)[:15]  # queue_directory .. shlib_directory

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


class VersionGateError(Exception):
    pass


def in_range(param: str, version: tuple[int, ...]) -> bool:
    lo, hi = VERSION_RANGES[param]
    return version >= lo and (hi is None or version < hi)


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


def cipher_settings(profile: str) -> list[tuple[str, str, str]]:
    """The profile's cipher parameters: [(section, parameter, value)] (protocols aside).

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
        return [("smtpd", "smtpd_tls_exclude_ciphers", "kRSA, aNULL")]
    if profile == "mozilla-intermediate":
        return [
            ("smtpd", "smtpd_tls_ciphers", "high"),
            ("smtpd", "smtpd_tls_mandatory_ciphers", "high"),
            ("smtpd", "smtpd_tls_exclude_ciphers", "kRSA, aNULL"),
            ("tls", "tls_high_cipherlist", ":".join(MOZILLA_INTERMEDIATE_TLS12)),
            ("tls", "tls_preempt_cipherlist", "no"),
        ]
    return []


def needs_dh_file(facts: HostFacts) -> bool:
    """Postfix < 3.7 gets an RFC 7919 group file; newer ones choose groups themselves."""
    return in_range("smtpd_tls_dh1024_param_file", facts.version)


def sections(
    s: Settings,
    facts: HostFacts,
    server_files: dict[str, str],
    dh_file: str | None,
    client_files: dict[str, str] | None = None,
    ca_file: str | None = None,
    host_kept: set[str] | None = None,
) -> dict[str, list[tuple[str, str]]]:
    """Ordered main.cf content: section -> [(parameter, value)].

    server_files maps smtpd_tls_* file parameters to paths (chosen by the plan).
    host_kept collects the parameters whose value is the host's own (adopt.py).
    """
    d = facts.postconf_d
    v = facts.version
    db = d.get("default_database_type", "hash")
    cache_db = "lmdb" if db == "lmdb" else "btree"
    out: dict[str, list[tuple[str, str]]] = {k: [] for k in SECTIONS}
    kept = host_kept if host_kept is not None else set()

    def put(section: str, name: str, value: str | None) -> None:
        if yields_to_host(name, s, facts):  # the host's own value stays (adopt.py)
            value = facts.postconf_n[name]
            kept.add(name)
        if value is None or not in_range(name, v):
            return
        out[section].append((name, value))

    for p in PATH_PARAMS:
        if p in d:
            put("paths", p, d[p])

    put("general", "compatibility_level", compatibility_level(v))
    put("general", "smtpd_banner", s.smtpd_banner)
    put("general", "biff", "no")
    put("general", "append_dot_mydomain", "no")
    put("general", "recipient_delimiter", "+")
    put("general", "mailbox_size_limit", "0")
    if s.maillog_file:
        put("general", "maillog_file", s.maillog_file)

    put("network", "myhostname", s.myhostname)
    if s.mydomain:
        put("network", "mydomain", s.mydomain)
    put("network", "myorigin", "$myhostname")
    put("network", "mydestination", ", ".join(s.mydestination))
    put("network", "inet_interfaces", ", ".join(s.inet_interfaces))
    put("network", "inet_protocols", s.inet_protocols)
    put("network", "mynetworks", " ".join(s.mynetworks))
    put("network", "relayhost", s.relayhost)

    tables = table_paths(s)
    extra = s.extra_maps

    def maps(param: str, *own: str) -> str | None:
        refs = [*own, *extra.get(param, [])]
        return ", ".join(refs) if refs else None

    aliases = [f"{db}:/etc/aliases"] + (
        [f"{db}:{tables['aliases']}"] if "aliases" in tables else []
    )
    put("mappings", "alias_maps", maps("alias_maps", *aliases))
    put("mappings", "alias_database", ", ".join(aliases))
    for setting, (param, _) in TABLE_PARAMS.items():
        if param in ("alias_maps", "smtpd_sender_restrictions", "smtp_tls_policy_maps"):
            continue
        put(
            "mappings",
            param,
            maps(param, *([f"{db}:{tables[setting]}"] if setting in tables else [])),
        )
    if s.virtual_alias_domains:
        put("mappings", "virtual_alias_domains", ", ".join(s.virtual_alias_domains))
    if "sender_access" in tables:
        put(
            "mappings",
            "smtpd_sender_restrictions",
            f"check_sender_access {db}:{tables['sender_access']}",
        )

    put("smtp", "smtp_tls_security_level", s.smtp_tls_security_level)
    if "smtp_tls_policy" in tables:
        put("smtp", "smtp_tls_policy_maps", f"{db}:{tables['smtp_tls_policy']}")
    if s.relayhost and s.relayhost_password:
        put("smtp", "smtp_sasl_auth_enable", "yes")
        put("smtp", "smtp_sasl_password_maps", f"{db}:{tables['sasl_passwd']}")
        put("smtp", "smtp_sasl_security_options", "noanonymous")
        put("smtp", "smtp_sasl_tls_security_options", "noanonymous")
    for name, value in (client_files or {}).items():  # the client's own cert, kept as configured
        put("smtp", name, value)
    if s.smtp_tls_security_level == "dane":
        put("smtp", "smtp_dns_support_level", "dnssec")
    if ca_file or facts.ca_bundle:  # fleet CA mode: members trust the fleet CA
        put("smtp", "smtp_tls_CAfile", ca_file or facts.ca_bundle)
    put("smtp", "smtp_tls_loglevel", str(s.tls_loglevel))
    put("smtp", "smtp_tls_session_cache_database", f"{cache_db}:${{data_directory}}/smtp_scache")

    put(
        "smtpd",
        "smtpd_relay_restrictions",
        "permit_mynetworks permit_sasl_authenticated defer_unauth_destination",
    )
    put("smtpd", "smtpd_tls_security_level", server_level(facts))
    for name, value in server_files.items():
        put("smtpd", name, value)
    put("smtpd", "smtpd_tls_loglevel", str(s.tls_loglevel))
    put("smtpd", "smtpd_tls_received_header", "yes")
    put("smtpd", "smtpd_tls_session_cache_database", f"{cache_db}:${{data_directory}}/smtpd_scache")
    proto = protocols(s.tls_profile, v)
    put("smtpd", "smtpd_tls_protocols", proto)
    put("smtpd", "smtpd_tls_mandatory_protocols", proto)
    tls_section = []
    for section, name, value in cipher_settings(s.tls_profile):
        if section == "tls":
            tls_section.append((name, value))
        else:
            put(section, name, value)
    if dh_file:
        put("smtpd", "smtpd_tls_dh1024_param_file", dh_file)
    for name, value in tls_section:
        put("tls", name, value)

    curves = d.get("tls_eecdh_auto_curves", "")
    if s.tls_pq_hybrid and facts.openssl_version >= (3, 5) and curves and PQ_GROUP not in curves:
        put("tls", "tls_eecdh_auto_curves", f"{PQ_GROUP} {curves}")

    # postfix_extra: a managed parameter is overridden where it stands, others go to "site"
    for name, value in sorted(s.postfix_extra.items()):
        for params in out.values():
            idx = next((i for i, (n, _) in enumerate(params) if n == name), None)
            if idx is not None:
                params[idx] = (name, _fmt(value))
                break
        else:
            out["site"].append((name, _fmt(value)))
    rendered = {n for params in out.values() for n, _ in params}
    out["kept"] = adopt.carry_over(s, facts, rendered)[0]
    return {k: v for k, v in out.items() if v}


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def check_gates(content: dict[str, list[tuple[str, str]]], version: tuple[int, ...]) -> None:
    for section, params in content.items():
        if section in ("kept", "site"):  # the host's own Postfix knows them (it did not warn)
            continue
        for name, _ in params:
            if name not in VERSION_RANGES:
                raise VersionGateError(f"{name} has no version range")
            if not in_range(name, version):
                raise VersionGateError(
                    f"{name} is not valid on Postfix {'.'.join(map(str, version))}"
                )


def render(content: dict[str, list[tuple[str, str]]], host: str, version: tuple[int, ...]) -> str:
    check_gates(content, version)
    env = Environment(
        loader=FunctionLoader(lambda name: TEMPLATES.joinpath(name).read_text()),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    return env.get_template("main.cf.j2").render(
        host=host,
        version=".".join(map(str, version)),
        sections=[(SECTIONS[k], params) for k, params in content.items()],
    )
