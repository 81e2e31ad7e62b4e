"""The plan: a pure function of (settings, facts, material) -> what to do on a host.

No I/O here (templates are read, nothing else), so every decision is covered by
table-driven unit tests: which certificate to serve, the main.cf content, the
master.cf edit, which files differ from what the host has, and the activation
(none / reload / restart / start).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from . import adopt, maincf, masking, mastercf, pki, verify
from .facts import HostFacts
from .settings import Settings, contains, deprecation_notes

# RFC 7919 groups, package data (the repository's templates/dh/)
DH_DIR = resources.files(f"{__package__}.templates").joinpath("dh")


# How each init system starts/reloads/restarts Postfix; %s is the action.
INIT_COMMANDS = {
    "systemd": "systemctl %s postfix",
    "openrc": "rc-service postfix %s",
    "suse": "rcpostfix %s",
    "sysv": "/etc/init.d/postfix %s",
    "none": "postfix %s",
}


def init_command(init: str, systemd_instance: str = "") -> str:
    """The command for `init`. Where systemd runs Postfix as an instance unit under
    a oneshot postfix.service (Debian 12, Ubuntu: postfix@-), the instance is named
    too: systemctl reports a reload of postfix.service as done even when the
    instance's reload failed (measured on Debian 12); systemd merges the two
    units' jobs into one."""
    if init == "systemd" and systemd_instance:
        return f"systemctl %s {systemd_instance} postfix"
    return INIT_COMMANDS.get(init, INIT_COMMANDS["none"])


UPLOADED = ("generate", "files", "ca", "acme")  # sources whose material the deploy uploads


class PlanError(Exception):
    """A host cannot be planned; the message names host, key/file and reason."""


class HostStateError(PlanError):
    """What the host has makes it fail (an expired certificate it must serve): that host
    fails with the reason before anything changes; the other hosts carry on."""


@dataclass(frozen=True)
class CertDecision:
    source: str  # "existing" or "generate"
    reason: str
    files: dict[str, str] = field(default_factory=dict)  # smtpd_tls_* param -> path (existing)
    expires: str = ""
    found: bool = False  # found under tls_*_globs: copied into tls_dir, never used in place


@dataclass(frozen=True)
class HostFile:
    path: str
    content: bytes = field(repr=False)
    mode: str = "644"
    secret: bool = False
    compile: str = ""  # "postmap:TYPE" or "postalias:TYPE" for a lookup table source
    entries: int = 0  # a lookup table's number of entries
    key_from: str = ""  # a key on the host put before `content` (the public part) on the host
    key_pub: str = ""  # its public-key digest, checked on the host when it is copied

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def db_path(self) -> str:
        """The compiled table Postfix reads (empty for plain files)."""
        if not self.compile:
            return ""
        kind = self.compile.split(":", 1)[1]
        return self.path + {"lmdb": ".lmdb", "cdb": ".cdb"}.get(kind, ".db")


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
    kept: set[str] = field(default_factory=set)  # parameters whose value is the host's own
    dropped: list[tuple[str, str, str]] = field(default_factory=list)  # (name, old, reason)
    material: list[pki.Material] = field(default_factory=list, repr=False)  # to upload
    ca: pki.CA | None = field(default=None, repr=False)  # the fleet CA that signed it
    listeners: list[mastercf.Listener] = field(default_factory=list)  # after this plan
    overrides_removed: list[str] = field(default_factory=list)  # master.cf -o lines it drops
    # whose promise the proof after this plan holds the host to
    promise_profile: str = "postfix-defaults"
    new_digest_key: bytes = field(default=b"", repr=False)  # to save in the store at execution
    digest_key: bytes = field(default=b"", repr=False)  # the host's key for secret-file digests

    @property
    def probe_listeners(self) -> str:
        """The listeners to prove after this plan, for tls_check.sh."""
        return " ".join(li.spec() for li in self.listeners if not li.not_probed)

    rollover: object = field(default=None, repr=False)  # dane.Rollover: DANE records this run

    @property
    def has_changes(self) -> bool:
        return bool(self.changed or self.remove) or self.activation != "none"


