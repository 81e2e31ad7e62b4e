"""The per-host pipeline shared by deploy.py and the single-stage deploys/.

settings -> facts (one remote command) -> plan (pure) -> material (controller)
-> stage (upload) -> activate (check, switch, reload, probe, roll back).

pyinfra prepares every host (in parallel greenlets) before it executes any
operation, so every problem found here stops the run with no host changed.
Problems of all hosts are collected and reported together.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pyinfra import host, logger, state
from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import ctx_host, ctx_state
from pyinfra.operations import python

from . import (
    acme,
    adopt,
    dane,
    expiry,
    host_ops,
    mastercf,
    pki,
    plan,
    plan_view,
    report,
    run,
    settings,
    verify,
)
from .facts import HostFacts, PostfixHost, record_command

STAGES = ("certificates", "maincf", "tlsmgr")


class InputError(PyinfraError):
    """Bad inventory data or a host that cannot be planned; nothing was changed."""


def is_dry() -> bool:
    """True while pyinfra only prepares (--dry, --json without -y, before a prompt is
    answered, the Python API before run_ops). Side effects wait for execution."""
    return not report.executed(state)


def current_run() -> run.Run:
    """This pyinfra run's shared state (one Run per pyinfra State, see run.py)."""
    return run.of(ctx_state.get())


def run_id() -> str:
    """One id per pyinfra run: names this run's staging directory on every host."""
    return current_run().id


def get_report() -> report.Report:
    """The run's report (one per pyinfra run), printed and written at exit."""
    r = current_run()
    if r.report is None:
        first = next(iter(all_settings().values()))
        r.report = report.Report(ctx_state.get(), r.id, Path(first.report_dir))
    return r.report


def all_settings() -> dict[str, settings.Settings]:
    """Settings of every targeted host, validated at once before anything else."""
    r = current_run()
    if r.settings is None:
        try:
            r.settings = settings.validate_inventory(state.inventory.get_active_hosts())
        except settings.SettingsError as e:
            raise InputError(
                "invalid inventory data, no host was changed:\n  " + "\n  ".join(e.problems)
            ) from None
    return r.settings


def host_settings() -> settings.Settings:
    """This host's validated settings; an entry point runs once per host and run: a second
    call (postfix_tls() twice, or two stages in one deploy file) would plan from the same
    facts twice and activate twice, so it stops the run before any host is changed."""
    r = current_run()
    if host.name in r.entered:
        raise InputError(
            f"{host.name}: postfix-pfs was called twice for this host in one deploy file; "
            "call postfix_tls() once (it runs every stage), no host was changed"
        )
    r.entered.add(host.name)
    return all_settings()[host.name]


def _host_done(problem: str | None) -> None:
    """Collect per-host planning problems; the last host to finish reports them all."""
    r = current_run()
    r.done += 1
    if problem:
        r.problems.append(problem)
    if r.problems and r.done >= len(_connected_hosts()):
        raise InputError("cannot plan, no host was changed:\n  " + "\n  ".join(sorted(r.problems)))


def _connected_hosts() -> list:
    """The hosts that run this deploy: targeted and reached (a host failing later still counts)."""
    return [h for h in state.inventory if state.is_host_in_limit(h) and h.connected]


def _facts_failed() -> None:
    """The facts command failed (pyinfra printed why): a failed row, the others go on."""
    rec = get_report().record(host.name)
    rec.failed, rec.action = True, "failed"
    rec.reason = "the facts command failed on this host (its output is printed above)"
    _host_done(None)


def facts_args(s: settings.Settings) -> dict:
    """The facts command's parameters (also the facts cache's: its script id covers them)."""
    return {
        "tls_dir": s.tls_dir,
        "table_dir": s.table_dir,
        "globs": " ".join(s.tls_cert_globs + s.tls_key_globs),
        "max_age": s.verify_max_age_hours * 3600,
        "full": s.verify_full,
    }


