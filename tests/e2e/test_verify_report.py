"""Verify stage and run report: judged against what the hosts really serve."""

from __future__ import annotations

import json

from tests.e2e.conftest import deploy, reset


def latest_report(store) -> dict:
    return json.loads((store.parent / "reports" / "latest.json").read_text())


def run(store, *args, **kw):
    return deploy(
        *args,
        store=store,
        extra_data={"report_dir": str(store.parent / "reports"), **kw.pop("extra", {})},
        **kw,
    )


def test_summary_and_json_report_list_every_host(hosts, store):
    reset()
    first = run(store)
    assert first.returncode == 0, first.output[-2000:]
    assert "postfix-pfs summary" in first.output
    for h in hosts:
        row = next(
            line for line in first.output.splitlines() if line.strip().startswith(h.name + " ")
        )
        assert "fs-only" in row and "generate" in row and ("reload" in row or "restart" in row), row
    rep = latest_report(store)
    assert rep["schema"] == "postfix-pfs/report/1" and rep["dry_run"] is False
    assert sorted(rep["hosts"]) == sorted(h.name for h in hosts)
    for h in hosts:
        r = rep["hosts"][h.name]
        assert r["postfix"].startswith("3.") and r["profile"] == "fs-only"
        assert r["cert_source"] == "generate" and r["cert_expires"]
        assert r["action"] == "reload" and not r["failed"] and r["forward_secrecy"] is True
        assert set(r["tls"]) == {"rsa", "ecdsa"}
        for kind, t in r["tls"].items():
            assert t["proto"] in ("TLSv1.2", "TLSv1.3") and t["forward_secret"] and t["group"]
            assert h.fqdn in t["names"] and t["key_type"].startswith(kind.upper())
            assert f"_25._tcp.{h.name}. IN TLSA 3 1 1 {t['tlsa']}" in r["tlsa"]
        if h.suite == "trixie":
            assert r["tls"]["rsa"]["group"] == "X25519MLKEM768"
        assert r["verification"]["policy"].startswith("proven ")
        assert r["verification"]["listeners"]["smtp"]["address"] == f"{h.address}:25"

    second = run(store)
    assert second.returncode == 0 and second.totals()["changed"] == 0, second.output[-2000:]
    rep2 = latest_report(store)
    assert rep2["run_id"] != rep["run_id"]
    for h in hosts:  # the no-change run reports the proof recorded on the host
        r = rep2["hosts"][h.name]
        assert (
            r["action"] == "none"
            and r["forward_secrecy"] is True
            and set(r["tls"]) == {"rsa", "ecdsa"}
        )
        assert r["verification"]["policy"].startswith("cached ")
        assert r["verification"]["proven_at"] == rep["hosts"][h.name]["verification"]["proven_at"]


def test_verify_fails_a_host_without_forward_secrecy_and_passes_a_good_one(hosts, store):
    reset()
    assert run(store).returncode == 0
    bad, good = hosts[0], hosts[1]
    # behind the deploy's back: the smtp service offers only TLS <= 1.2 with RSA key exchange
    bad.ssh(
        "sed -i 's/^smtp \\( *\\)inet\\(.*\\)smtpd$/smtp \\1inet\\2smtpd"
        " -o smtpd_tls_protocols=<=TLSv1.2 -o smtpd_tls_exclude_ciphers= -o tls_medium_cipherlist=kRSA/' "
        "/etc/postfix/master.cf && postfix reload"
    )
    # deploy.py would remove these overrides (test_policy_proof.py); the certificates
    # stage does not own master.cf, so the proof judges what the host serves
    res = run(store, deploy_file="deploys/certificates.py")
    assert res.returncode != 0
    assert "has no forward secrecy" in res.output
    rep = latest_report(store)
    assert rep["hosts"][bad.name]["failed"] is True
    assert "no forward secrecy" in rep["hosts"][bad.name]["reason"]
    assert rep["hosts"][bad.name]["forward_secrecy"] is False
    assert (
        rep["hosts"][good.name]["failed"] is False
        and rep["hosts"][good.name]["forward_secrecy"] is True
    )
    assert f"FAILED {bad.name}:" in res.output


def test_drifted_certificate_is_reported_and_restored(hosts, store, tmp_path):
    reset()
    assert run(store).returncode == 0
    h = hosts[-1]
    # someone swaps the served RSA certificate and key by hand
    rsa_file = h.ssh("ls /etc/postfix/tls/rsa-*.pem").stdout.strip()
    h.ssh(
        "cd /tmp && openssl req -x509 -newkey rsa:2048 -nodes -keyout k.pem -out c.pem -days 30 "
        f"-subj /CN=intruder.example >/dev/null 2>&1 && cat k.pem c.pem > {rsa_file} && rm k.pem c.pem && postfix reload"
    )
    res = run(store)
    assert res.returncode == 0, res.output[-2000:]
    rep = latest_report(store)["hosts"][h.name]
    assert rep["drift"] == [rsa_file]
    # before the run: the last proof recorded on the host (no handshake while preparing)
    assert rep["tls_before"]["rsa"]["subject"] == f"CN={h.fqdn}"
    assert rep["tls"]["rsa"]["subject"] == f"CN={h.fqdn}"  # after: the deployed one again
    assert rep["verification"]["policy"].startswith("proven ")
    assert f"drift {h.name}: {rsa_file} was changed on the host" in res.output
