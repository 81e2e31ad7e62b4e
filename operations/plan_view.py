"""The plan as a mail admin reads it: what changes in Postfix's behaviour, and why.

Pure: compares the plan's main.cf parameters with the host's current
`postconf -n`, names where every changed value comes from (host data, a group,
all, the package default, the host's own Postfix), and describes the
certificate decision and the activation. Never key bytes: a replaced key shows
as its public-key fingerprint.
"""

from __future__ import annotations

from cryptography import x509

from . import maincf, masking, mastercf, pki
from .facts import HostFacts
from .plan import Plan
from .settings import Settings

SPECIAL_ORIGINS = {
    "postconf -d": "this host's compiled-in default (postconf -d)",
    "version": "this host's Postfix/OpenSSL version",
    "certificate": "certificate decision",
    "postconf -n": "kept from this host's configuration",
}


def origin_text(origin: str) -> str:
    if origin.startswith("group:"):
        return f"group {origin[6:]}"
    return {
        "host": "host data",
        "all": "all (group_data/all.py)",
        "default": "package default",
        "override": "--data override",
    }.get(origin, origin)


def provenance(param: str, s: Settings, kept: set[str] = frozenset()) -> str:
    if param in kept:
        return "kept from this host"
    source = maincf.SOURCES.get(param)
    if source is None:
        return (
            f"postfix_extra, {origin_text(s.origins['postfix_extra'])}"
            if param in s.postfix_extra
            else "postfix-pfs policy"
        )
    if param in s.postfix_extra:
        return f"postfix_extra, {origin_text(s.origins['postfix_extra'])}"
    if source in SPECIAL_ORIGINS:
        return SPECIAL_ORIGINS[source]
    return f"{source}, {origin_text(s.origins[source])}"


def _norm(v: str) -> str:
    return " ".join(v.replace(",", " ").split())


def _spki(pem: str, full: bool = False) -> str:
    """Public-key (SPKI) sha256 of a certificate: the DANE 3 1 1 digest."""
    digest = pki.spki_sha256(x509.load_pem_x509_certificate(pem.encode()))
    return digest if full else digest[:16]


def certificate_text(p: Plan, facts: HostFacts, s: Settings, material) -> list[str]:
    lines = []
    if p.cert.found:
        return found_text(p, facts)
    if p.cert.source == "existing":
        where = ", ".join(f"{k} = {v}" for k, v in p.cert.files.items())
        lines.append(f"reused: {where} (expires {p.cert.expires}; {p.cert.reason})")
        return lines
    verb = (
        "renewed"
        if p.cert.reason.startswith("managed") and any(f.secret for f in p.changed)
        else "generated"
    )
    if p.cert.reason.startswith("managed") and not any(f.secret for f in p.changed):
        verb = "kept"
    for m in material:
        lines.append(
            f"{verb} {m.kind}: {s.tls_dir}/{m.kind}-{m.fingerprint[:12]}.* (expires {m.cert.not_valid_after_utc:%Y-%m-%d})"
        )
    if not p.cert.reason.startswith("managed"):
        lines.append(f"why: {p.cert.reason}")
    # a key that goes away: show fingerprints, never bytes
    new = {m.kind: m.spki_sha256[:16] for m in material}
    new_full = {m.kind: m.spki_sha256 for m in material}
    for path in p.remove:
        old = facts.file(path)
        kind = path.rsplit("/", 1)[-1].split("-")[0]
        if old.certs_pem and kind in new:
            lines.append(f"{kind} key replaced (fingerprint {_spki(old.certs_pem)} -> {new[kind]})")
            lines.append(
                f"DANE: the TLSA 3 1 1 record of the {kind} key changes; publish "
                f"_25._tcp.{s.myhostname}. IN TLSA 3 1 1 {_spki(old.certs_pem, full=True)} -> {new_full[kind]} "
                "(keep both published across the switch)"
            )
    return lines