def get_facts(s: settings.Settings) -> HostFacts:
    """The one remote command of a no-change run. It makes no handshake and writes
    nothing: pyinfra also runs it when it only prepares (--dry, --json without -y, a
    declined prompt, the API). Its cache is written by the operations (cache_record)."""
    return host.get_fact(PostfixHost, **facts_args(s))


def cache_record(s: settings.Settings) -> str:
    """The command that writes the facts cache, run after a successful activation or proof."""
    return record_command(**facts_args(s))


def make_plan(s: settings.Settings, facts: HostFacts, stages=STAGES) -> plan.Plan:
    """Plan one host (raises PlanError / StoreError) and log what it decided."""
    now = dt.datetime.now(dt.UTC)
    if facts.uid != 0:
        raise plan.PlanError(
            f"{host.name}: must connect as root (or use --sudo); uid is {facts.uid}"
        )
    decision = plan.choose_cert(s, facts, now)
    stages, along = with_tlsmgr(stages, facts.master_cf)
    if decision.source in ("generate", "ca", "acme") and not pki.stored(
        Path(s.pfs_store), host.name
    ):
        # a fresh clone or a lost store: the host's working keys stay (key continuity)
        decision = plan.keep_in_place(s, facts, decision, now) or decision
    material, notes, ca, rollover = [], [], None, None
    if "certificates" in stages:
        material, notes, ca = _material(s, decision, now)
        material, decision, rollover = dane.rollover(
            s, host.name, facts, decision, material, ca, now
        )
        notes = [dane.reword(n, rollover) for n in notes] if rollover else notes
    ca_pem = ca.cert_pem if ca else b""
    key, new_key = pki.digest_key(Path(s.pfs_store), host.name)
    p = plan.make(
        host.name, s, facts, decision, material, stages=set(stages), ca_pem=ca_pem, digest_key=key
    )
    p.digest_key = key
    p.new_digest_key = key if new_key and any(f.secret for f in p.changed) else b""
    p.notes.extend(along + notes)
    p.material, p.ca = material, ca
    p.rollover = rollover if "certificates" in stages else None
    _record(s, facts, p, material)
    if p.cert.source == "acme":
        _acme_view(s, material)
    view = get_report().record(host.name).plan
    logger.info("\n".join("    " + line for line in plan_view.render(host.name, view)))
    for note in p.notes:
        logger.info(f"[{host.name}] note: {note}")
    return p


def with_tlsmgr(stages, master_cf: str) -> tuple[tuple[str, ...], list[str]]:
    """The certificates stage brings tlsmgr along where master.cf has none active:
    STARTTLS cannot work without it, so new certificates could never be verified
    (and would be rolled back). Returns the stages and a note saying so."""
    state = mastercf.tlsmgr_state(master_cf)
    if "certificates" not in stages or "tlsmgr" in stages or state == "active":
        return tuple(stages), []
    return (*stages, "tlsmgr"), [
        f"tlsmgr is {state} in master.cf and STARTTLS cannot work without it: "
        "brought along (master.cf: tlsmgr made active, Postfix restarted)"
    ]


def _material(s: settings.Settings, decision: plan.CertDecision, now: dt.datetime):
    """Keys and certificates on the controller for sources the deploy uploads."""
    store, names = Path(s.pfs_store), [s.myhostname, *s.tls_cert_names]
    if decision.source == "files":
        if not (s.tls_cert_file and s.tls_key_file):
            raise plan.PlanError(
                f"{host.name}: tls_cert_source = files needs tls_cert_file and tls_key_file"
            )
        m = pki.load_files(Path(s.tls_cert_file), Path(s.tls_key_file), now)
        notes = (
            []
            if s.myhostname in pki.cert_names(m.cert)
            else [f"warning: {s.tls_cert_file} does not name {s.myhostname}"]
        )
        return [m], notes, None
    if decision.source in ("generate", "ca"):
        ca, notes = _fleet_ca(store, now) if decision.source == "ca" else (None, [])
        material, more = pki.ensure(
            store, host.name, names, s.tls_cert_days, s.tls_renew_days, now, dry=True, ca=ca
        )
        return material, notes + more, ca
    if decision.source == "acme":
        material, notes = acme.prepare(
            store, host.name, names, s.tls_renew_days, s.acme_directory, now
        )
        return material, notes, None
    return [], [], None


