"""The dry-run plan: effective parameter changes with provenance, certificate, activation."""

import re

from postfix_pfs import maincf, plan, plan_view, settings
from tests.conftest import FIXTURES
from tests.unit.helpers import NOW, recorded
from tests.unit.test_plan import HOST, converged, material
from tests.unit.test_plan import make_settings as sandbox_settings

# what ../shared/seed/postfix_pfs.sh leaves in main.cf (Debian 12): the same
# postconf -e lines the end-to-end test applies to a real host
RECIPE = dict(
    re.match(r'postconf -e "(\S+) = (.*)"$', line).groups()
    for line in (FIXTURES / "recipe_postconf.sh").read_text().splitlines()
    if line.startswith("postconf -e")
)


def view_for(f, s, mats=None):
    mats = material() if mats is None else mats
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), mats)
    return plan_view.describe(p, f, s, mats)


def test_recipe_config_shows_removals_and_protocol_changes():
    f = recorded("debian12")
    f.postconf_n.update(RECIPE)
    # as on the real host: postconf -n leaves out names it does not know, and warns
    f.postconf_n.pop("smtpd_tls_CApth")
    f.postconf_n_warnings.append(
        "postconf: warning: /etc/postfix/main.cf: unused parameter: smtpd_tls_CApth=/etc/ssl/certs"
    )
    v = view_for(f, sandbox_settings(HOST))
    removed = {r["param"] for r in v["removed"]}
    assert {
        "smtp_use_tls",
        "smtpd_use_tls",
        "smtpd_enforce_tls",
        "smtpd_tls_eecdh_grade",
        "smtpd_tls_CApth",
        "smtpd_tls_dh512_param_file",
        "tls_preempt_cipherlist",
    } <= removed
    changes = {c["param"]: c for c in v["changes"]}
    assert changes["smtpd_tls_protocols"]["new"] == ">=TLSv1.2"
    assert changes["smtpd_tls_protocols"]["origin"] == "tls_profile, package default"
    assert changes["smtpd_tls_exclude_ciphers"]["new"] == "kRSA, aNULL"
    assert "smtpd_tls_loglevel" not in changes  # same value: not a change
    assert v["activation"] == "reload"
    lines = plan_view.render(HOST, v)
    assert lines[0] == f"{HOST}: would reload Postfix"
    assert any(
        line.strip().startswith("smtpd_tls_CApth: removed (was /etc/ssl/certs)") for line in lines
    )
    assert any("generated rsa: /etc/postfix/tls/rsa-" in line for line in lines)
    assert any("why: /etc/ssl/certs/ssl-cert-snakeoil.pem names vm" in line for line in lines)


def test_provenance_names_the_layer():
    f = recorded("debian12")
    layers = [
        ("host", {"tls_loglevel": 3, "inet_interfaces": ["127.0.2.1"], "inet_protocols": "ipv4"}),
        ("group:bookworm", {"tls_loglevel": 2, "relayhost": "[relay.example.net]"}),
        ("all", {"smtp_tls_security_level": "encrypt"}),
    ]
    s = settings.resolve(HOST, layers)
    changes = {c["param"]: c["origin"] for c in view_for(f, s)["changes"]}
    assert changes["smtpd_tls_loglevel"] == "tls_loglevel, host data"
    assert changes["relayhost"] == "relayhost, group bookworm"
    assert changes["smtp_tls_security_level"] == "smtp_tls_security_level, all (group_data/all.py)"
    assert changes["smtp_tls_CAfile"] == "this host's compiled-in default (postconf -d)"


def test_converged_host_says_no_changes_in_one_line():
    s, mats = sandbox_settings(HOST), material()
    f = converged(recorded("debian12"), s, mats)
    v = view_for(f, s, mats)
    assert v["no_changes"] and plan_view.render(HOST, v) == [f"{HOST}: no changes"]


def test_replaced_key_shows_fingerprints_not_bytes():
    s, old = sandbox_settings(HOST), material()
    f = converged(recorded("debian12"), s, old)
    f.postconf_n["smtpd_tls_chain_files"] = ", ".join(p for p in f.files if "/tls/" in p)
    for m in old:  # the facts command reads the CERTIFICATE blocks of the old files
        f.files[
            f"/etc/postfix/tls/{m.kind}-{m.fingerprint[:12]}.pem"
        ].certs_pem = m.cert_pem.decode()
    new = material()
    v = view_for(f, s, new)
    text = "\n".join(plan_view.render(HOST, v))
    for o, n in zip(old, new, strict=True):
        assert (
            f"{o.kind} key replaced (fingerprint {o.spki_sha256[:16]} -> {n.spki_sha256[:16]})"
            in text
        )
        assert (
            o.key_pem.decode().splitlines()[1] not in text
            and n.key_pem.decode().splitlines()[1] not in text
        )
    assert "PRIVATE" not in text and "renewed rsa" in text
    # DANE: a rotation changes the TLSA record, and the plan says so with both digests
    for o, n in zip(old, new, strict=True):
        assert f"IN TLSA 3 1 1 {o.spki_sha256} -> {n.spki_sha256}" in text


def test_every_parameter_has_a_provenance():
    s = settings.resolve(HOST, [])
    for param in maincf.SOURCES:
        assert plan_view.provenance(param, s)
