"""DANE: publish the served keys' TLSA 3 1 1 records by RFC 2136 dynamic update (TSIG),
and roll keys over so that a key never goes live before its record is visible.

Configured per group (dane_server, dane_zone, dane_tsig_name, dane_tsig_secret); without
it nothing here runs and the deploy only writes reports/tlsa.txt. The deploy owns the
3 1 1 records at `_25._tcp.<myhostname>.` that it published itself; other records there
(2 x x, records it never published) are left alone.

The rollover ("current + next"), per host:
1. A key change is due (renewal, new names, a new source): the new key becomes the NEXT
   key, kept in the controller's store (`<pfs_store>/<host>/next/`), its record is
   published beside the current one, and the host keeps serving the current key.
2. A later run, once the next record has been visible at the zone's authoritative server
   for `dane_wait` seconds (default: twice the TTL), puts the next key live (a fresh
   certificate on the same key) and checks at the authoritative server that every served
   key has its record; the host fails with the reason if not.
3. Only then, with the old key no longer served, its record is withdrawn.
Exception: where the name has no 3 1 1 record at all, no DANE sender depends on the host
yet, so the new key's record is published and the key goes live in the same run.

Prepare (pyinfra's first stage, also in --dry) only reads DNS; updates and the store's
next keys are written by operations at execution (`before`, `after`). The TSIG secret is
in no output, report or error: `Config` hides it from repr.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import json
import os
import re
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from . import pki

ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512")
KEYS = ("dane_server", "dane_zone", "dane_tsig_name", "dane_tsig_secret")
STATE = "dane.json"  # per host in the store: when each record we published became visible
NEXT = "next"  # per host in the store: the next keys, waiting for their records
TIMEOUT = 10.0  # seconds for one DNS query or update


class DaneError(Exception):
    """A DNS lookup or update failed; the message says why (never the secret)."""


# --- settings ----------------------------------------------------------------------------


def split_server(v: str) -> tuple[str, int]:
    """'192.0.2.1', '192.0.2.1:5353', '[2001:db8::1]:53', 'ns1.example.net:53'."""
    m = re.fullmatch(
        r"\[(?P<v6>[0-9A-Fa-f:.]+)\](:(?P<p6>\d{1,5}))?|(?P<h>[^:\[\]]+)(:(?P<p>\d{1,5}))?", v
    )
    if not m:
        try:
            return str(ipaddress.IPv6Address(v)), 53
        except ValueError:
            raise ValueError(
                f"{v!r} is not ADDRESS, ADDRESS:PORT, [IPv6]:PORT or HOST:PORT"
            ) from None
    port = int(m.group("p6") or m.group("p") or 53)
    if not 0 < port < 65536:
        raise ValueError(f"port in {v!r} is out of range")
    return m.group("v6") or m.group("h"), port


def is_server(v: str) -> str | None:
    if v == "":
        return None
    try:
        host, _ = split_server(v)
    except ValueError as e:
        return str(e)
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        from .settings import is_hostname

        return is_hostname(host)


def is_key_name(v: str) -> str | None:
    ok = v == "" or re.fullmatch(
        r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_-]+)*\.?", v
    )
    return None if ok else f"{v!r} is not a TSIG key name (a domain name)"


def is_secret(v: str) -> str | None:
    """Never shows the value: it is a secret."""
    if v == "":
        return None
    try:
        raw = base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    return None if len(raw) >= 16 else "not a base64 TSIG secret of 16 bytes or more (not shown)"


def _in_zone(name: str, zone: str) -> bool:
    name, zone = name.lower().rstrip("."), zone.lower().rstrip(".")
    return name == zone or name.endswith("." + zone)


def settings_problems(host: str, values: dict, origins: dict) -> list[str]:
    """All four connection keys together, and myhostname inside the zone."""
    given = [k for k in KEYS if values.get(k)]
    if not given:
        return []
    out = [
        f"{host}: {k}: DANE publishing needs {', '.join(KEYS)} together "
        f"({', '.join(given)} set, from {origins[given[0]]})"
        for k in KEYS
        if not values.get(k)
    ]
    zone, name = values.get("dane_zone", ""), str(values.get("myhostname", ""))
    if zone and name and not _in_zone(name, zone):
        out.append(f"{host}: dane_zone: {name} is not inside {zone} (from {origins['dane_zone']})")
    return out


@dataclass(frozen=True)
class Config:
    server: str  # as written, for messages
    port: int
    zone: str
    key_name: str
    algorithm: str
    ttl: int
    wait: int  # 0: twice the TTL
    secret: str = field(repr=False)

    def wait_for(self, seen_ttl: int) -> int:
        """Seconds a next record must have been visible before its key goes live."""
        return self.wait or 2 * max(self.ttl, seen_ttl)


def config(s) -> Config | None:
    """The host's DANE publishing settings, or None when it is not configured."""
    if not s.dane_server:
        return None
    host, port = split_server(s.dane_server)
    return Config(
        host,
        port,
        s.dane_zone.rstrip(".") + ".",
        s.dane_tsig_name,
        s.dane_tsig_algorithm,
        s.dane_ttl,
        s.dane_wait,
        s.dane_tsig_secret,
    )


