"""Verify: what TLS clients actually get from each listener, and whether the profile's
promise holds.

The handshakes are made on the host by `tls_check.sh` (the host's own openssl
against its own listeners), only when operations execute: by activate.sh after
a switch (which rolls back when the promise does not hold) and by the verify
operation of a run whose evidence is stale. Per listener: the best handshake
per key type (RSA, ECDSA: protocol, cipher, key exchange, served certificate),
then clients offering only TLS 1.0, only TLS 1.1, TLS 1.2, TLS 1.2 with only
RSA key exchange (kRSA, no forward secrecy), TLS 1.2 with only non-AEAD suites
(CBC/RC4/NULL with a SHA-1/SHA-2 MAC: what mozilla-intermediate refuses) and TLS 1.3.

Only the best path and the kRSA probe depend on the certificate: Postfix
applies its protocol settings to the whole TLS context, so a protocol is
refused for every key type alike, while kRSA needs an RSA certificate (with an
ECDSA certificate it cannot happen at all). The kRSA probe therefore belongs to
the RSA key type; the protocol probes to the listener.

A successful verification is recorded on the host (CONF/.pfs-evidence, root
only) with a digest of everything it depends on; a later run re-probes only
when that digest, the profile or its promise changed, when the record is older
than `verify_max_age_hours`, or when `verify_full` asks.
"""

from __future__ import annotations

import base64
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from . import pki
from .settings import canonical_profile

SCRIPT = Path(__file__).with_name("tls_check.sh").read_text()

PROBES = ("rsa", "ecdsa", "tls1", "tls1_1", "tls1_2", "tls1_2-krsa", "tls1_2-cbc", "tls1_3")
LABELS = {
    "rsa": "best RSA",
    "ecdsa": "best ECDSA",
    "tls1": "TLS 1.0",
    "tls1_1": "TLS 1.1",
    "tls1_2": "TLS 1.2",
    "tls1_2-krsa": "TLS 1.2 kRSA",
    "tls1_2-cbc": "TLS 1.2 non-AEAD",
    "tls1_3": "TLS 1.3",
}
PROTOCOLS = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")


# --- the promise of each profile ----------------------------------------------------


@dataclass(frozen=True)
class Promise:
    """What a profile promises, as probes (see PROBES) a listener must pass.

    refuse: must not be accepted; accept_any: at least one must be accepted;
    fs: when accepted, must have forward secrecy. floor/exclude: what master.cf
    `-o` overrides may not go below (None/empty: the profile sets nothing there).
    """

    refuse: tuple[str, ...] = ()
    accept_any: tuple[str, ...] = ()
    fs: tuple[str, ...] = ("rsa", "ecdsa")
    floor: str | None = None
    exclude: tuple[str, ...] = ()
    text: str = ""

    def spec(self) -> str:
        """The promise for tls_check.sh (pfs_judge), e.g. refuse=tls1,tls1_1;fs=rsa;accept=tls1_3."""
        return f"refuse={','.join(self.refuse)};fs={','.join(self.fs)};accept={','.join(self.accept_any)}"