def _acme_view(s: settings.Settings, material: list[pki.Material]) -> None:
    """The plan and summary say what the CA is asked for (certificates exist only later)."""
    rec = get_report().record(host.name)
    names = [s.myhostname, *s.tls_cert_names]
    acme.annotate(rec.plan, material, names, s.acme_directory)
    if acme.pending(material):
        rec.cert_expires = "(to be issued)"


def _apply_or_order(s, facts: HostFacts, p: plan.Plan, stages, executing: bool) -> None:
    """Stage and activate; with certificates still to be ordered from the ACME CA, an
    operation orders them at execution first (never while pyinfra only prepares)."""
    if p.cert.source != "acme" or not acme.pending(p.material):
        _apply(s, facts, p)
    elif executing:
        _acme_order_then_apply(s, facts, p, stages)
    else:
        python.call(
            keeping_deploy(_acme_order_then_apply),
            s,
            facts,
            p,
            stages,
            name="Order certificates from the ACME CA (dns-01), then stage and activate",
        )


def keeping_deploy(function: Callable) -> Callable:
    """`function` for python.call, run at execution inside the @deploy it was prepared
    in: its global arguments (_sudo=True, _sudo_user, _env, ...), name and data apply to
    the operations and facts it adds then. pyinfra restores a @deploy's context only
    while the deploy function runs (prepare time), so callbacks would run without it."""
    h = ctx_host.get()
    saved = (h.in_deploy, h.current_deploy_name, h.current_deploy_kwargs, h.current_deploy_data)

    @functools.wraps(function)
    def in_deploy(*args, **kwargs):
        with _deploy_context(ctx_host.get(), saved):
            return function(*args, **kwargs)

    return in_deploy


@contextlib.contextmanager
def _deploy_context(h, saved: tuple):
    """The host's @deploy context set to `saved` (not nested: a callback that adds a
    callback keeps one deploy name), restored afterwards."""
    keys = ("in_deploy", "current_deploy_name", "current_deploy_kwargs", "current_deploy_data")
    before = tuple(getattr(h, k) for k in keys)
    for k, v in zip(keys, saved, strict=True):
        setattr(h, k, v)
    try:
        yield
    finally:
        for k, v in zip(keys, before, strict=True):
            setattr(h, k, v)


def _acme_order_then_apply(s, facts: HostFacts, p: plan.Plan, stages) -> None:
    """At execution: the order; on success the keys and chains go to the store, the host
    is planned with them, staged and activated. On failure nothing changes on the host."""
    store, now = Path(s.pfs_store), dt.datetime.now(dt.UTC)
    rec = get_report().record(host.name)
    try:
        issued = acme.issue(s, store, acme.pending(p.material), now)
        acme.save(store, host.name, s.acme_directory, issued)
    except (acme.AcmeError, pki.StoreError) as e:
        rec.failed, rec.action, rec.reason = True, "failed", f"{e}; the current certificate stays"
        served = [h.expires for h in rec.before.values() if h.ok and h.expires]
        rec.cert_expires = min(served, default="")  # what the host keeps serving
        host_ops.fail(rec.reason, name="ACME order failed: nothing changed on this host")
        return
    for m in issued:
        logger.info(
            f"[{host.name}] acme: {m.kind} certificate issued, expires "
            f"{m.cert.not_valid_after_utc:%Y-%m-%d}, sha256 {m.fingerprint[:12]}"
        )
    by_kind = {m.kind: replace(m, generated_now=False) for m in issued}  # saved: not pending
    material = [by_kind.get(m.kind, m) for m in p.material]
    q = plan.make(
        host.name, s, facts, p.cert, material, stages=set(stages), digest_key=p.digest_key
    )
    q.notes, q.material, q.rollover = p.notes, material, p.rollover
    q.digest_key, q.new_digest_key = p.digest_key, p.new_digest_key  # saved with this upload
    _record(s, facts, q, material)
    _apply(s, facts, q)


