"""The dry run a mail admin reads before pressing enter on a production fleet."""

from __future__ import annotations

import json

from tests.conftest import FIXTURES
from tests.e2e.conftest import deploy, inventory_with, reset, snapshot


def host_block(output: str, name: str) -> list[str]:
    """The plan lines printed for one host."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{name}:"))
    block = [lines[start].strip()]
    for line in lines[start + 1 :]:
        if not line.startswith("        "):
            break
        block.append(line.strip())
    return block


def test_dry_run_on_the_recipes_config(hosts, store):
    h = next(h for h in hosts if h.suite == "bookworm")
    reset(h.name)
    h.ssh((FIXTURES / "recipe_postconf.sh").read_text() + "\npostfix reload")
    assert h.ssh("postconf -n 2>&1 >/dev/null").stdout  # the recipe makes postconf warn
    before = snapshot(h)
    run = deploy(
        "--dry",
        "--limit",
        h.name,
        store=store,
        extra_data={"report_dir": str(store.parent / "reports")},
    )
    assert run.returncode == 0, run.output[-3000:]
    block = host_block(run.output, h.name)
    text = "\n".join(block)
    assert block[0] == f"{h.name}: would reload Postfix"
    for gone in (
        "smtp_use_tls",
        "smtpd_use_tls",
        "smtpd_enforce_tls",
        "smtpd_tls_eecdh_grade",
        "smtpd_tls_CApth",
        "smtpd_tls_dh512_param_file",
        "smtpd_tls_dh1024_param_file",
        "tls_preempt_cipherlist",
    ):
        assert f"{gone}: removed (was " in text, gone
    # the recipe's harmless settings are the host's own: they stay
    for kept in ("tls_random_source", "smtpd_tls_auth_only", "smtp_tls_note_starttls_offer"):
        assert f"{kept}: kept from this host" in text, kept
    assert (
        "smtpd_tls_protocols: (default) >=TLSv1 -> >=TLSv1.2    [tls_profile, all (group_data/all.py)]"
        in text
    )
    assert (
        "smtpd_tls_exclude_ciphers: (default) -> kRSA, aNULL    [tls_profile, all (group_data/all.py)]"
        in text
    )
    assert "smtpd_tls_cert_file: removed (was /etc/ssl/certs/ssl-cert-snakeoil.pem)" in text
    assert "certificate: why: /etc/ssl/certs/ssl-cert-snakeoil.pem names vm, not" in text
    assert snapshot(h) == before, "the dry run changed the host"
    # the same plan, as data, in the dry run's JSON report
    rep = json.loads((store.parent / "reports" / "latest.json").read_text())
    assert rep["dry_run"] is True
    plan = rep["hosts"][h.name]["plan"]
    assert {"smtpd_use_tls", "smtpd_tls_CApth"} <= {r["param"] for r in plan["removed"]}
    assert any(
        c["param"] == "smtpd_tls_protocols" and c["new"] == ">=TLSv1.2" for c in plan["changes"]
    )


def test_provenance_group_value_and_host_override(hosts, store, tmp_path):
    reset()
    assert deploy(store=store).returncode == 0
    d12 = [h for h in hosts if h.suite == "bookworm"]
    override = d12[0].name
    inv = inventory_with(
        tmp_path, {override: {"tls_loglevel": 3}}, groups={"bookworm": "tls_loglevel = 2\n"}
    )
    run = deploy("--dry", store=store, inventory=inv)
    assert run.returncode == 0, run.output[-3000:]
    for h in hosts:
        text = "\n".join(host_block(run.output, h.name))
        if h.name == override:
            assert "smtpd_tls_loglevel: 1 -> 3    [tls_loglevel, host data]" in text, text
        elif h.suite == "bookworm":
            assert "smtpd_tls_loglevel: 1 -> 2    [tls_loglevel, group bookworm]" in text, text
        else:
            assert text == f"{h.name}: no changes", text


def test_dry_run_on_a_converged_host_says_no_changes(hosts, store):
    reset()
    assert deploy(store=store).returncode == 0
    run = deploy("--dry", store=store)
    assert run.returncode == 0, run.output[-2000:]
    for h in hosts:
        assert host_block(run.output, h.name) == [f"{h.name}: no changes"]