# One row per profile (settings.PROFILES); a new profile adds a row.
_FS_ONLY = Promise(
    refuse=("tls1", "tls1_1", "tls1_2-krsa"),
    accept_any=("tls1_3", "tls1_2"),
    fs=("rsa", "ecdsa", "tls1_2", "tls1_2-cbc", "tls1_3"),
    floor="TLSv1.2",
    exclude=("kRSA", "aNULL"),
    text="refuses TLS 1.0, TLS 1.1 and RSA key exchange; TLS 1.2 and 1.3 only with forward secrecy",
)
PROMISES: dict[str, Promise] = {
    "fs-only": _FS_ONLY,
    "mozilla-intermediate": Promise(
        refuse=("tls1", "tls1_1", "tls1_2-krsa", "tls1_2-cbc"),
        accept_any=("tls1_3", "tls1_2"),
        fs=("rsa", "ecdsa", "tls1_2", "tls1_3"),
        floor="TLSv1.2",
        exclude=("kRSA", "aNULL"),
        text="refuses TLS 1.0, TLS 1.1, RSA key exchange and TLS 1.2 without AEAD; "
        "TLS 1.2 and 1.3 only with forward secrecy",
    ),
    "tls13-only": Promise(
        refuse=("tls1", "tls1_1", "tls1_2", "tls1_2-krsa", "tls1_2-cbc"),
        accept_any=("tls1_3",),
        fs=("rsa", "ecdsa", "tls1_3"),
        floor="TLSv1.3",
        text="TLS 1.3 only",
    ),
    "postfix-defaults": Promise(
        fs=("rsa", "ecdsa"),
        text="Postfix defaults; a modern client gets forward secrecy",
    ),
    # the admin's own TLS values (postfix_extra over the protected set): only the least
    "custom": Promise(
        fs=("rsa", "ecdsa"),
        text="the admin's own TLS settings; a modern client gets forward secrecy",
    ),
}


def promise(profile: str) -> Promise:
    """The profile's promise (a deprecated name means its profile); a profile without a row
    gets the least every profile promises."""
    return PROMISES.get(canonical_profile(profile), PROMISES["postfix-defaults"])


# --- results ---------------------------------------------------------------------------


@dataclass
class Probe:
    listener: str
    probe: str
    status: str  # accepted | refused | untestable | error
    proto: str = ""
    cipher: str = ""
    group: str = ""
    fs: bool | None = None
    fingerprint: str = ""
    detail: str = ""


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)  # the promise does not hold
    untested: list[str] = field(default_factory=list)  # this openssl could not offer it

    @property
    def ok(self) -> bool:
        return not self.problems


def judge_policy(profile: str, results: dict[str, Probe]) -> Verdict:
    """One listener's probe results (probe name -> Probe) against the profile's promise.
    Mirrors pfs_judge in tls_check.sh (which decides rollbacks on the host)."""
    pr, v = promise(profile), Verdict()
    for name in PROBES:
        r = results.get(name)
        if r is None:
            continue
        if r.status == "untestable":
            v.untested.append(
                f"{LABELS[name]}: not testable ({r.detail or 'client cannot offer it'})"
            )
        elif r.status == "accepted" and name in pr.refuse:
            v.problems.append(
                f"accepts {LABELS[name]} ({r.proto} {r.cipher}), the profile refuses it"
            )
        elif r.status == "accepted" and name in pr.fs and not r.fs:
            v.problems.append(f"{LABELS[name]}: {r.proto} {r.cipher} has no forward secrecy")
        elif r.status == "error" and name in pr.refuse:
            v.problems.append(f"{LABELS[name]} could not be probed: {r.detail}")
    best = [results.get(k) for k in ("rsa", "ecdsa")]
    if not any(r and r.status == "accepted" for r in best):
        details = "; ".join(r.detail for r in best if r and r.detail)
        return Verdict(
            [f"no TLS handshake succeeded{': ' + details if details else ''}"], v.untested
        )
    wanted = [results.get(k) for k in pr.accept_any]
    if wanted and not any(r and r.status == "accepted" for r in wanted):
        if any(r is None or r.status != "untestable" for r in wanted):
            v.problems.append(f"accepts none of {', '.join(LABELS[k] for k in pr.accept_any)}")
    return v


def judge_certs(results: dict[str, Probe], expected: dict[str, str]) -> list[str]:
    """The deployed certificate per key type (kind -> sha256) is what the best path serves."""
    problems = []
    served = {r.fingerprint for k, r in results.items() if k in ("rsa", "ecdsa") and r.fingerprint}
    for kind, fp in sorted(expected.items()):
        r = results.get(kind)
        if r is None or r.status != "accepted":
            problems.append(f"the deployed {kind} certificate is not served")
        elif r.fingerprint != fp and fp not in served:
            problems.append(
                f"{kind}: serves certificate {r.fingerprint[:16]}, not the deployed {fp[:16]}"
            )
    return problems