def _fleet_ca(store: Path, now: dt.datetime) -> tuple[pki.CA, list[str]]:
    """One fleet CA per store and run: made in memory if the store has none, written to
    the store only when the run executes (_save_material)."""
    cas = current_run().cas
    if store not in cas:
        cas[store] = pki.ensure_ca(store, now, dry=True)
    return cas[store]


def _save_material(
    store: Path, name: str, material: list[pki.Material], ca, digest_key: bytes = b""
) -> None:
    """At execution, before anything is uploaded: new keys (and a new fleet CA, a new
    digest key) go to the controller's store, so the next run reuses what this one deploys."""
    if ca is not None:
        pki.save_ca(store, ca)
    pki.save(store, name, material)
    if digest_key:
        pki.save_digest_key(store, name, digest_key)


def _record(
    s: settings.Settings, facts: HostFacts, p: plan.Plan, material: list[pki.Material]
) -> None:
    rec = get_report().record(host.name)
    rec.postfix = facts.postconf_d.get("mail_version", "")
    rec.facts_cache = facts.facts_cache
    rec.profile = s.tls_profile
    rec.cert_source, rec.cert_reason = p.cert.source, p.cert.reason
    rec.cert_expires = (
        min(f"{m.cert.not_valid_after_utc:%Y-%m-%d}" for m in material)
        if material
        else p.cert.expires
    )
    _record_expiry(s, facts, p, rec)
    rec.planned_action = p.activation
    rec.changed_files = [f.path for f in p.changed]
    if p.cert.reason.startswith("managed by postfix-pfs"):  # deployed before: a difference is drift
        rec.drift = [
            f.path for f in p.changed if facts.file(f.path).exists and f.path.startswith(s.tls_dir)
        ]
    rec.notes = list(p.notes)
    rec.warnings = [n for n in p.notes if n.startswith(("pre-existing warning", "warning: the "))]
    rec.plan = plan_view.describe(p, facts, s, material)
    if p.rollover is not None:
        rec.dane = p.rollover.view()
        rec.plan["dane"] = [p.rollover.text]
        rec.plan["certificate"] = dane.reword_plan(rec.plan["certificate"])
    _record_proof(s, facts, p, rec)


def _record_expiry(s: settings.Settings, facts: HostFacts, p: plan.Plan, rec) -> None:
    """Days left of every certificate served after this plan; expired fails the host."""
    if p.cert.source in plan.UPLOADED:
        certs = {m.kind: m.cert for m in p.material}
    else:
        paths = {x.strip() for v in p.cert.files.values() for x in v.split(",")}
        certs = expiry.served_certs(p.cert.files, {x: facts.file(x).certs_pem for x in paths})
    now = dt.datetime.now(dt.UTC)
    rec.cert_days_left, warnings, problems = expiry.judge(
        p.cert.source, certs, now, s.tls_renew_days
    )
    p.notes.extend(w for w in warnings if w not in p.notes)
    if problems:
        raise plan.HostStateError(f"{host.name}: " + "; ".join(problems))