def tlsa_name(hostname: str) -> str:
    return f"_25._tcp.{hostname.rstrip('.')}."


# --- DNS ---------------------------------------------------------------------------------


def _address(cfg: Config) -> str:
    try:
        return str(ipaddress.ip_address(cfg.server))
    except ValueError:
        pass
    try:
        return socket.getaddrinfo(cfg.server, cfg.port, proto=socket.IPPROTO_TCP)[0][4][0]
    except OSError as e:
        raise DaneError(f"cannot resolve dane_server {cfg.server}: {e.strerror or e}") from None


def _where(cfg: Config) -> str:
    return f"{cfg.server}:{cfg.port}" if ":" not in cfg.server else f"[{cfg.server}]:{cfg.port}"


def _ask(cfg: Config, message, what: str):
    """One TCP exchange with the authoritative server; DaneError says what went wrong."""
    import dns.exception
    import dns.query
    import dns.tsig

    try:
        return dns.query.tcp(message, _address(cfg), timeout=TIMEOUT, port=cfg.port)
    except dns.tsig.PeerBadKey:
        why = f"the server does not know TSIG key {cfg.key_name} (BADKEY)"
    except dns.tsig.PeerBadSignature:
        why = f"the server refused the signature of TSIG key {cfg.key_name} (BADSIG: wrong dane_tsig_secret or algorithm?)"
    except dns.tsig.PeerBadTime:
        why = "the server refused the TSIG time (BADTIME: check the controller's clock)"
    except dns.tsig.PeerError as e:
        why = f"TSIG error: {type(e).__name__}"
    except dns.exception.Timeout:
        why = f"no answer within {TIMEOUT:.0f} s"
    except OSError as e:
        why = f"cannot reach it: {e.strerror or e}"
    except dns.exception.DNSException as e:
        why = f"{type(e).__name__}: {e}"
    raise DaneError(f"DANE: {what} at {_where(cfg)}: {why}")


def lookup(cfg: Config, name: str) -> tuple[set[str], int]:
    """The 3 1 1 digests published at `name` on the authoritative server, and their TTL."""
    import dns.message
    import dns.rcode
    import dns.rdatatype

    r = _ask(cfg, dns.message.make_query(name, "TLSA"), f"looking up {name}")
    if r.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise DaneError(f"DANE: looking up {name} at {_where(cfg)}: {dns.rcode.to_text(r.rcode())}")
    digests, ttl = set(), 0
    for rrset in r.answer:
        if rrset.rdtype != dns.rdatatype.TLSA:
            continue
        ttl = max(ttl, rrset.ttl)
        digests |= {rd.cert.hex() for rd in rrset if (rd.usage, rd.selector, rd.mtype) == (3, 1, 1)}
    return digests, ttl