def fs_only(profile: str, results: dict[str, Probe], kind: str) -> str:
    """yes / no / ? : no probe of this key type (or of the listener) got a suite without FS."""
    relevant = [results.get(kind), *(results.get(p) for p in ("tls1", "tls1_1", "tls1_2"))]
    if kind == "rsa":
        relevant.append(results.get("tls1_2-krsa"))
    if any(r and r.status == "accepted" and not r.fs for r in relevant):
        return "no"
    best = results.get(kind)
    krsa = results.get("tls1_2-krsa")
    if best is None or best.status != "accepted":
        return "?"
    if kind == "rsa" and (krsa is None or krsa.status not in ("refused",)):
        return "?"
    return "yes"


# --- protocol floor of a master.cf -o override ----------------------------------------


def protocol_floor(value: str) -> str:
    """The lowest protocol a Postfix protocol list allows: '>=TLSv1.2', '!SSLv2, !TLSv1',
    'TLSv1.2 TLSv1.3', '<=TLSv1.2' (empty: Postfix's default, TLSv1)."""
    tokens = [t for t in re.split(r"[\s,:]+", value.strip()) if t]
    allowed = list(PROTOCOLS)
    included = []
    for t in tokens:
        name = t.lstrip("!<>=")
        if name not in PROTOCOLS:
            continue
        i = PROTOCOLS.index(name)
        if t.startswith(">="):
            allowed = [p for p in allowed if PROTOCOLS.index(p) >= i]
        elif t.startswith("<="):
            allowed = [p for p in allowed if PROTOCOLS.index(p) <= i]
        elif t.startswith("!"):
            allowed = [p for p in allowed if p != name]
        else:
            included.append(name)
    if included:
        allowed = [p for p in allowed if p in included]
    if not tokens:
        allowed = [p for p in allowed if PROTOCOLS.index(p) >= PROTOCOLS.index("TLSv1")]
    return allowed[0] if allowed else "TLSv1.3"


CIPHERLISTS = ("tls_high_cipherlist", "tls_medium_cipherlist", "tls_low_cipherlist")
CIPHERLISTS += ("tls_export_cipherlist", "tls_null_cipherlist")


def weakens(param: str, value: str, profile: str, private: bool) -> str | None:
    """Why an `-o param=value` on an smtpd service breaks the profile (None: it does not).

    The deploy removes such overrides from master.cf (operations/mastercf.py)."""
    if param == "smtpd_tls_security_level":
        return None if private or value != "none" else "TLS switched off on a public listener"
    pr = promise(profile)
    if pr.floor is None:
        return None  # compat: the profile sets nothing an override could weaken
    if param in ("smtpd_tls_protocols", "smtpd_tls_mandatory_protocols"):
        floor = protocol_floor(value)
        if PROTOCOLS.index(floor) < PROTOCOLS.index(pr.floor):
            return f"allows {floor}, the {profile} profile nothing below {pr.floor}"
    elif param in ("smtpd_tls_exclude_ciphers", "smtpd_tls_mandatory_exclude_ciphers"):
        have = set(re.split(r"[\s,:]+", value.strip()))
        missing = [c for c in pr.exclude if c not in have]
        if missing and param == "smtpd_tls_exclude_ciphers":
            return f"drops the exclusion of {', '.join(missing)}"
    elif param in ("smtpd_tls_ciphers", "smtpd_tls_mandatory_ciphers"):
        if value.strip().lower() not in ("medium", "high"):
            return f"cipher grade {value or '(empty)'} is below medium"
    elif param in CIPHERLISTS:
        return "replaces an OpenSSL cipher list the profile relies on"
    return None


# --- parsing tls_check.sh output and the host's record -------------------------------