# --- certificate source ------------------------------------------------------------


def _configured_pair(facts: HostFacts, side: str = "smtpd") -> tuple[dict[str, str], str | None]:
    """The cert/key a side (smtpd or smtp) has configured, as smtpd_tls_* parameters,
    and why it is unusable (None: usable)."""
    n = facts.postconf_n
    chain = n.get(f"{side}_tls_chain_files", "").replace(",", " ").split()
    if chain:
        f = facts.file(chain[0])
        return {"smtpd_tls_chain_files": ", ".join(chain)}, _pair_problem(f, f)
    cert = n.get(f"{side}_tls_cert_file", "")
    key = n.get(f"{side}_tls_key_file", "") or cert
    if not cert:
        return {}, f"no {side}_tls_cert_file configured"
    files = {"smtpd_tls_cert_file": cert, "smtpd_tls_key_file": key}
    return files, _pair_problem(facts.file(cert), facts.file(key))


def _found_pair(s: Settings, facts: HostFacts) -> tuple[dict[str, str], str | None]:
    """A matching cert/key pair among the files the tls_*_globs found on the host."""
    if not s.tls_cert_globs:
        return {}, "no tls_cert_globs set"
    found = [f for f in facts.files.values() if f.exists]
    certs = [f for f in found if f.cert_pub_sha256 and _matches_any(f.path, s.tls_cert_globs)]
    key_globs = s.tls_key_globs or s.tls_cert_globs
    keys = [f for f in found if f.key_pub_sha256 and _matches_any(f.path, key_globs)]

    for cert in certs:
        for key in keys:
            if key.key_pub_sha256 == cert.cert_pub_sha256:
                return {"smtpd_tls_cert_file": cert.path, "smtpd_tls_key_file": key.path}, None
    return {}, f"no matching certificate and key under {', '.join(s.tls_cert_globs)}"


def _matches_any(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) for p in patterns)


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


def _judge_cert(s: Settings, facts: HostFacts, files: dict[str, str], now):
    """(problem, expiry, name problem) of the certificate chain a usable pair serves."""
    first = next(iter(files.values())).split(",")[0].strip()
    certs = x509.load_pem_x509_certificates(facts.file(first).certs_pem.encode())
    expires = f"{certs[0].not_valid_after_utc:%Y-%m-%d}"
    if problem := pki.chain_problem(certs, now):
        return f"{first}: {problem}", expires, None
    left = (certs[0].not_valid_after_utc - now).days
    if s.tls_cert_source == "auto" and left < s.tls_reuse_min_days:  # replaced like a missing one
        return (
            f"{first} expires in {left} days (tls_reuse_min_days = {s.tls_reuse_min_days})",
            expires,
            None,
        )
    names = pki.cert_names(certs[0])
    if s.myhostname.lower() in names:
        return None, expires, None
    return None, expires, f"{first} names {', '.join(names) or 'no names'}, not {s.myhostname}"


SERVER_FILE_PARAMS = (
    "smtpd_tls_chain_files",
    "smtpd_tls_cert_file",
    "smtpd_tls_key_file",
    "smtpd_tls_eccert_file",
    "smtpd_tls_eckey_file",
)


def _managed_files(s: Settings, facts: HostFacts) -> dict[str, str]:
    """The server's configured files, when every one of them is in tls_dir (deployed here)."""
    files = {p: facts.postconf_n[p] for p in SERVER_FILE_PARAMS if facts.postconf_n.get(p)}
    if "smtpd_tls_chain_files" in files:
        files = {"smtpd_tls_chain_files": files["smtpd_tls_chain_files"]}
    tls_dir = s.tls_dir.rstrip("/") + "/"
    paths = [p.strip() for v in files.values() for p in v.split(",") if p.strip()]
    return files if paths and all(p.startswith(tls_dir) for p in paths) else {}


