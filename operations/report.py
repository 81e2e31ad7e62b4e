"""Run report: one summary row per host at the end of every run, and a JSON file.

Rows are filled while hosts are planned (version, profile, certificate, the
handshakes seen before the run, the planned action) and completed at exit from
the activation's own output (handshakes after the switch, or why it failed).
The JSON (schema "postfix-pfs/report/1") is meant for monitoring: keys only
get added, never renamed.
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyinfra.api.state import StateStage

from . import masking, verify

SCHEMA = "postfix-pfs/report/1"


@dataclass
class HostRecord:
    host: str
    postfix: str = ""
    profile: str = ""
    cert_source: str = ""
    cert_reason: str = ""
    cert_expires: str = ""
    planned_action: str = ""
    action: str = ""  # what happened: none / reload / restart / start / failed / planned (dry)
    changed_files: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # pre-existing, not fatal (plan notes)
    cert_days_left: dict[str, int] = field(default_factory=dict)  # kind -> days (expiry.py)
    check: str = ""  # deploys/check.py: OK, WARN ..., FAILED ...
    table_deltas: dict[str, str] = field(default_factory=dict)  # path -> "N added, ..." (host)
    before: dict[str, verify.Handshake] = field(default_factory=dict)
    after: dict[str, verify.Handshake] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    failed: bool = False
    reason: str = ""
    plan: dict[str, Any] = field(default_factory=dict)  # the readable dry-run plan (plan_view)
    dane: dict[str, Any] = field(default_factory=dict)  # DANE rollover stage (dane.Rollover.view)
    meta: Any = None  # pyinfra OperationMeta of the activation, read at exit
    # TLS policy proof (operations/verify.py): the host's record, why it is stale, the
    # proving operation (activation or prove) and its evidence
    expected: dict[str, str] = field(default_factory=dict)
    promise_profile: str = ""  # the profile whose promise is proven (compat: a partial stage)
    recorded: verify.Evidence | None = None
    stale: str | None = None
    proof_meta: Any = None
    evidence: verify.Evidence | None = None
    policy: str = ""  # proven HH:MM / cached 2h / FAILED / would prove (dry) / not probed
    not_probed: dict[str, str] = field(default_factory=dict)  # listener -> why
    tls_overrides: dict[str, dict[str, str]] = field(default_factory=dict)  # listener -> -o
    facts_cache: str = ""  # the facts command's cache on this run: hit, miss or off

    @property
    def tls(self) -> dict[str, verify.Handshake]:
        return self.after or self.before

    def to_dict(self) -> dict:
        skip = ("meta", "before", "after", "recorded", "proof_meta", "evidence", "expected")
        d = {k: v for k, v in self.__dict__.items() if k not in skip}
        d["verification"] = self.verification()
        d["tls_before"] = {k: h.to_dict() for k, h in self.before.items()}
        d["tls"] = {k: h.to_dict() for k, h in self.tls.items()}
        d["forward_secrecy"] = bool(self.tls) and all(
            h.forward_secret for h in self.tls.values() if h.ok
        )
        d["tlsa"] = sorted(
            {f"_25._tcp.{self.host}. IN TLSA 3 1 1 {h.tlsa}" for h in self.tls.values() if h.tlsa}
        )
        return d

    def verification(self) -> dict:
        """Per listener and key type: protocols accepted/refused/not testable, FS-only."""
        ev = self.evidence or self.recorded
        listeners = {
            name: verify.listener_report(
                self.promise_profile or self.profile, ev, name, self.expected
            )
            for name in (ev.probes if ev else {})
        }
        for name, why in self.not_probed.items():
            listeners[name] = {"not_probed": why}
        for name, opts in self.tls_overrides.items():
            listeners.setdefault(name, {})["tls_overrides"] = opts
        proven = ""
        if ev and ev.time:
            proven = dt.datetime.fromtimestamp(ev.time, dt.UTC).isoformat(timespec="seconds")
        return {
            "policy": self.policy,
            "promise": self.promise_profile or self.profile,
            "proven_at": proven,
            "reprobe_reason": self.stale,
            "listeners": listeners,
        }


def verdict(rec: HostRecord) -> str:
    """deploys/check.py's one line for a host: OK, WARN (what to do), FAILED (why)."""
    if rec.failed:
        reasons = [rec.reason] + [p for p in rec.problems if p not in rec.reason]
        return "FAILED " + "; ".join(r for r in reasons if r)
    warns = [w.removeprefix("warning: ") for w in rec.notes if w.startswith("warning: ")]
    if warns:
        return "WARN " + "; ".join(warns)
    return "OK"


def executed(state) -> bool:
    """Did pyinfra execute operations? Not with --dry, --json without -y, a declined
    prompt, --debug-operations, or the Python API before run_ops: those only prepare."""
    return bool(state.is_executing) or state.current_stage >= StateStage.Execute