def table_lines(p: Plan, facts: HostFacts) -> list[str]:
    """One line per changed lookup table: entry counts, never entries. The old count
    is the host's (facts: one grep per table source)."""
    out = []
    for f in p.changed:
        if not f.compile:
            continue
        have = facts.file(f.path)
        if not have.exists:
            why = "new"
        elif have.sha256 == f.sha256:
            why = "same content; " + (
                "compiled file missing" if not facts.file(f.db_path).exists else "mode/owner fixed"
            )
        else:
            why = f"was {facts.table_entries.get(f.path, '?')}"
        out.append(f"{f.path}: {f.entries} entr{'y' if f.entries == 1 else 'ies'} ({why})")
    return out


def found_text(p: Plan, facts: HostFacts) -> list[str]:
    """A pair found under the globs: which files, and that the key is copied, not used in place."""
    cert, key = p.cert.files["smtpd_tls_cert_file"], facts.file(p.cert.files["smtpd_tls_key_file"])
    dest = next((f.path for f in p.files if f.key_from), "")
    return [
        f"reused: {cert} (expires {p.cert.expires}; {p.cert.reason})",
        f"key copied from {key.path} (owner {key.owner or '?'}, mode {key.mode or '?'}) "
        f"into {dest}, root-only (0600): the original is never used in place",
    ]


def describe(p: Plan, facts: HostFacts, s: Settings, material=()) -> dict:
    """The readable plan of one host as data (printed by report.py, kept in the JSON)."""
    current = facts.postconf_n
    changes, removed = [], []
    mask = masking.mask_value
    for name, new in p.params.items():
        old = current.get(name)
        effective = old if old is not None else facts.postconf_d.get(name)
        if effective is None or _norm(effective) != _norm(new):  # effective behaviour changes
            changes.append(
                {
                    "param": name,
                    "old": mask(name, old)
                    if old is not None
                    else f"(default) {facts.postconf_d.get(name, '')}".rstrip(),
                    "new": mask(name, new),
                    "origin": provenance(name, s, p.kept),
                }
            )
    main_changed = any(f.path.endswith("/main.cf") for f in p.changed)
    kept = []
    if main_changed:
        removed = [
            {"param": n, "old": mask(n, old), "why": masking.mask_text(why)}
            for n, old, why in p.dropped
        ]
        kept = sorted(n for n in p.kept if n in current)
    else:
        changes = []
    tlsmgr = mastercf.tlsmgr_state(facts.master_cf)
    master = [f"tlsmgr: {tlsmgr} -> active"] if p.master_changed and tlsmgr != "active" else []
    master += p.overrides_removed  # "smtp: -o NAME=VALUE removed (protected TLS policy: ...)"
    return {
        "no_changes": not p.has_changes,
        "activation": p.activation,
        "changes": changes,
        "removed": removed,
        "kept": kept,
        "certificate": certificate_text(p, facts, s, material),
        "master_cf": master,
        "files": [
            f"{f.path} ({'secret, ' if f.secret else ''}mode {f.mode})"
            for f in p.changed
            if not f.compile
        ],
        "tables": table_lines(p, facts),
        "remove_files": list(p.remove),
    }


def render(host: str, view: dict) -> list[str]:
    if view["no_changes"]:
        return [f"{host}: no changes", *(f"    DANE: {line}" for line in view.get("dane", []))]
    out = [
        f"{host}: would {view['activation']} Postfix"
        if view["activation"] != "none"
        else f"{host}:"
    ]
    for c in view["changes"]:
        out.append(
            f"    {c['param']}: {c['old'] or '(empty)'} -> {c['new'] or '(empty)'}    [{c['origin']}]"
        )
    for r in view["removed"]:
        out.append(f"    {r['param']}: removed (was {r['old'] or '(empty)'}): {r['why']}")
    for name in view["kept"]:
        out.append(f"    {name}: kept from this host")
    for line in view["certificate"]:
        out.append(f"    certificate: {line}")
    for line in view["master_cf"]:
        out.append(f"    master.cf: {line}")
    for line in view.get("tables", []):
        out.append(f"    table {line}")
    for f in view["files"]:
        out.append(f"    file: {f}")
    for f in view["remove_files"]:
        out.append(f"    file: {f} removed")
    for line in view.get("dane", []):
        out.append(f"    DANE: {line}")
    return out