def keep_in_place(
    s: Settings, facts: HostFacts, decision: CertDecision, now: dt.datetime
) -> CertDecision | None:
    """Key continuity: the store has nothing for this host (a fresh clone, a lost laptop),
    but the host serves material this deploy made. Keep it while it is valid and outside
    the renewal window (None: renew as usual)."""
    if not decision.files:
        return None
    names = [s.myhostname, *s.tls_cert_names]
    expires = []
    for param, value in decision.files.items():
        if "key_file" in param:
            continue
        for path in (p.strip() for p in value.split(",")):
            pem = facts.file(path).certs_pem
            if not pem:
                return None
            certs = x509.load_pem_x509_certificates(pem.encode())
            if pki.chain_problem(certs, now) or pki.needs_renewal(
                certs[0], names, now, s.tls_renew_days
            ):
                return None
            expires.append(f"{certs[0].not_valid_after_utc:%Y-%m-%d}")
    reason = (
        f"managed by postfix-pfs in {s.tls_dir}; kept in place: the key store "
        f"{s.pfs_store} has no copy of this host's keys"
    )
    return CertDecision("existing", reason, dict(decision.files), min(expires))


FOUND = "found under tls_cert_globs"


def _found_decision(s: Settings, facts: HostFacts, now) -> CertDecision | None:
    """A valid pair under the globs naming the host: copied into tls_dir (also over
    material the deploy made itself, so a new pair there is picked up)."""
    files, problem = _found_pair(s, facts)
    if problem is None:
        problem, expires, name_problem = _judge_cert(s, facts, files, now)
        if problem is None and name_problem is None:
            return CertDecision("existing", f"{FOUND} certificate is valid", files, expires, True)
    return None


def choose_cert(s: Settings, facts: HostFacts, now: dt.datetime) -> CertDecision:
    """Which certificate the server serves. Order in auto: the configured smtpd pair,
    the smtp pair (lent to smtpd), a pair under tls_cert_globs, else generate."""
    managed = _managed_files(s, facts)
    if managed and s.tls_cert_source == "auto" and (found := _found_decision(s, facts, now)):
        return found
    if managed and s.tls_cert_source != "files":
        source = s.tls_cert_source if s.tls_cert_source in ("ca", "acme") else "generate"
        return CertDecision(source, f"managed by postfix-pfs in {s.tls_dir}", managed)
    if s.tls_cert_source in ("generate", "files", "ca", "acme"):
        return CertDecision(s.tls_cert_source, f"tls_cert_source = {s.tls_cert_source}")
    files, problem = _configured_pair(facts)
    candidates = [("configured", files, problem)]
    if s.tls_cert_source == "auto":
        candidates.append(("lent from smtp_tls_*", *_configured_pair(facts, "smtp")))
        candidates.append((FOUND, *_found_pair(s, facts)))
    problems = []
    for label, files, problem in candidates:
        expires, name_problem = "", None
        if problem is None:
            problem, expires, name_problem = _judge_cert(s, facts, files, now)
        if problem is None and name_problem:
            if s.tls_cert_source == "existing":  # forced: keep it, but say so
                return CertDecision("existing", f"{label}, but {name_problem}", files, expires)
            problem = name_problem
        if problem is None:
            found = label == FOUND
            return CertDecision("existing", f"{label} certificate is valid", files, expires, found)
        problems.append(problem)
    if s.tls_cert_source == "existing":
        raise HostStateError(f"{s.myhostname}: tls_cert_source = existing, but {problems[0]}")
    return CertDecision("generate", problems[0])


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