@dataclass
class Handshake:
    """The best handshake of one key type on one listener, with the served certificate."""

    kind: str  # the key type asked for: rsa or ecdsa
    proto: str = ""
    cipher: str = ""
    group: str = ""
    fingerprint: str = ""  # sha256 of the served certificate (DER)
    subject: str = ""
    names: list[str] = field(default_factory=list)
    expires: str = ""
    key_type: str = ""
    tlsa: str = ""  # DANE 3 1 1: sha256 of the served public key
    error: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.proto)

    @property
    def forward_secret(self) -> bool:
        # TLS 1.3 key exchange is always ephemeral; before it only with a temp key
        return self.proto == "TLSv1.3" or bool(self.group)

    def to_dict(self) -> dict:
        return {**asdict(self), "forward_secret": self.forward_secret}


@dataclass
class Evidence:
    """Probe results per listener, from tls_check.sh output or the host's record."""

    digest: str = ""  # the record's digest (what the evidence depended on)
    current: str = ""  # the facts command's digest of the host as it is now
    now: int = 0  # the host's clock when the facts were read
    profile: str = ""
    promise: str = ""
    time: int = 0  # when it was proven (host clock, epoch seconds)
    listeners: dict[str, dict[str, str]] = field(default_factory=dict)
    probes: dict[str, dict[str, Probe]] = field(default_factory=dict)  # listener -> probe -> result
    certs: dict[str, x509.Certificate] = field(default_factory=dict)  # sha256 -> certificate

    def handshakes(self, listener: str | None = None) -> dict[str, Handshake]:
        """The best handshakes (rsa, ecdsa) of a listener (default: the first)."""
        name = listener or next(iter(self.probes), None)
        out = {}
        for kind in ("rsa", "ecdsa"):
            r = self.probes.get(name or "", {}).get(kind)
            if r is None:
                continue
            h = Handshake(kind, r.proto, r.cipher, r.group, error="" if r.proto else r.detail)
            if r.fingerprint in self.certs:
                for k, v in describe(self.certs[r.fingerprint]).items():
                    setattr(h, k, v)
            out[kind] = h
        return out


def describe(cert: x509.Certificate) -> dict:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key_type = f"RSA {key.key_size}"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key_type = f"ECDSA {key.curve.name}"
    else:
        key_type = type(key).__name__
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    return {
        "fingerprint": pki.cert_sha256(cert),
        "subject": cert.subject.rfc4514_string(),
        "names": names,
        "expires": f"{cert.not_valid_after_utc:%Y-%m-%d}",
        "key_type": key_type,
        "tlsa": pki.spki_sha256(cert),
    }


def _probe_line(ev: Evidence, f: list[str]) -> None:
    f += [""] * (10 - len(f))
    fs = {"yes": True, "no": False}.get(f[7])
    r = Probe(f[1], f[2], f[3], f[4], f[5], f[6], fs, f[8], f[9])
    ev.probes.setdefault(r.listener, {})[r.probe] = r


def parse_evidence(lines: list[str]) -> Evidence:
    """tls_check.sh output or the .pfs-evidence record (possibly inside other output)."""
    ev = Evidence()
    for line in lines:
        line = line.strip()
        key, sep, value = line.partition("=")
        if line.startswith("@probe|"):
            _probe_line(ev, line.split("|"))
        elif line.startswith("@listener|"):
            f = (line.split("|") + [""] * 6)[:6]
            ev.listeners[f[1]] = {"cert": f[2], "host": f[3], "port": f[4], "mode": f[5]}
            ev.probes.setdefault(f[1], {})
        elif line.startswith("@cert|"):
            _, fp, b64 = (line.split("|") + ["", ""])[:3]
            try:
                ev.certs[fp] = x509.load_der_x509_certificate(base64.b64decode(b64))
            except ValueError:
                continue
        elif sep and key in ("digest", "current", "profile", "promise"):
            setattr(ev, key, value)
        elif sep and key in ("time", "now") and value.isdigit():
            setattr(ev, key, int(value))
    return ev


