"""The per-host pipeline shared by deploy.py and the single-stage deploys/.

settings -> facts (one remote command) -> plan (pure) -> material (controller)
-> stage (upload) -> activate (check, switch, reload, probe, roll back).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from pyinfra import host, logger, state
from pyinfra.api.exceptions import PyinfraError

from . import host_ops, pki, plan, settings
from .facts import HostFacts, PostfixHost

STAGES = ("certificates", "maincf", "tlsmgr")


class InputError(PyinfraError):
    """Bad inventory data or a host that cannot be planned; nothing was changed."""


def is_dry() -> bool:
    # pyinfra does not tell a deploy file about --dry; generated keys must not
    # be written to the store by a dry run, so look at the command line.
    return "--dry" in sys.argv


def all_settings() -> dict[str, settings.Settings]:
    """Every host's settings, validated once for the whole inventory before any change."""
    cached = getattr(state, "_pfs_settings", None)
    if cached is None:
        try:
            cached = settings.validate_inventory(state.inventory)
        except settings.SettingsError as e:
            raise InputError(
                "invalid inventory data, no host was changed:\n  " + "\n  ".join(e.problems)
            ) from None
        state._pfs_settings = cached
    return cached


def probe_address(s: settings.Settings) -> str:
    for addr in s.inet_interfaces:
        if addr not in ("all", "loopback-only"):
            return addr
    return "127.0.0.1"


def make_plan(stages=STAGES) -> tuple[settings.Settings, HostFacts, plan.Plan]:
    s = all_settings()[host.name]
    facts: HostFacts = host.get_fact(PostfixHost, tls_dir=s.tls_dir)
    if facts.uid != 0 and facts.installed:
        raise InputError(f"{host.name}: must connect as root (or use --sudo); uid is {facts.uid}")
    now = dt.datetime.now(dt.UTC)
    try:
        decision = plan.choose_cert(s, facts, now)
        material, notes = [], []
        if decision.source == "generate":
            names = [s.myhostname, *s.tls_cert_names]
            material, notes = pki.ensure(
                Path(s.pfs_store),
                host.name,
                names,
                s.tls_cert_days,
                s.tls_renew_days,
                now,
                dry=is_dry(),
            )
        p = plan.make(host.name, s, facts, decision, material, stages=set(stages))
    except (plan.PlanError, pki.StoreError) as e:
        raise InputError(f"{e}; no host was changed") from None
    p.notes.extend(notes)
    logger.info(
        f"[{host.name}] certificate: {decision.source} ({decision.reason}); activation: {p.activation}"
    )
    for note in p.notes:
        logger.info(f"[{host.name}] {note}")
    return s, facts, p


def converge(stages=STAGES) -> None:
    s, facts, p = make_plan(stages)
    conf = facts.postconf_d.get("config_directory", "/etc/postfix")
    if p.changed or p.remove:
        logger.info(f"[{host.name}] files to change: {', '.join(f.path for f in p.changed)}")
    host_ops.stage(p, conf, name="Stage changed files (root-only staging directory)")
    host_ops.activate(
        p,
        conf,
        facts.init,
        probe_address(s),
        name="Check with Postfix, switch, reload/restart, probe STARTTLS",
    )


def control(action: str) -> None:
    s = all_settings()[host.name]
    facts: HostFacts = host.get_fact(PostfixHost, tls_dir=s.tls_dir)
    conf = facts.postconf_d.get("config_directory", "/etc/postfix")
    action = action if facts.running else "start"
    logger.info(f"[{host.name}] {action} through {facts.init}")
    host_ops.control(
        conf, facts.init, action, probe_address(s), name="Check config, reload (or start) Postfix"
    )