def copied_files(
    s: Settings, facts: HostFacts, cert: CertDecision
) -> tuple[list[HostFile], dict[str, str]]:
    """A pair found under the globs, as deploy-managed files in tls_dir: the key is
    copied on the host (its bytes never leave it) into a root-only 0600 file named
    like the deploy's own material; the certificates come from the facts."""
    key = facts.file(cert.files["smtpd_tls_key_file"])
    pem = facts.file(cert.files["smtpd_tls_cert_file"]).certs_pem
    leaf = x509.load_pem_x509_certificate(pem.encode())
    kind = "rsa" if isinstance(leaf.public_key(), rsa.RSAPublicKey) else "ecdsa"
    stem = f"{s.tls_dir.rstrip('/')}/{kind}-{pki.cert_sha256(leaf)[:12]}"
    copy = {"key_from": key.path, "key_pub": key.key_pub_sha256}
    if facts.version >= (3, 4):
        chain = HostFile(f"{stem}.pem", pem.encode(), "600", secret=True, **copy)
        return [chain], {"smtpd_tls_chain_files": chain.path}
    prefix = "smtpd_tls_" if kind == "rsa" else "smtpd_tls_ec"
    files = [
        HostFile(f"{stem}.key", b"", "600", True, **copy),
        HostFile(f"{stem}.crt", pem.encode()),
    ]
    return files, {f"{prefix}key_file": files[0].path, f"{prefix}cert_file": files[1].path}


# files in tls_dir that the deploy made (generated, copied, fleet CA, DH group): the
# only ones its cleanup may remove
OWN_MATERIAL = re.compile(r"((rsa|ecdsa)-[0-9a-f]{12}\.(pem|key|crt)|fleet-ca\.pem|ffdhe\d+\.pem)")


def stale_material(s: Settings, facts: HostFacts, wanted: set[str]) -> list[str]:
    d = s.tls_dir.rstrip("/")
    return sorted(
        p
        for p, st in facts.files.items()
        if st.exists and p not in wanted and p.rpartition("/")[0] == d
        and OWN_MATERIAL.fullmatch(p.rpartition("/")[2])
    )  # fmt: skip


# postconf -d values the plan writes into main.cf or hands to commands on the host
HOST_NAMES = ("mail_owner", "setgid_group")
DOC_DIRS = ("manpage_directory", "sample_directory", "readme_directory", "html_directory")
POSTFIX_DIRS = (
    "config_directory", "queue_directory", "data_directory", "daemon_directory",
    "command_directory", "meta_directory", "shlib_directory",
)  # fmt: skip
_USER_DIRS = ("/home", "/tmp", "/var/tmp", "/dev/shm", "/run/user")


def host_value_problems(host: str, facts: HostFacts) -> list[str]:
    """Values from the host that do not look like a Postfix installation's own:
    refused, so nothing odd reaches main.cf or a command run as root."""
    d, problems = facts.postconf_d, []
    for name in (*maincf.PATH_PARAMS, "config_directory", "default_database_type"):
        value = d.get(name)
        if value is None or (name in DOC_DIRS and value == "no"):
            continue
        if name == "default_database_type" or name in HOST_NAMES:
            ok = re.fullmatch(r"[A-Za-z0-9._-]+", value)
        else:
            ok = re.fullmatch(r"/[A-Za-z0-9._/+-]*", value) and not any(
                contains(u, value) for u in _USER_DIRS
            )
        if not ok:
            problems.append(
                f"{host}: postconf -d {name} = {value!r} does not look like this host's Postfix; refused"
            )
    return problems


def dir_problems(host: str, s: Settings, facts: HostFacts) -> list[str]:
    """tls_dir and table_dir must not be, or contain, one of this host's Postfix directories."""
    problems = []
    for key in ("tls_dir", "table_dir"):
        mine = getattr(s, key)
        for name in POSTFIX_DIRS:
            theirs = facts.postconf_d.get(name, "")
            if theirs.startswith("/") and contains(mine, theirs):
                problems.append(
                    f"{host}: {key}: {mine} is or contains this host's {name} ({theirs}); use a directory of its own"
                )
    return problems


def table_files(s: Settings, facts: HostFacts) -> list[HostFile]:
    """Lookup tables from data, as sources compiled on the host (postmap/postalias)."""
    db = facts.postconf_d.get("default_database_type", "hash")
    paths = maincf.table_paths(s)
    out = []
    for name, entries in maincf.table_contents(s).items():
        sep = ": " if name == "aliases" else " "
        text = "# written by postfix-pfs from inventory data; edits are overwritten\n"
        text += "".join(f"{k}{sep}{v}\n" for k, v in sorted(entries.items()))
        tool = "postalias" if name == "aliases" else "postmap"
        secret = name == "sasl_passwd"
        mode = "600" if secret else "644"
        out.append(HostFile(paths[name], text.encode(), mode, secret, f"{tool}:{db}", len(entries)))
    return out