def parse(lines: list[str]) -> dict[str, Handshake]:
    """tls_check.sh output -> the best handshakes of the first listener, by key type."""
    return parse_evidence(lines).handshakes()


def stale_reason(ev: Evidence, profile: str, max_age_hours: int, full: bool = False) -> str | None:
    """Why the recorded evidence no longer proves the policy (None: it still does)."""
    if full:
        return "verify_full is set"
    if not ev.digest or not ev.probes:
        return "no verification recorded on the host yet"
    if ev.digest != ev.current:
        return "the configuration changed since it was proven"
    if canonical_profile(ev.profile) != canonical_profile(profile):
        return f"the profile changed ({ev.profile} -> {profile})"
    if ev.promise != promise(profile).spec():
        return f"the {profile} profile's promise changed"
    if ev.now - ev.time >= max_age_hours * 3600:
        return f"proven {age_text(ev.now - ev.time)} ago (verify_max_age_hours = {max_age_hours})"
    return None


def age_text(seconds: int) -> str:
    seconds = max(seconds, 0)
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def judge(handshakes: dict[str, Handshake], expected: dict[str, str]) -> list[str]:
    """Problems with what is served; expected maps key type -> certificate fingerprint."""
    problems = []
    if not any(h.ok for h in handshakes.values()):
        errors = "; ".join(h.error for h in handshakes.values() if h.error)
        return [f"no STARTTLS handshake succeeded{': ' + errors if errors else ''}"]
    for h in handshakes.values():
        if h.ok and not h.forward_secret:
            problems.append(f"{h.kind}: {h.proto} {h.cipher} has no forward secrecy")
    served = {h.fingerprint for h in handshakes.values() if h.ok}
    for kind, fp in expected.items():
        h = handshakes.get(kind)
        if h is None or not h.ok:
            problems.append(f"{kind}: the deployed {kind} certificate is not served")
        elif h.fingerprint != fp and fp not in served:
            problems.append(
                f"{kind}: serves certificate {h.fingerprint[:16]}, not the deployed {fp[:16]}"
            )
    return problems


# --- what the report shows -------------------------------------------------------------


def listener_report(profile: str, ev: Evidence, name: str, expected: dict[str, str]) -> dict:
    """One listener's evidence as the report shows it: offered protocols accepted /
    refused / not testable, FS-only per key type, problems."""
    results = ev.probes.get(name, {})
    verdict = judge_policy(profile, results)
    if ev.listeners.get(name, {}).get("cert") == "yes":
        verdict.problems += judge_certs(results, expected)
    words = {"untestable": "not testable"}
    return {
        "address": ":".join(
            x for x in (ev.listeners.get(name, {}).get(k, "") for k in ("host", "port")) if x
        ),
        "protocols": {
            LABELS[p]: words.get(results[p].status, results[p].status)
            + (
                f" ({results[p].proto} {results[p].cipher})"
                if results[p].status == "accepted"
                else ""
            )
            for p in PROBES[2:]
            if p in results
        },
        "key_types": {
            k: {
                "best": f"{results[k].proto} {results[k].cipher} {results[k].group or 'no-ephemeral-key'}"
                if results[k].status == "accepted"
                else words.get(results[k].status, results[k].status),
                "fs_only": fs_only(profile, results, k),
            }
            for k in ("rsa", "ecdsa")
            if k in results
        },
        "problems": verdict.problems,
        "untested": verdict.untested,
    }


def short_line(view: dict) -> str:
    """'TLS 1.0 refused, ..., TLS 1.3 accepted; FS-only rsa yes ecdsa yes'."""
    protos = ", ".join(f"{k} {v.split(' (')[0]}" for k, v in view["protocols"].items())
    fs = " ".join(f"{k} {v['fs_only']}" for k, v in view["key_types"].items())
    return f"{protos}; FS-only {fs}"