def _record_proof(s: settings.Settings, facts: HostFacts, p: plan.Plan, rec) -> None:
    """What the host's last recorded proof says, and whether this run must prove again."""
    rec.expected, rec.promise_profile = dict(p.expected), p.promise_profile
    rec.recorded = verify.parse_evidence(facts.evidence)
    rec.before = rec.recorded.handshakes()  # the last proof recorded on the host
    rec.not_probed = {li.name: li.not_probed for li in p.listeners if li.not_probed}
    rec.tls_overrides = {li.name: li.tls_overrides for li in p.listeners if li.tls_overrides}
    rec.problems = [] if facts.running else ["Postfix is not running"]
    rec.stale = verify.stale_reason(
        rec.recorded, p.promise_profile, s.verify_max_age_hours, s.verify_full
    )
    if rec.stale is None:  # a record is only written when the promise held; check anyway
        for name in rec.recorded.probes:
            view = verify.listener_report(p.promise_profile, rec.recorded, name, p.expected)
            if view["problems"]:
                rec.stale = f"the recorded proof does not hold: {view['problems'][0]}"
    if {li.name for li in p.listeners if not li.not_probed} != set(rec.recorded.probes):
        rec.stale = rec.stale or "the set of TLS listeners changed"


def converge(stages=STAGES) -> None:
    s = host_settings()
    facts: HostFacts | None = get_facts(s)
    if facts is None:
        return _facts_failed()
    s = adopt.effective(s, facts)  # the host's own identity and network values stay
    if not facts.installed:
        if facts.pkg not in host_ops.INSTALL:
            _host_done(
                f"{host.name}: Postfix is not installed and no known package manager was found"
            )
            return
        _host_done(None)
        logger.info(
            f"[{host.name}] Postfix is not installed: {facts.pkg} will install it, then configure it"
        )
        _record_install(facts.pkg)
        host_ops.install_postfix(facts.pkg, name="Install Postfix with the host's package manager")
        python.call(
            name="Configure the freshly installed Postfix",
            function=keeping_deploy(_after_install),
            stages=stages,
        )
        return
    try:
        p = make_plan(s, facts, stages)
    except plan.HostStateError as e:
        return _host_failed(str(e))
    except (plan.PlanError, pki.StoreError) as e:
        _host_done(str(e))
        return
    _host_done(None)
    _apply_or_order(s, facts, p, stages, executing=False)


def _record_install(pkg: str) -> None:
    """The host's row before the install: planned (a dry run), or, if the install fails,
    why (the plan made after a successful install replaces the problem)."""
    rec = get_report().record(host.name)
    rec.planned_action = "install"
    rec.problems = [
        f"installing Postfix with {pkg} failed (see the pyinfra output above); "
        "nothing else was changed on this host"
    ]


def _host_failed(reason: str) -> None:
    """This host fails before anything changes on it; the others carry on."""
    rec = get_report().record(host.name)
    rec.failed, rec.action, rec.reason = True, "failed", f"{reason}; nothing was changed"
    _host_done(None)
    host_ops.fail(rec.reason, name="Refuse this host (nothing changed)")


def _after_install(stages) -> None:
    """Runs at execution time, after the install: fresh facts, then the usual stages.
    What stops this host now fails it with its reason (the others carry on)."""
    s = all_settings()[host.name]
    get_report().record(host.name).problems = []  # the install itself succeeded
    facts: HostFacts | None = get_facts(s)
    try:
        if facts is None or not facts.installed:
            raise plan.HostStateError(
                f"{host.name}: Postfix is still not installed after the install step"
                if facts
                else f"{host.name}: the facts command failed after the install"
            )
        s = adopt.effective(s, facts)
        p = make_plan(s, facts, stages)
    except (plan.PlanError, pki.StoreError) as e:
        rec = get_report().record(host.name)
        rec.failed, rec.action = True, "failed"
        rec.reason = f"{e}; Postfix was installed, its configuration not changed"
        host_ops.fail(rec.reason, name="Refuse this host (configuration not changed)")
        return
    _apply_or_order(s, facts, p, stages, executing=True)