def expected_certs(
    cert: CertDecision, facts: HostFacts, material: list[pki.Material]
) -> dict[str, str]:
    """The certificate each key type must serve after this plan: kind -> sha256 (DER)."""
    if cert.source in UPLOADED:
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
                out[kind] = pki.cert_sha256(c)
    return out


def warning_notes(facts: HostFacts, changed: list[HostFile]) -> list[str]:
    """The host's current postconf -n warnings, judged as activate.sh judges them:
    in a file this run does not write, pre-existing (reported, not fatal); in a
    file it rewrites, the new file must not warn."""
    written = {f.path for f in changed}
    notes = []
    for line in facts.postconf_n_warnings:
        w = masking.mask_text(line.split("warning: ", 1)[-1])
        where = w.split(":", 1)[0]
        if where in written:
            notes.append(f"current warning, gone with the new {where.rsplit('/', 1)[-1]}: {w}")
        else:
            notes.append(
                f"pre-existing warning: {w} (reported, not fatal: this run does not write {where})"
            )
    return notes


DIGEST_KEY = ".pfs-digest-key"  # in config_directory; see facts.py


def keyed_digest(key: bytes, content: bytes) -> str:
    """What the facts command prints for a secret file: sha256(digest key + content)."""
    return hashlib.sha256(key + content).hexdigest()


def _differs(f: HostFile, facts: HostFacts, digest_key: bytes = b"") -> bool:
    have = facts.file(f.path)
    if not have.exists or have.mode != f.mode or have.owner != "root":
        return True
    if f.key_from:  # copied on the host (key checked then): named by and holding its certificate
        wrong_key = have.key_pub_sha256 not in ("", f.key_pub)  # tls_dir files: not inspected
        return wrong_key or have.certs_pem.encode() != f.content
    if f.secret:
        return have.keyed != keyed_digest(digest_key, f.content)
    return have.sha256 != f.sha256


def _norm(value: str) -> list[str]:
    return sorted(value.replace(",", " ").split())


def _main_cf(host: str, s: Settings, facts: HostFacts, *files) -> maincf.MainCf:
    """The rendered main.cf (maincf.build); one the host's Postfix cannot take is refused."""
    try:
        return maincf.build(host, s, facts, *files)
    except maincf.MainCfError as e:
        raise PlanError("\n  ".join(f"{host}: {line}" for line in str(e).splitlines())) from None


def make(
    host: str,
    s: Settings,
    facts: HostFacts,
    cert: CertDecision,
    material: list[pki.Material],
    stages: set[str] | frozenset[str] = frozenset(("certificates", "maincf", "tlsmgr")),
    ca_pem: bytes = b"",
    digest_key: bytes = b"",
) -> Plan:
    """The whole plan for one host. `stages` limits which files are managed:
    certificates (material and the main.cf that points at it), maincf, tlsmgr (master.cf)."""
    _check_plannable(host, s, facts)
    conf = facts.postconf_d.get("config_directory", "/etc/postfix")
    files, server_files, ca_file = _certificate_files(s, facts, cert, material, ca_pem)
    client_files = _client_files(facts)
    dh_file = _dh_file(s, facts, files)

    main = _main_cf(host, s, facts, server_files, dh_file, client_files, ca_file)
    main_text, params, kept = main.text, main.params, main.kept
    dropped = adopt.carry_over(s, facts, set(params))[1]
    if not s.allow_open_relay and (relay := adopt.open_relay_problem(params, facts.postconf_d)):
        raise PlanError(f"{host}: {relay}; refused (set allow_open_relay = True if intended)")

    master = _master_cf(s, facts, stages)
    files = _stage_files(s, facts, stages, conf, files, master, main_text, digest_key)
    changed = [
        f
        for f in files
        if _differs(f, facts, digest_key) or (f.compile and not facts.file(f.db_path).exists)
    ]
    remove = _stale(s, facts, stages, files, server_files, ca_file)
    network = params
    inet_changed = _inet_changed(facts, network)
    main_level = params.get("smtpd_tls_security_level", "may")
    return Plan(
        promise_profile=_promise_profile(s, facts, stages, conf, main_text),
        listeners=mastercf.listeners(
            master.text, network["inet_interfaces"].replace(",", " ").split(), main_level
        ),
        overrides_removed=master.overrides_removed,
        host=host,
        cert=cert,
        files=files,
        changed=changed,
        remove=remove,
        master_changed=master.changed,
        inet_changed=inet_changed,
        activation=_activation(facts, master.tlsmgr_changed, inet_changed, changed),
        main_cf=main_text,
        expected=_expected(cert, facts, material, stages),
        notes=_notes(s, facts, stages, changed),
        params=params,
        kept=kept,
        dropped=dropped,
    )