def update(cfg: Config, name: str, add: set[str] = frozenset(), delete: set[str] = frozenset()):
    """One signed RFC 2136 update of the TLSA records at `name`."""
    import dns.rcode
    import dns.tsigkeyring
    import dns.update

    keyring = dns.tsigkeyring.from_text({cfg.key_name: (cfg.algorithm, cfg.secret)})
    u = dns.update.UpdateMessage(cfg.zone, keyring=keyring, keyname=cfg.key_name)
    for d in sorted(add):
        u.add(name, cfg.ttl, "TLSA", f"3 1 1 {d}")
    for d in sorted(delete):
        u.delete(name, "TLSA", f"3 1 1 {d}")
    what = (
        "publishing" if add and not delete else "withdrawing" if delete and not add else "updating"
    )
    r = _ask(cfg, u, f"{what} TLSA records at {name} (zone {cfg.zone})")
    if r.rcode() != dns.rcode.NOERROR:
        raise DaneError(
            f"DANE: {what} TLSA records at {name} (zone {cfg.zone}) at {_where(cfg)}: "
            f"the server answered {dns.rcode.to_text(r.rcode())}"
        )


# --- the controller's store: next keys and when records became visible -----------------


def load_state(store: Path, host: str) -> dict[str, dt.datetime]:
    """digest -> when this deploy first saw its record at the authoritative server."""
    try:
        raw = json.loads((store / host / STATE).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {d: dt.datetime.fromisoformat(t) for d, t in raw.get("records", {}).items()}


def save_state(store: Path, host: str, records: dict[str, dt.datetime]) -> None:
    hdir = store / host
    hdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = {"records": {d: t.isoformat(timespec="seconds") for d, t in sorted(records.items())}}
    tmp = hdir / (STATE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, hdir / STATE)


def load_next(store: Path, host: str) -> dict[str, pki.Material]:
    ndir = store / host / NEXT
    out = {}
    for kind in pki.KINDS:
        key, crt = ndir / f"{kind}.key", ndir / f"{kind}.crt"
        if key.exists() and crt.exists():
            out[kind] = pki.Material(kind, key.read_bytes(), crt.read_bytes())
    return out


def save_next(store: Path, host: str, material: list[pki.Material]) -> None:
    ndir = store / host / NEXT
    ndir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for m in material:
        pki._write_private(ndir / f"{m.kind}.key", m.key_pem)
        pki._write_private(ndir / f"{m.kind}.crt", m.cert_pem)


def drop_next(store: Path, host: str, digests: set[str]) -> None:
    """Forget next keys that are live now (their digest is served)."""
    for kind, m in load_next(store, host).items():
        if m.spki_sha256 in digests:
            for ext in ("key", "crt"):
                (store / host / NEXT / f"{kind}.{ext}").unlink(missing_ok=True)


def stored_current(store: Path, host: str, kind: str) -> pki.Material | None:
    key, crt = store / host / f"{kind}.key", store / host / f"{kind}.crt"
    if key.exists() and crt.exists():
        return pki.Material(kind, key.read_bytes(), crt.read_bytes())
    return None


# --- what the host serves ----------------------------------------------------------------


def served_keys(facts, files: dict[str, str] | None = None) -> dict[str, str]:
    """Key type -> TLSA 3 1 1 digest of the certificates in these smtpd_tls_* files
    (default: what the host's main.cf configures now)."""
    from .plan import SERVER_FILE_PARAMS

    if files is None:
        files = {p: facts.postconf_n[p] for p in SERVER_FILE_PARAMS if facts.postconf_n.get(p)}
        if "smtpd_tls_chain_files" in files:  # Postfix then ignores the other parameters
            files = {"smtpd_tls_chain_files": files["smtpd_tls_chain_files"]}
    out = {}
    for param, value in files.items():
        if "key_file" in param:
            continue
        for path in (p.strip() for p in value.split(",") if p.strip()):
            pem = facts.file(path).certs_pem
            if pem:
                cert = x509.load_pem_x509_certificate(pem.encode())
                kind = "rsa" if isinstance(cert.public_key(), rsa.RSAPublicKey) else "ecdsa"
                out[kind] = pki.spki_sha256(cert)
    return out


# --- the decision (pure) -----------------------------------------------------------------


def may_go_live(
    new: set[str],
    published: set[str],
    since: dict[str, dt.datetime],
    wait: int,
    now: dt.datetime,
    served: set[str] = frozenset(),
) -> tuple[bool, dt.datetime | None]:
    """May keys with these digests start being served now? And from when on (None: not
    before their records are published). Yes when nothing changes, when no key served
    now has a 3 1 1 record (no DANE sender gets a verified connection today: an empty
    name, or records of other keys only), or when every new key's record has been
    visible at the authoritative server for `wait` seconds."""
    if not new or not published & served:
        return True, None
    if not new <= published or any(d not in since for d in new):
        return False, None
    at = max(since[d] for d in new) + dt.timedelta(seconds=wait)
    return at <= now, at


@dataclass
class Rollover:
    """What DANE does on one host this run (made while pyinfra prepares)."""

    host: str
    name: str  # _25._tcp.<myhostname>.
    stage: str  # published, publish, next, waiting, switch, withdraw, unavailable
    text: str  # one line for the plan and the summary
    config: Config | None = field(default=None, repr=False)
    store: Path | None = None
    publish: set[str] = field(default_factory=set)  # must be published before the switch
    ready: set[str] = field(default_factory=set)  # switching keys: visible for `wait` already
    withdraw: set[str] = field(default_factory=set)  # our records, once no longer served
    new_next: list[pki.Material] = field(default_factory=list, repr=False)  # to the store
    missing: set[str] = field(default_factory=set)  # in publish but not yet at the server
    untracked: set[str] = field(default_factory=set)  # visible, but not yet in dane.json
    switching: set[str] = field(default_factory=set)  # new keys going live this run
    after: dict[str, str] = field(default_factory=dict)  # kind -> digest served after the run
    served_before: dict[str, str] = field(default_factory=dict)  # kind -> digest served now
    error: str = ""
    go_live_at: str = ""

    @property
    def acts_before(self) -> bool:
        return bool(self.error or self.new_next or self.missing or self.untracked)

    @property
    def acts_after(self) -> bool:
        return bool(self.withdraw or self.switching or self.missing)

    def view(self) -> dict:
        return {
            "stage": self.stage,
            "text": self.text,
            "name": self.name,
            "go_live_at": self.go_live_at,
        }


# --- prepare: the plan of one host (reads DNS and the store, writes nothing) --------------


def rollover(s, host: str, facts, decision, material: list[pki.Material], ca, now: dt.datetime):
    """(material to serve this run, certificate decision, Rollover or None when DANE
    publishing is off). A key change whose record is not yet visible long enough is held
    back: the host keeps its current key and the new one waits in the store as next key."""
    cfg = config(s)
    if cfg is None:
        return material, decision, None
    store, name = Path(s.pfs_store), tlsa_name(s.myhostname)
    ro = Rollover(host, name, "", "", cfg, store)
    material = _with_next(s, store, host, decision, material, ca, now)
    served_now = served_keys(facts)
    ro.served_before = served_now
    after = _after_keys(facts, decision, material)
    new = set(after.values()) - set(served_now.values())
    try:
        published, seen_ttl = lookup(cfg, name)
    except DaneError as e:
        ro.stage, ro.error = "unavailable", f"{e}; the current key stays until it answers"
        ro.text = ro.error
        if new:
            material, decision, _ = _hold(s, store, host, facts, decision, material, new)
        return material, decision, ro
    since = load_state(store, host)
    wait = cfg.wait_for(seen_ttl)
    ok, at = may_go_live(new, published, since, wait, now, set(served_now.values()))
    nexts = {m.spki_sha256 for m in load_next(store, host).values()} - set(after.values())
    if ok:
        ro.switching = new
        ro.ready = new & published
        ro.publish = set(after.values()) | nexts
    else:
        material, decision, ro.new_next = _hold(s, store, host, facts, decision, material, new)
        ro.publish = set(served_now.values()) | new | nexts
    ro.after = after if ok else served_now
    ro.withdraw = (set(since) & published) - ro.publish
    ro.missing = ro.publish - published
    ro.untracked = (ro.publish & published) - set(since)
    ro.go_live_at = f"{at:%Y-%m-%d %H:%M:%S} UTC" if at and not ok else ""
    ro.stage, ro.text = _stage(ro, new, ok, published, wait, cfg)
    return material, decision, ro


def _kinds(digests: set[str], keys: dict[str, str]) -> str:
    return ", ".join(sorted(k for k, d in keys.items() if d in digests)) or "new"


def _stage(
    ro: Rollover, new: set[str], ok: bool, published: set[str], wait: int, cfg
) -> tuple[str, str]:
    where = f"{ro.name} at {_where(cfg)}"
    if new and ok and published & set(ro.served_before.values()):
        return "switch", (
            f"next key goes live now (its record visible for {wait} s or more); "
            f"then the served keys are checked at {where} and the old records withdrawn"
        )
    if new and ok:
        return "publish", (
            f"{where} has no TLSA 3 1 1 record of a key served now, so no DANE sender "
            "depends on this host yet: the new keys' records are published, then the keys go live"
        )
    if new and ro.go_live_at:
        return "waiting", (
            f"next key's record is visible at {where}; it goes live on a run after "
            f"{ro.go_live_at} ({wait} s after it became visible); the current key stays"
        )
    if new:
        return "next", (
            f"next key: its record is published now beside the current one at {where}; "
            f"the key goes live on a run at least {wait} s after it is visible; the current key stays"
        )
    if ro.missing:
        return "publish", f"publishing the served keys' records at {where}"
    if ro.withdraw:
        return (
            "withdraw",
            f"withdrawing {len(ro.withdraw)} record(s) of keys no longer served at {where}",
        )
    return "published", f"the served keys' records are published at {where}"


def _after_keys(facts, decision, material: list[pki.Material]) -> dict[str, str]:
    if material:
        return {m.kind: m.spki_sha256 for m in material}
    return served_keys(facts, decision.files) if decision.files else served_keys(facts)


def _with_next(s, store, host, decision, material, ca, now) -> list[pki.Material]:
    """A new key due this run is the store's next key when there is one (its record may
    be published already), with a fresh certificate (a placeholder for acme) on it."""
    nexts = load_next(store, host)
    names = [s.myhostname, *s.tls_cert_names]
    out = []
    for m in material:
        nxt = nexts.get(m.kind)
        if m.generated_now and nxt is not None:
            acme = decision.source == "acme"
            fresh = pki.generate(
                m.kind,
                names,
                1 if acme else s.tls_cert_days,
                now,
                ca if decision.source == "ca" else None,
                key_pem=nxt.key_pem,
            )
            m = replace(fresh, replaces=m.replaces)
        out.append(m)
    return out


def _hold(s, store, host, facts, decision, material, new: set[str]):
    """Keep serving the current keys: the store's current material where it is what the
    host serves, else the host's configured files in place. Returns (material, decision,
    new keys for the store's next/)."""
    from .plan import CertDecision

    served = served_keys(facts)
    next_digests = {m.spki_sha256 for m in load_next(store, host).values()}
    fresh = [m for m in material if m.generated_now and m.spki_sha256 in new - next_digests]
    kept = []
    for m in material:
        cur = stored_current(store, host, m.kind) if m.spki_sha256 in new else m
        if cur is None or cur.spki_sha256 != served.get(m.kind):
            break
        kept.append(cur)
    else:
        if material:
            return kept, decision, fresh
    files = _configured_files(facts)
    if not files:
        return material, decision, fresh  # nothing served: nothing to hold on to
    expires = (
        min(
            f"{x509.load_pem_x509_certificate(facts.file(p.strip()).certs_pem.encode()).not_valid_after_utc:%Y-%m-%d}"
            for v in files.values()
            for p in v.split(",")
            if facts.file(p.strip()).certs_pem
        )
        if any(facts.file(p.strip()).certs_pem for v in files.values() for p in v.split(","))
        else ""
    )
    reason = (
        f"kept in place: the new key goes live once its DANE record has been visible long enough "
        f"({decision.reason})"
    )
    if decision.reason.startswith("managed by postfix-pfs"):
        reason = f"managed by postfix-pfs in {s.tls_dir}; {reason}"
    return [], CertDecision("existing", reason, files, expires), fresh


def _configured_files(facts) -> dict[str, str]:
    from .plan import SERVER_FILE_PARAMS

    files = {p: facts.postconf_n[p] for p in SERVER_FILE_PARAMS if facts.postconf_n.get(p)}
    if "smtpd_tls_chain_files" in files:
        return {"smtpd_tls_chain_files": files["smtpd_tls_chain_files"]}
    return files


# --- execution ----------------------------------------------------------------------------


def before(ro: Rollover, now: dt.datetime) -> None:
    """Before anything is uploaded: next keys to the store, missing records published and
    visible at the authoritative server; keys switching now must have been visible before."""
    if ro.error:
        raise DaneError(ro.error)
    if ro.new_next:
        save_next(ro.store, ro.host, ro.new_next)
    present, _ = lookup(ro.config, ro.name)
    gone = ro.ready - present
    missing = ro.publish - present
    if missing:
        update(ro.config, ro.name, add=missing)
        present, _ = lookup(ro.config, ro.name)
    if ro.publish - present:
        raise DaneError(
            f"DANE: {len(ro.publish - present)} record(s) not visible at {ro.name} on "
            f"{_where(ro.config)} after the update"
        )
    since = load_state(ro.store, ro.host)
    for d in ro.publish:
        since[d] = now if d in gone else since.get(d, now)
    save_state(ro.store, ro.host, since)
    if gone:
        raise DaneError(
            f"DANE: the next key's record had vanished from {ro.name}; published again, it "
            "must be visible for the wait before the key goes live"
        )


def after(ro: Rollover, served: dict[str, str]) -> None:
    """After the switch: every served key has its record at the authoritative server (else
    DaneError); then our records of keys no longer served are withdrawn."""
    served = served or ro.after
    present, _ = lookup(ro.config, ro.name)
    lacking = sorted(f"{k} key (3 1 1 {d})" for k, d in served.items() if d not in present)
    if lacking:
        raise DaneError(
            f"DANE: the served {', '.join(lacking)} has no record at {ro.name} on "
            f"{_where(ro.config)}"
        )
    withdraw = (ro.withdraw & present) - set(served.values())
    if withdraw:
        update(ro.config, ro.name, delete=withdraw)
    since = load_state(ro.store, ro.host)
    save_state(ro.store, ro.host, {d: t for d, t in since.items() if d not in withdraw})
    drop_next(ro.store, ro.host, set(served.values()))


HELD = ("next", "waiting", "unavailable")  # stages in which a due key change waits


def reword(note: str, ro: Rollover) -> str:
    """A material note ('rsa certificate to be generated (why)') as what happens instead
    while the rollover holds the change back."""
    m = re.match(r"(rsa|ecdsa) certificate to be generated \((.*)\)$", note)
    if not m or ro.stage not in HELD:
        return note
    return f"{m.group(1)} key change due ({m.group(2)}): waits for its DANE record ({ro.stage})"


def reword_plan(lines: list[str]) -> list[str]:
    """The plan's by-hand advice on a changing TLSA record: this deploy publishes it."""
    return [
        line.replace("; publish _25._tcp.", "; published by this deploy: _25._tcp.").replace(
            " (keep both published across the switch)", ""
        )
        for line in lines
    ]