def _apply(s: settings.Settings, facts: HostFacts, p: plan.Plan) -> None:
    conf = facts.postconf_d.get("config_directory", "/etc/postfix")
    stage_dir = f"{conf}/.pfs-stage-{run_id()}"
    ro = p.rollover
    if ro is not None and ro.acts_before:
        python.call(
            keeping_deploy(_dane_before),
            ro,
            name="DANE: publish TLSA records (RFC 2136) before a switch",
        )
    new = [m for m in p.material if m.generated_now]
    new_ca = p.ca if p.ca is not None and p.ca.generated_now else None
    if new or new_ca or p.new_digest_key:
        python.call(
            keeping_deploy(_save_material),
            Path(s.pfs_store),
            host.name,
            new,
            new_ca,
            p.new_digest_key,
            name="Save the new keys in the controller's key store",
        )
    host_ops.stage(p, conf, stage_dir, name="Stage changed files (root-only staging directory)")
    rec = get_report().record(host.name)
    if p.has_changes:  # the activation proves the policy, or rolls back
        rec.meta = host_ops.activate(
            p,
            conf,
            stage_dir,
            plan.init_command(facts.init, facts.systemd_instance),
            p.promise_profile,
            cache_record=cache_record(s),
            name="Check with Postfix, switch, reload/restart, prove the TLS policy",
        )
    elif rec.stale and p.probe_listeners:  # handshakes at execution time only
        logger.info(f"[{host.name}] TLS policy will be proven again: {rec.stale}")
        rec.proof_meta = host_ops.prove(
            conf,
            p.probe_listeners,
            p.promise_profile,
            p.expected,
            cache_record=cache_record(s),
            name=f"Prove the TLS policy ({p.promise_profile}) on every listener",
        )
    elif not p.has_changes:
        host.noop(_why_no_proof(rec))
    if ro is not None and ro.acts_after:
        python.call(
            keeping_deploy(_dane_after),
            ro,
            name="DANE: check the served keys' records, withdraw old ones",
        )


def _why_no_proof(rec: report.HostRecord) -> str:
    """Why a run without changes proves nothing on this host (pyinfra -v shows it)."""
    ev = rec.recorded
    if rec.stale is None and ev is not None and ev.time:
        proven = dt.datetime.fromtimestamp(ev.time, dt.UTC)
        age = verify.age_text(ev.now - ev.time)
        return f"TLS policy proof still valid (proven {proven:%Y-%m-%d %H:%M} UTC, {age} ago)"
    if rec.not_probed:
        return "TLS policy not proven: " + "; ".join(f"{k}: {v}" for k, v in rec.not_probed.items())
    return "TLS policy not proven: no TLS listener to probe"


def _dane_failed(reason: str) -> None:
    rec = get_report().record(host.name)
    rec.failed, rec.action, rec.reason = True, "failed", reason
    host_ops.fail(reason, name="DANE failed")


def _dane_before(ro: dane.Rollover) -> None:
    """At execution, before anything is saved or uploaded (see dane.before)."""
    try:
        dane.before(ro, dt.datetime.now(dt.UTC))
    except (dane.DaneError, pki.StoreError, OSError) as e:
        _dane_failed(f"{e}; nothing was switched, the current key stays")


def _dane_after(ro: dane.Rollover) -> None:
    """After the activation: the keys the host serves now (its own STARTTLS check) must
    have their records at the authoritative server; old records go."""
    rec = get_report().record(host.name)
    meta = rec.meta
    lines = meta.stdout_lines + meta.stderr_lines if meta is not None and meta.is_complete() else []
    shakes = verify.parse(lines) or rec.before
    served = {k: h.tlsa for k, h in shakes.items() if h.ok and h.tlsa}
    try:
        dane.after(ro, served)
    except (dane.DaneError, OSError) as e:
        _dane_failed(str(e))


