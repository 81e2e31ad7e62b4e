"""The per-host pipeline shared by deploy.py and the single-stage deploys/.

settings -> facts (one remote command) -> plan (pure) -> material (controller)
-> stage (upload) -> activate (check, switch, reload, probe, roll back).

pyinfra prepares every host (in parallel greenlets) before it executes any
operation, so every problem found here stops the run with no host changed.
Problems of all hosts are collected and reported together.
"""

from __future__ import annotations

import datetime as dt
import secrets
import sys
from pathlib import Path

from pyinfra import host, logger, state
from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import ctx_state
from pyinfra.operations import python

from . import host_ops, pki, plan, plan_view, report, settings, verify
from .facts import HostFacts, PostfixHost

STAGES = ("certificates", "maincf", "tlsmgr")


class InputError(PyinfraError):
    """Bad inventory data or a host that cannot be planned; nothing was changed."""


def is_dry() -> bool:
    # pyinfra does not tell a deploy file about --dry; generated keys must not
    # be written to the store by a dry run, so look at the command line.
    return "--dry" in sys.argv


def run_id() -> str:
    """One id per pyinfra run: names this run's staging directory on every host."""
    if not hasattr(state, "_pfs_run_id"):
        state._pfs_run_id = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
    return state._pfs_run_id


def get_report() -> report.Report:
    """The run's report (one per pyinfra run), printed and written at exit."""
    if not hasattr(state, "_pfs_report"):
        first = next(iter(all_settings().values()))
        path = Path(first.report_dir) / f"run-{run_id()}{'-dry' if is_dry() else ''}.json"
        state._pfs_report = report.Report(ctx_state.get(), run_id(), is_dry(), path)
    return state._pfs_report


def all_settings() -> dict[str, settings.Settings]:
    """Settings of every targeted host, validated at once before anything else."""
    cached = getattr(state, "_pfs_settings", None)
    if cached is None:
        try:
            cached = settings.validate_inventory(state.inventory.get_active_hosts())
        except settings.SettingsError as e:
            raise InputError(
                "invalid inventory data, no host was changed:\n  " + "\n  ".join(e.problems)
            ) from None
        state._pfs_settings = cached
    return cached


def _host_done(problem: str | None) -> None:
    """Collect per-host planning problems; the last host to finish reports them all."""
    if not hasattr(state, "_pfs_problems"):
        state._pfs_problems, state._pfs_done = [], 0
    state._pfs_done += 1
    if problem:
        state._pfs_problems.append(problem)
    if state._pfs_problems and state._pfs_done == len(state.inventory.get_active_hosts()):
        raise InputError(
            "cannot plan, no host was changed:\n  " + "\n  ".join(sorted(state._pfs_problems))
        )


def get_facts(s: settings.Settings) -> HostFacts:
    """The one remote command of a no-change run."""
    globs = " ".join(s.tls_cert_globs + s.tls_key_globs)
    return host.get_fact(
        PostfixHost, tls_dir=s.tls_dir, probe=fact_probe(s), table_dir=s.table_dir, globs=globs
    )


def fact_probe(s: settings.Settings) -> str:
    """Where the facts command checks STARTTLS; none in a dry run, which must leave
    every file byte-identical (a handshake makes Postfix create its session caches)."""
    return "" if is_dry() else probe_address(s)


def probe_address(s: settings.Settings) -> str:
    for addr in s.inet_interfaces:
        if addr not in ("all", "loopback-only"):
            return addr
    return "127.0.0.1"


def make_plan(s: settings.Settings, facts: HostFacts, stages=STAGES) -> plan.Plan:
    """Plan one host (raises PlanError / StoreError) and log what it decided."""
    now = dt.datetime.now(dt.UTC)
    if facts.uid != 0:
        raise plan.PlanError(
            f"{host.name}: must connect as root (or use --sudo); uid is {facts.uid}"
        )
    decision = plan.choose_cert(s, facts, now)
    material, notes, ca_pem = [], [], b""
    if "certificates" in stages:
        material, notes, ca_pem = _material(s, decision, now)
    p = plan.make(host.name, s, facts, decision, material, stages=set(stages), ca_pem=ca_pem)
    p.notes.extend(notes)
    _record(s, facts, p, material)
    view = get_report().record(host.name).plan
    logger.info("\n".join("    " + line for line in plan_view.render(host.name, view)))
    for note in p.notes:
        logger.info(f"[{host.name}] note: {note}")
    return p


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
        return [m], notes, b""
    if decision.source in ("generate", "ca"):
        ca, notes = pki.ensure_ca(store, now, is_dry()) if decision.source == "ca" else (None, [])
        material, more = pki.ensure(
            store, host.name, names, s.tls_cert_days, s.tls_renew_days, now, dry=is_dry(), ca=ca
        )
        return material, notes + more, ca.cert_pem if ca else b""
    return [], [], b""