def unreachable_reason(host) -> str:
    """Why pyinfra could not connect, as far as the controller can tell (no secrets)."""
    address = host.data.get("ssh_hostname") or host.name
    port = int(host.data.get("ssh_port") or 22)
    try:
        with socket.create_connection((address, port), timeout=3):
            return f"unreachable: {address}:{port} answers, but the SSH login failed (see above)"
    except OSError as e:
        return f"unreachable: cannot connect to {address}:{port} ({e.strerror or e})"


def table_deltas(lines: list[str]) -> dict[str, str]:
    """activate.sh's "postfix-pfs: table PATH: N added, N removed, N changed" lines."""
    out = {}
    for line in lines:
        if "postfix-pfs: table " in line:
            path, _, delta = line.split("postfix-pfs: table ", 1)[1].partition(": ")
            out[path] = delta.strip()
    return out


SUMMARY_HEADER = (
    "host",
    "postfix",
    "profile",
    "certificate",
    "tls",
    "FS",
    "policy",
    "action",
    "TLSA 3 1 1",
)


def summary_row(rec: HostRecord) -> tuple[str, ...]:
    """One host's row of the summary table (columns as SUMMARY_HEADER)."""
    shakes = [h for h in rec.tls.values() if h.ok]
    seen: dict[str, list[str]] = {}
    for h in shakes:  # one entry per distinct protocol/cipher/group, with its key types
        seen.setdefault(f"{h.proto} {h.cipher} {h.group or 'no-ephemeral-key'}", []).append(h.kind)
    tls = "; ".join(f"{k} ({'+'.join(v)})" for k, v in seen.items()) or "-"
    fs = "yes" if shakes and all(h.forward_secret for h in shakes) else "NO" if shakes else "?"
    cert = f"{rec.cert_source} {rec.cert_expires}".strip()
    if rec.cert_days_left:
        cert += f" ({min(rec.cert_days_left.values())}d)"
    tlsa = " ".join(h.tlsa[:12] for h in shakes if h.tlsa) or "-"
    policy = rec.policy or "-"
    if rec.promise_profile and rec.promise_profile != rec.profile and rec.policy:
        policy += f" ({rec.promise_profile} only)"
    return (rec.host, rec.postfix, rec.profile, cert, tls, fs, policy, rec.action, tlsa)