def check() -> None:
    """deploys/check.py: change nothing; prove the TLS policy now on every listener, judge
    the served certificates (days left) and drift of the managed files. A host with a
    problem fails (pyinfra exits non-zero); one line per host in the summary."""
    get_report().check_mode = True
    s = host_settings()
    facts: HostFacts | None = get_facts(s)
    if facts is None:
        return _facts_failed()
    s = adopt.effective(s, facts)
    try:
        if not facts.installed:
            raise plan.HostStateError(f"{host.name}: Postfix is not installed")
        p = make_plan(s, facts, STAGES)
    except (plan.PlanError, pki.StoreError) as e:
        return _host_failed(str(e))
    _host_done(None)
    problems = check_problems(p, facts)
    conf = facts.postconf_d.get("config_directory", "/etc/postfix")
    rec = get_report().record(host.name)
    if p.probe_listeners and facts.running:
        rec.proof_meta = host_ops.prove(
            conf,
            p.probe_listeners,
            p.promise_profile,
            p.expected,
            record=False,
            name=f"Prove the TLS policy ({p.promise_profile}) now (changes nothing)",
        )
    if problems:
        rec.problems = problems
        host_ops.fail("; ".join(problems), name="Check: served state differs from the deploy's")


def check_problems(p: plan.Plan, facts: HostFacts) -> list[str]:
    """What a converged host must not show: Postfix stopped, managed files changed or
    missing, master.cf overrides that weaken the profile."""
    problems = [] if facts.running else ["Postfix is not running"]
    renewal = {f.path for f in p.changed if f.secret and not facts.file(f.path).exists}
    for f in p.changed:
        if f.path in renewal:
            continue
        state = "differs from what the deploy manages" if facts.file(f.path).exists else "missing"
        problems.append(f"drift: {f.path} {state}")
    problems += [f"drift: master.cf {line}" for line in p.overrides_removed]
    if renewal:
        p.notes.append("warning: new key material is due (renewal); the next deploy makes it")
    return problems


def control(action: str) -> None:
    """The reload stage: check the live configuration, reload (or start) Postfix,
    verify STARTTLS. Nothing is written, so every postconf warning is pre-existing;
    without an active tlsmgr STARTTLS cannot work: reloaded, not verified, and said."""
    s = host_settings()
    facts: HostFacts | None = get_facts(s)
    if facts is None:
        return _facts_failed()
    s = adopt.effective(s, facts)
    _host_done(None if facts.installed else f"{host.name}: Postfix is not installed")
    conf = facts.postconf_d.get("config_directory", "/etc/postfix")
    action = action if facts.running else "start"
    rec = get_report().record(host.name)
    rec.postfix, rec.profile = facts.postconf_d.get("mail_version", ""), s.tls_profile
    rec.planned_action, rec.facts_cache = action, facts.facts_cache
    rec.warnings = plan.warning_notes(facts, [])
    listeners = " ".join(li.spec() for li in facts.listeners() if not li.not_probed)
    # the profile's promise only on a host proven at that profile before; else the least
    recorded = verify.parse_evidence(facts.evidence)
    same = settings.canonical_profile(recorded.profile) == s.tls_profile
    profile = s.tls_profile if same else "postfix-defaults"
    rec.promise_profile = profile
    if (state := mastercf.tlsmgr_state(facts.master_cf)) != "active":
        listeners = ""  # activate.sh then skips the TLS check
        rec.warnings.append(
            f"pre-existing: tlsmgr is {state} in master.cf, so STARTTLS cannot work: "
            f"{action} without STARTTLS check; deploys/tlsmgr.py --limit {host.name} enables it"
        )
    for w in rec.warnings:
        logger.info(f"[{host.name}] note: {w}")
    logger.info(f"[{host.name}] {action} through {facts.init}")
    rec.meta = host_ops.control(
        conf,
        f"{conf}/.pfs-stage-{run_id()}",
        plan.init_command(facts.init, facts.systemd_instance),
        action,
        listeners,
        profile,
        cache_record=cache_record(s),
        name="Check config, reload (or start) Postfix",
    )