def _stale(s: Settings, facts: HostFacts, stages, files, server_files, ca_file) -> list[str]:
    """Files in tls_dir named like the deploy's material that nothing uses any more."""
    if "certificates" not in stages:
        return []
    wanted = (
        {f.path for f in files}
        | {ca_file}
        | {p.strip() for v in server_files.values() for p in v.split(",")}
    )
    return stale_material(s, facts, wanted)


def _check_plannable(host: str, s: Settings, facts: HostFacts) -> None:
    """Refuse a host the plan cannot be made for: no Postfix, postfix_extra naming
    parameters its Postfix does not know, unsafe host values or directories."""
    if not facts.installed:
        raise PlanError(f"{host}: Postfix is not installed (postconf not found)")
    unknown = [k for k in s.postfix_extra if k not in facts.postconf_d]
    if unknown:
        raise PlanError(
            f"{host}: postfix_extra: {', '.join(sorted(unknown))} unknown to this host's "
            f"Postfix {facts.postconf_d.get('mail_version', '?')}"
        )
    if problems := host_value_problems(host, facts) + dir_problems(host, s, facts):
        raise PlanError("\n  ".join(problems))


def _certificate_files(
    s: Settings, facts: HostFacts, cert: CertDecision, material: list[pki.Material], ca_pem: bytes
) -> tuple[list[HostFile], dict[str, str], str | None]:
    """The certificate files to put on the host, the smtpd_tls_* parameters that name
    the served ones, and the fleet CA file (None without one)."""
    files: list[HostFile] = []
    if cert.source in UPLOADED:
        files, server_files = material_files(s, facts, material)
    elif cert.found:
        files, server_files = copied_files(s, facts, cert)
    else:
        server_files = dict(cert.files)
    ca_file = None
    ca_path = f"{s.tls_dir.rstrip('/')}/fleet-ca.pem"
    if cert.source == "ca" and ca_pem:
        ca_file = ca_path
        files.append(HostFile(ca_file, ca_pem, "644"))
    elif s.tls_cert_source == "ca" and facts.file(ca_path).exists:
        ca_file = ca_path  # certificates kept in place: so is the CA that signed them
    return files, server_files, ca_file


def _client_files(facts: HostFacts) -> dict[str, str]:
    """The client's own certificate, if the admin configured a valid one: it stays."""
    client, problem = _configured_pair(facts, "smtp")
    if problem is not None:
        return {}
    return {k.replace("smtpd_", "smtp_", 1): v for k, v in client.items()}


def _dh_file(s: Settings, facts: HostFacts, files: list[HostFile]) -> str | None:
    """Where a Postfix that needs a DH parameter file gets the RFC 7919 group (appended
    to `files`); None where the built-in group is used."""
    if not maincf.needs_dh_file(facts):
        return None
    dh_file = f"{s.tls_dir.rstrip('/')}/{s.tls_dh_group}.pem"
    files.append(HostFile(dh_file, (DH_DIR / f"{s.tls_dh_group}.pem").read_bytes(), "644"))
    return dh_file


@dataclass
class _MasterCf:
    text: str  # master.cf after this plan
    tlsmgr_changed: bool
    changed: bool
    overrides_removed: list[str]