def _record(
    s: settings.Settings, facts: HostFacts, p: plan.Plan, material: list[pki.Material]
) -> None:
    rec = get_report().record(host.name)
    rec.postfix = facts.postconf_d.get("mail_version", "")
    rec.profile = s.tls_profile
    rec.cert_source, rec.cert_reason = p.cert.source, p.cert.reason
    rec.cert_expires = (
        min(f"{m.cert.not_valid_after_utc:%Y-%m-%d}" for m in material)
        if material
        else p.cert.expires
    )
    rec.planned_action = p.activation
    rec.changed_files = [f.path for f in p.changed]
    if p.cert.reason.startswith("managed by postfix-pfs"):  # deployed before: a difference is drift
        rec.drift = [
            f.path for f in p.changed if facts.file(f.path).exists and f.path.startswith(s.tls_dir)
        ]
    rec.notes = list(p.notes)
    rec.plan = plan_view.describe(p, facts, s, material)
    rec.before = verify.parse(facts.tls_check)
    if is_dry():
        rec.problems = []  # a dry run does not connect to port 25 (see fact_probe)
    elif not facts.running:
        rec.problems = ["Postfix is not running"]
    else:
        rec.problems = verify.judge(rec.before, p.expected)


def converge(stages=STAGES) -> None:
    s = all_settings()[host.name]
    facts: HostFacts = get_facts(s)
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
        host_ops.install_postfix(facts.pkg, name="Install Postfix with the host's package manager")
        python.call(
            name="Configure the freshly installed Postfix", function=_after_install, stages=stages
        )
        return
    try:
        p = make_plan(s, facts, stages)
    except (plan.PlanError, pki.StoreError) as e:
        _host_done(str(e))
        return
    _host_done(None)
    _apply(s, facts, p)


def _after_install(stages) -> None:
    """Runs at execution time, after the install: fresh facts, then the usual stages."""
    s = all_settings()[host.name]
    facts: HostFacts = get_facts(s)
    if not facts.installed:
        raise InputError(f"{host.name}: Postfix is still not installed after the install step")
    _apply(s, facts, make_plan(s, facts, stages))


def _apply(s: settings.Settings, facts: HostFacts, p: plan.Plan) -> None:
    conf = facts.postconf_d.get("config_directory", "/etc/postfix")
    stage_dir = f"{conf}/.pfs-stage-{run_id()}"
    host_ops.stage(p, conf, stage_dir, name="Stage changed files (root-only staging directory)")
    rec = get_report().record(host.name)
    if not p.has_changes and rec.problems:
        # nothing to change, yet what the host serves is wrong: fail it, loudly
        host_ops.fail(
            "; ".join(rec.problems), name="Verify STARTTLS (forward secrecy, deployed certificate)"
        )
        return
    rec.meta = host_ops.activate(
        p,
        conf,
        stage_dir,
        plan.init_command(facts.init),
        probe_address(s),
        p.expected,
        name="Check with Postfix, switch, reload/restart, verify STARTTLS",
    )


def control(action: str) -> None:
    s = all_settings()[host.name]
    facts: HostFacts = get_facts(s)
    _host_done(None if facts.installed else f"{host.name}: Postfix is not installed")
    conf = facts.postconf_d.get("config_directory", "/etc/postfix")
    action = action if facts.running else "start"
    logger.info(f"[{host.name}] {action} through {facts.init}")
    host_ops.control(
        conf,
        f"{conf}/.pfs-stage-{run_id()}",
        plan.init_command(facts.init),
        action,
        probe_address(s),
        name="Check config, reload (or start) Postfix",
    )
