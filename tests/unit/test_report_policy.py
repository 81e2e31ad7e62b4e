"""The summary's policy column and the report's verification, from the proving
operation's output or the host's record (pure: fake operation results)."""

from __future__ import annotations

from types import SimpleNamespace

from postfix_pfs import report, verify

PROBES = [
    "time=1000",
    "@listener|smtp|yes|127.0.0.1|25|starttls",
    "@probe|smtp|rsa|accepted|TLSv1.3|TLS_AES_256_GCM_SHA384|X25519|yes|aa|",
    "@probe|smtp|ecdsa|accepted|TLSv1.3|TLS_AES_256_GCM_SHA384|X25519|yes|ee|",
    "@probe|smtp|tls1|refused||||||alert protocol version",
    "@probe|smtp|tls1_1|untestable||||||no protocols available",
    "@probe|smtp|tls1_2|accepted|TLSv1.2|ECDHE-RSA-AES256-GCM-SHA384|X25519|yes||",
    "@probe|smtp|tls1_2-krsa|refused||||||alert handshake failure",
    "@probe|smtp|tls1_3|accepted|TLSv1.3|TLS_AES_256_GCM_SHA384|X25519|yes||",
]


def meta(ok: bool, lines: list[str]):
    return SimpleNamespace(
        is_complete=lambda: True,
        executed=True,
        did_succeed=lambda _=False: ok,
        stdout_lines=[ln for ln in lines if not ln.startswith("policy: ")],
        stderr_lines=[ln for ln in lines if ln.startswith("policy: ")],
    )


def record(**kw) -> report.HostRecord:
    rec = report.HostRecord("mx1", profile="intermediate", promise_profile="intermediate")
    rec.expected = {"rsa": "aa", "ecdsa": "ee"}
    for k, v in kw.items():
        setattr(rec, k, v)
    return rec


def complete(rec, dry=False):
    report.Report._complete_proof(SimpleNamespace(dry=dry), rec)
    return rec


def test_proven_now_with_per_listener_detail():
    rec = complete(record(proof_meta=meta(True, PROBES), stale="verify_full is set"))
    assert rec.policy.startswith("proven ") and not rec.failed
    v = rec.verification()
    smtp = v["listeners"]["smtp"]
    assert smtp["protocols"]["TLS 1.0"] == "refused"
    assert smtp["protocols"]["TLS 1.1"] == "not testable"
    assert smtp["key_types"]["rsa"]["fs_only"] == "yes" and smtp["problems"] == []
    assert v["proven_at"] == "1970-01-01T00:16:40+00:00" and v["reprobe_reason"]


def test_a_failed_proof_fails_the_host_with_the_reason():
    lines = [*PROBES, "policy: smtp: accepts tls1 (the profile refuses it)"]
    rec = complete(record(proof_meta=meta(False, lines)))
    assert rec.policy == "FAILED" and rec.failed and rec.action == "failed"
    assert rec.reason == "TLS policy not proven: smtp: accepts tls1 (the profile refuses it)"


def test_cached_record_and_dry_runs():
    recorded = verify.parse_evidence(["now=8200", "digest=d", "current=d", *PROBES])
    assert complete(record(recorded=recorded)).policy == "cached 2h"
    assert complete(
        record(recorded=recorded, stale="x", planned_action="none"), dry=True
    ).policy == ("would prove")
    nothing = complete(record(not_probed={"smtp": "TLS off (main.cf)"}))
    assert nothing.policy == "not probed"
    assert nothing.verification()["listeners"]["smtp"] == {"not_probed": "TLS off (main.cf)"}