def _master_cf(s: Settings, facts: HostFacts, stages) -> _MasterCf:
    """The tlsmgr stage: tlsmgr active exactly once, and smtpd services' TLS -o
    overrides that weaken the profile dropped (the master.cf stage owns them)."""
    text = mastercf.enable_tlsmgr(facts.master_cf)
    tlsmgr_changed = "tlsmgr" in stages and text != facts.master_cf
    removed: list[str] = []
    if "tlsmgr" in stages:
        text, removed = mastercf.drop_overrides(
            text, lambda private, n, v: verify.weakens(n, v, s.tls_profile, private)
        )
    changed = "tlsmgr" in stages and text != facts.master_cf
    return _MasterCf(text, tlsmgr_changed, changed, removed)


def _stage_files(
    s: Settings,
    facts: HostFacts,
    stages,
    conf: str,
    cert_files: list[HostFile],
    master: _MasterCf,
    main_text: str,
    digest_key: bytes,
) -> list[HostFile]:
    """Every file the stages manage, in switch order: the digest key first (later runs
    compare secrets by it), tables, certificates, master.cf, main.cf last (it switches)."""
    files = list(cert_files) if "certificates" in stages else []
    if "maincf" in stages:
        files = table_files(s, facts) + files
    if master.changed:
        files.append(HostFile(f"{conf}/master.cf", master.text.encode(), "644"))
    if stages & {"certificates", "maincf"}:
        files.append(HostFile(f"{conf}/main.cf", main_text.encode(), "644"))
    if digest_key and any(f.secret for f in files):
        files.insert(0, HostFile(f"{conf}/{DIGEST_KEY}", digest_key, "600", secret=True))
    return files


def _inet_changed(facts: HostFacts, network: dict[str, str]) -> bool:
    """Do inet_interfaces or inet_protocols change (a reload does not apply them)?"""
    n, d = facts.postconf_n, facts.postconf_d
    current_if = n.get("inet_interfaces", d.get("inet_interfaces", "all"))
    current_proto = n.get("inet_protocols", d.get("inet_protocols", "all"))
    return _norm(current_if) != _norm(network["inet_interfaces"]) or _norm(current_proto) != _norm(
        network["inet_protocols"]
    )


def _activation(
    facts: HostFacts, tlsmgr_changed: bool, inet_changed: bool, changed: list[HostFile]
) -> str:
    """start (Postfix stopped), restart (master.cf's tlsmgr, listeners), reload (config
    or certificates) or none (nothing, or only tables: Postfix notices recompiled ones)."""
    if not facts.running:
        return "start"
    if tlsmgr_changed or (inet_changed and changed):
        return "restart"
    if [f for f in changed if not f.compile]:
        return "reload"
    return "none"


def _notes(s: Settings, facts: HostFacts, stages, changed: list[HostFile]) -> list[str]:
    notes = []
    if "tlsmgr" not in stages and mastercf.tlsmgr_state(facts.master_cf) != "active":
        notes.append(
            "tlsmgr is not active in master.cf: STARTTLS will fail (and roll back) until deploys/tlsmgr.py runs"
        )
    notes.extend(warning_notes(facts, changed))
    notes.extend(deprecation_notes(s))
    return notes


def _expected(
    cert: CertDecision, facts: HostFacts, material: list[pki.Material], stages
) -> dict[str, str]:
    if "certificates" in stages or cert.source == "existing":
        return expected_certs(cert, facts, material)
    return {}


def _promise_profile(s: Settings, facts: HostFacts, stages, conf: str, main_text: str) -> str:
    """The profile is in force when this run writes main.cf or the host already has
    ours; else (tlsmgr stage on a host not converged yet) only the least every profile
    promises."""
    main_sha = hashlib.sha256(main_text.encode()).hexdigest()
    in_force = bool(stages & {"certificates", "maincf"}) or (
        facts.file(f"{conf}/main.cf").sha256 == main_sha
    )
    return s.tls_profile if in_force else "postfix-defaults"