class Report:
    def __init__(self, state, run_id: str, report_dir: Path):
        self.state, self.run_id, self.report_dir = state, run_id, report_dir
        self.dry = True  # decided at exit: did the run execute?
        self.check_mode = False  # deploys/check.py: a verdict line per host
        self.hosts: dict[str, HostRecord] = {}
        atexit.register(self.finish)

    @property
    def path(self) -> Path:
        return self.report_dir / f"run-{self.run_id}{'-dry' if self.dry else ''}.json"

    def record(self, name: str) -> HostRecord:
        return self.hosts.setdefault(name, HostRecord(name))

    # --- completion at exit -----------------------------------------------------------

    def _complete(self, rec: HostRecord, failed_hosts: set[str]) -> None:
        meta = rec.meta
        self._complete_proof(rec)
        if self.dry:
            if not rec.failed:
                rec.action = "planned" if rec.planned_action not in ("", "none") else "none"
                rec.action = "planned" if rec.changed_files else rec.action
            return
        if meta is not None and meta.is_complete():
            lines = meta.stdout_lines + meta.stderr_lines
            rec.after = verify.parse(lines)
            rec.table_deltas = table_deltas(lines)
            failed = [
                ln.split("FAILED:", 1)[1].strip() for ln in lines if "postfix-pfs: FAILED:" in ln
            ]
            if failed or not meta.did_succeed(False):
                rec.failed, rec.action = True, "failed"
                reason = failed[0] if failed else "activation failed (see output above)"
                rec.reason = masking.mask_text(reason)
            elif meta.executed:
                rec.action = rec.planned_action
            else:
                rec.action = "none"
        elif not rec.action:
            rec.action = "none"
        if rec.host in failed_hosts and not rec.failed:
            rec.failed, rec.action = True, "failed"
            rec.reason = (
                rec.reason or "; ".join(rec.problems) or "failed (see pyinfra output above)"
            )

    def _add_missing(self) -> None:
        """A row for every targeted host: those pyinfra could not reach never ran our code."""
        for h in self.state.inventory:
            if h.name in self.hosts or not self.state.is_host_in_limit(h):
                continue
            rec = self.record(h.name)
            rec.failed, rec.action = True, "failed"
            rec.reason = unreachable_reason(h) if not h.connected else "failed before planning"

    def _complete_proof(self, rec: HostRecord) -> None:
        """The policy column: from the operation that proved it now, or from the record."""
        meta = rec.proof_meta or rec.meta
        if meta is not None and meta.is_complete() and meta.executed:
            lines = meta.stdout_lines + meta.stderr_lines
            rec.evidence = verify.parse_evidence(lines)
            if rec.evidence.probes:
                rec.after = rec.evidence.handshakes()
            problems = [ln.split("policy: ", 1)[1] for ln in lines if ln.startswith("policy: ")]
            if not meta.did_succeed(False):
                rec.policy = "FAILED" if problems or rec.proof_meta else "not proven"
                if rec.proof_meta is not None:
                    rec.failed, rec.action = True, "failed"
                    rec.reason = "TLS policy not proven: " + ("; ".join(problems) or "see output")
            elif rec.evidence.probes:
                rec.policy = f"proven {dt.datetime.now():%H:%M}"
        elif self.dry:
            rec.policy = "would prove" if rec.stale or rec.planned_action != "none" else ""
        if not rec.policy and rec.recorded and rec.recorded.time and not rec.stale:
            rec.policy = f"cached {verify.age_text(rec.recorded.now - rec.recorded.time)}"
        if not rec.policy and rec.not_probed and not (rec.evidence or rec.recorded):
            rec.policy = "not probed"

    def finish(self) -> None:
        if not self.hosts:
            return
        self.dry = not executed(self.state)
        self._add_missing()
        failed_hosts = {h.name for h in getattr(self.state, "failed_hosts", set())}
        for rec in self.hosts.values():
            self._complete(rec, failed_hosts)
            if self.check_mode:
                rec.check = verdict(rec)
        self.print_summary()
        self.write_json()

    def write_json(self) -> None:
        data = {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "dry_run": self.dry,
            "hosts": {name: rec.to_dict() for name, rec in sorted(self.hosts.items())},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(tmp, self.path)
        tlsa = sorted({r for rec in self.hosts.values() for r in rec.to_dict()["tlsa"]})
        if tlsa and not self.dry:  # DANE: the records of what is served now, zone-file ready
            (self.path.parent / "tlsa.txt").write_text("\n".join(tlsa) + "\n")
        latest = self.path.parent / "latest.json"
        latest.unlink(missing_ok=True)
        latest.symlink_to(self.path.name)
        print(f"--> Report: {self.path}", file=sys.stderr)

    def print_summary(self) -> None:
        """The table (one row per host), the proof per listener, then each host's lines."""
        rows = [SUMMARY_HEADER] + [summary_row(rec) for _, rec in sorted(self.hosts.items())]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        title = (
            "--> postfix-pfs summary (dry run: nothing changed)"
            if self.dry
            else "--> postfix-pfs summary"
        )
        print(title, file=sys.stderr)
        for r in rows:
            print(
                "    " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(),
                file=sys.stderr,
            )
        self.print_verification()
        for name, rec in sorted(self.hosts.items()):
            for line in self.host_lines(name, rec):
                print(line, file=sys.stderr)

    def host_lines(self, name: str, rec: HostRecord) -> list[str]:
        """What the summary says about one host below the table: check verdict, failure,
        tables, warnings, DANE, drift, problems found before this run."""
        out = []
        if self.check_mode:  # deploys/check.py: the line to grep from cron or monitoring
            out.append(f"postfix-pfs check {name}: {rec.check}")
        if rec.failed:
            out.append(f"    FAILED {name}: {rec.reason}")
        for line in [] if rec.failed else rec.plan.get("tables", []):
            path = line.split(":", 1)[0]
            delta = f"; {rec.table_deltas[path]}" if path in rec.table_deltas else ""
            out.append(f"    {name}: table {line}{delta}")
        out += [f"    {name}: {w}" for w in rec.warnings]
        if rec.dane:
            out.append(f"    DANE {name}: {rec.dane['stage']}: {rec.dane['text']}")
        out += [
            f"    drift {name}: {d} was changed on the host since the last deploy; restored"
            for d in rec.drift
        ]
        if not rec.failed and rec.cert_reason.startswith("managed"):
            out += [f"    before this run {name}: {p}" for p in rec.problems]  # drift
        return out

    def print_verification(self) -> None:
        """One line per host and listener proven on this run (or failing), and why not probed."""
        for name, rec in sorted(self.hosts.items()):
            view = rec.verification()["listeners"]
            for lname, lv in view.items():
                if "not_probed" in lv:
                    print(
                        f"    policy {name} {lname}: not probed: {lv['not_probed']}",
                        file=sys.stderr,
                    )
                elif rec.evidence and lname in rec.evidence.probes and "protocols" in lv:
                    line = verify.short_line(lv)
                    print(f"    policy {name} {lname} ({lv['address']}): {line}", file=sys.stderr)
                    for u in lv["untested"]:
                        print(f"    policy {name} {lname}: {u}", file=sys.stderr)
