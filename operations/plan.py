"""The plan: a pure function of (settings, facts, material) -> what to do on a host.

No I/O here (templates are read, nothing else), so every decision is covered by
table-driven unit tests: which certificate to serve, the main.cf content, the
master.cf edit, which files differ from what the host has, and the activation
(none / reload / restart / start).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import maincf, mastercf, pki
from .facts import HostFacts
from .settings import Settings

DH_DIR = Path(__file__).resolve().parent.parent / "templates" / "dh"


# How each init system starts/reloads/restarts Postfix; %s is the action.
INIT_COMMANDS = {
    "systemd": "systemctl %s postfix",
    "openrc": "rc-service postfix %s",
    "suse": "rcpostfix %s",
    "sysv": "/etc/init.d/postfix %s",
    "none": "postfix %s",
}


def init_command(init: str) -> str:
    return INIT_COMMANDS.get(init, INIT_COMMANDS["none"])


class PlanError(Exception):
    """A host cannot be planned; the message names host, key/file and reason."""


@dataclass(frozen=True)
class CertDecision:
    source: str  # "existing" or "generate"
    reason: str
    files: dict[str, str] = field(default_factory=dict)  # smtpd_tls_* param -> path (existing)
    expires: str = ""


@dataclass(frozen=True)
class HostFile:
    path: str
    content: bytes = field(repr=False)
    mode: str = "644"
    secret: bool = False

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass
class Plan:
    host: str
    cert: CertDecision
    files: list[HostFile]  # desired state of every managed file, in switch order
    changed: list[HostFile]  # the subset that differs from the host
    remove: list[str]  # stale files in tls_dir
    master_changed: bool
    inet_changed: bool
    activation: str  # none | reload | restart | start
    main_cf: str
    expected: dict[str, str] = field(default_factory=dict)  # key type -> served cert sha256
    notes: list[str] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)  # the new main.cf, name -> value

    @property
    def has_changes(self) -> bool:
        return bool(self.changed or self.remove) or self.activation != "none"


# --- certificate source ------------------------------------------------------------


def _configured_pair(facts: HostFacts) -> tuple[dict[str, str], str | None]:
    """The server cert/key the host has configured, or (files, why unusable)."""
    n = facts.postconf_n
    chain = n.get("smtpd_tls_chain_files", "").replace(",", " ").split()
    if chain:
        f = facts.file(chain[0])
        files = {"smtpd_tls_chain_files": ", ".join(chain)}
        return files, _pair_problem(f, f)
    cert, key = (
        n.get("smtpd_tls_cert_file", ""),
        n.get("smtpd_tls_key_file", "") or n.get("smtpd_tls_cert_file", ""),
    )
    if not cert:
        return {}, "no smtpd_tls_cert_file configured"
    files = {"smtpd_tls_cert_file": cert, "smtpd_tls_key_file": key}
    return files, _pair_problem(facts.file(cert), facts.file(key))


def _pair_problem(cert, key) -> str | None:
    if not cert.exists:
        return f"{cert.path} does not exist"
    if not key.exists:
        return f"{key.path} does not exist"
    if key.key_encrypted:
        return f"{key.path} is passphrase-protected (Postfix cannot read it unattended)"
    if not key.key_pub_sha256:
        return f"{key.path} holds no readable private key"
    if not cert.certs_pem:
        return f"{cert.path} holds no certificate"
    if key.key_pub_sha256 != cert.cert_pub_sha256:
        return f"{key.path} does not match the certificate in {cert.path}"
    return None


def choose_cert(s: Settings, facts: HostFacts, now: dt.datetime) -> CertDecision:
    if s.tls_cert_source == "generate":
        return CertDecision("generate", "tls_cert_source = generate")
    files, problem = _configured_pair(facts)
    tls_dir = s.tls_dir.rstrip("/") + "/"
    paths = [p.strip() for v in files.values() for p in v.split(",")]
    if paths and all(p.startswith(tls_dir) for p in paths):
        return CertDecision("generate", f"managed by postfix-pfs in {s.tls_dir}")
    expires = ""
    if problem is None:
        first = next(iter(files.values())).split(",")[0].strip()
        cert = x509.load_pem_x509_certificate(facts.file(first).certs_pem.encode())
        expires = f"{cert.not_valid_after_utc:%Y-%m-%d}"
        if cert.not_valid_after_utc <= now:
            problem = f"{first} expired on {expires}"
        elif s.myhostname.lower() not in pki.cert_names(cert):
            names = ", ".join(pki.cert_names(cert)) or "no names"
            problem = f"{first} names {names}, not {s.myhostname}"
            if s.tls_cert_source == "existing":
                return CertDecision(
                    "existing", f"kept as configured, but {problem}", files, expires
                )
    if problem is None:
        return CertDecision("existing", "configured certificate is valid", files, expires)
    if s.tls_cert_source == "existing":
        raise PlanError(f"{s.myhostname}: tls_cert_source = existing, but {problem}")
    return CertDecision("generate", problem)


# --- files and activation ------------------------------------------------------------------


def material_files(
    s: Settings, facts: HostFacts, material: list[pki.Material]
) -> tuple[list[HostFile], dict[str, str]]:
    """Host files for generated material and the smtpd_tls_* parameters pointing at them."""
    d = s.tls_dir.rstrip("/")
    files, chain, params = [], [], {}
    for m in material:
        stem = f"{d}/{m.kind}-{m.fingerprint[:12]}"  # new name per certificate: no mixed pair
        if facts.version >= (3, 4):
            files.append(HostFile(f"{stem}.pem", m.chain_pem, "600", secret=True))
            chain.append(f"{stem}.pem")
        else:
            files.append(HostFile(f"{stem}.key", m.key_pem, "600", secret=True))
            files.append(HostFile(f"{stem}.crt", m.cert_pem, "644"))
            prefix = "smtpd_tls_" if m.kind == "rsa" else "smtpd_tls_ec"
            params[f"{prefix}cert_file"] = f"{stem}.crt"
            params[f"{prefix}key_file"] = f"{stem}.key"
    if chain:
        params["smtpd_tls_chain_files"] = ", ".join(chain)
    return files, params


def expected_certs(
    cert: CertDecision, facts: HostFacts, material: list[pki.Material]
) -> dict[str, str]:
    """The certificate each key type must serve after this plan: kind -> sha256 (DER)."""
    if cert.source == "generate":
        return {m.kind: m.fingerprint for m in material}
    out = {}
    for param, paths in cert.files.items():
        if "key_file" in param:
            continue
        for path in paths.split(","):
            pem = facts.file(path.strip()).certs_pem
            if pem:
                c = x509.load_pem_x509_certificate(pem.encode())
                kind = "rsa" if isinstance(c.public_key(), rsa.RSAPublicKey) else "ecdsa"
                out[kind] = hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).hexdigest()
    return out


def _differs(f: HostFile, facts: HostFacts) -> bool:
    have = facts.file(f.path)
    return not have.exists or have.sha256 != f.sha256 or have.mode != f.mode or have.owner != "root"


def _norm(value: str) -> list[str]:
    return sorted(value.replace(",", " ").split())


def make(
    host: str,
    s: Settings,
    facts: HostFacts,
    cert: CertDecision,
    material: list[pki.Material],
    stages: set[str] | frozenset[str] = frozenset(("certificates", "maincf", "tlsmgr")),
) -> Plan:
    """The whole plan for one host. `stages` limits which files are managed:
    certificates (material and the main.cf that points at it), maincf, tlsmgr (master.cf)."""
    if not facts.installed:
        raise PlanError(f"{host}: Postfix is not installed (postconf not found)")
    unknown = [k for k in s.postfix_extra if k not in facts.postconf_d]
    if unknown:
        raise PlanError(
            f"{host}: postfix_extra: {', '.join(sorted(unknown))} unknown to this host's "
            f"Postfix {facts.postconf_d.get('mail_version', '?')}"
        )
    conf = facts.postconf_d.get("config_directory", "/etc/postfix")

    files: list[HostFile] = []
    if cert.source == "generate":
        files, server_files = material_files(s, facts, material)
    else:
        server_files = dict(cert.files)
    dh_file = None
    if maincf.needs_dh_file(facts):
        dh_file = f"{s.tls_dir.rstrip('/')}/{s.tls_dh_group}.pem"
        files.append(HostFile(dh_file, (DH_DIR / f"{s.tls_dh_group}.pem").read_bytes(), "644"))

    content = maincf.sections(s, facts, server_files, dh_file)
    main_text = maincf.render(content, host, facts.version)

    if "certificates" not in stages:
        files = []
    master_text = mastercf.enable_tlsmgr(facts.master_cf)
    master_changed = "tlsmgr" in stages and master_text != facts.master_cf
    if master_changed:
        files.append(HostFile(f"{conf}/master.cf", master_text.encode(), "644"))
    if stages & {"certificates", "maincf"}:
        files.append(
            HostFile(f"{conf}/main.cf", main_text.encode(), "644")
        )  # last: switches config

    changed = [f for f in files if _differs(f, facts)]
    wanted = {f.path for f in files} | {
        p.strip() for v in server_files.values() for p in v.split(",")
    }
    tls_dir = s.tls_dir.rstrip("/") + "/"
    remove = []
    if "certificates" in stages:
        remove = sorted(
            p
            for p, st in facts.files.items()
            if p.startswith(tls_dir) and st.exists and p not in wanted
        )

    new = dict(content["network"])
    current_if = facts.postconf_n.get(
        "inet_interfaces", facts.postconf_d.get("inet_interfaces", "all")
    )
    current_proto = facts.postconf_n.get(
        "inet_protocols", facts.postconf_d.get("inet_protocols", "all")
    )
    inet_changed = _norm(current_if) != _norm(new["inet_interfaces"]) or _norm(
        current_proto
    ) != _norm(new["inet_protocols"])
    if not facts.running:
        activation = "start"
    elif master_changed or (inet_changed and changed):
        activation = "restart"
    elif changed:
        activation = "reload"
    else:
        activation = "none"

    notes = []
    if "tlsmgr" not in stages and mastercf.tlsmgr_state(facts.master_cf) != "active":
        notes.append(
            "tlsmgr is not active in master.cf: STARTTLS will fail (and roll back) until deploys/tlsmgr.py runs"
        )
    if facts.postconf_n_warnings:
        notes.append(f"current postconf -n warns: {facts.postconf_n_warnings[0]}")
    expected = (
        expected_certs(cert, facts, material)
        if "certificates" in stages or cert.source == "existing"
        else {}
    )
    return Plan(
        host=host,
        cert=cert,
        files=files,
        changed=changed,
        remove=remove,
        master_changed=master_changed,
        inet_changed=inet_changed,
        activation=activation,
        main_cf=main_text,
        expected=expected,
        notes=notes,
        params={name: value for section in content.values() for name, value in section},
    )
