"""tls_cert_source = acme without a CA: settings, what a run would order, the plan text,
the hook contract, what a refusal says. The real CA is in tests/e2e/test_acme.py."""

from __future__ import annotations

import datetime as dt
import socket
import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest

from postfix_pfs import acme, pki, plan, plan_view
from postfix_pfs.settings import SettingsError
from tests.unit.helpers import NOW, make_settings, recorded

NAMES = ["mx1.example.net", "smtp.example.net"]
DIRECTORY = "https://acme.example.net/directory"
HOOK = ["/usr/local/bin/dns-hook"]


def issued(store, days: dict[str, int], directory=DIRECTORY, names=NAMES):
    """The store as a run that got certificates from `directory` leaves it."""
    ca, _ = pki.ensure_ca(store, NOW - dt.timedelta(days=100), dry=True)
    mats = [pki.generate(k, names, d, NOW - dt.timedelta(days=1), ca) for k, d in days.items()]
    acme.save(store, "mx1", directory, mats)
    return mats


# --- settings ------------------------------------------------------------------------------

GOOD = {"tls_cert_source": "acme", "acme_directory": DIRECTORY, "acme_dns_hook": HOOK}


@pytest.mark.parametrize(
    "data,problem",
    [
        ({**GOOD, "acme_directory": ""}, "acme_directory: tls_cert_source = acme needs"),
        ({**GOOD, "acme_dns_hook": []}, "acme_dns_hook: the dns-01 challenge needs a hook"),
        ({**GOOD, "acme_directory": "http://acme.example.net/dir"}, "not an https:// ACME"),
        ({**GOOD, "acme_email": "postmaster"}, "acme_email: 'postmaster' is not an e-mail"),
        ({**GOOD, "acme_challenge": "http-01"}, "acme_challenge: 'http-01' is not one of"),
        ({**GOOD, "acme_dns_hook": ["hook\nrm -rf /"]}, "control character"),
        ({**GOOD, "acme_ca_bundle": "ca.pem"}, "acme_ca_bundle: 'ca.pem' is not an absolute"),
    ],
)
def test_bad_acme_settings_are_one_line_each(data, problem):
    with pytest.raises(SettingsError) as e:
        make_settings(**data)
    (line,) = e.value.problems
    assert line.startswith("mx1.example.net: ") and problem in line


def test_good_acme_settings_and_no_acme_keys_needed_otherwise():
    s = make_settings(**GOOD, acme_email="postmaster@example.net")
    assert (s.tls_cert_source, s.acme_challenge) == ("acme", "dns-01")
    assert make_settings(tls_cert_source="generate").acme_directory == ""


# --- prepare: what a run orders (no network, nothing written) --------------------------------


@pytest.mark.parametrize(
    "store_has,directory,names,renew_days,expect",
    [
        (None, DIRECTORY, NAMES, 30, {"rsa": "none in the store", "ecdsa": "none in the store"}),
        ({"rsa": 90, "ecdsa": 90}, DIRECTORY, NAMES, 30, {}),
        ({"rsa": 90, "ecdsa": 20}, DIRECTORY, NAMES, 30, {"ecdsa": "30-day renewal window"}),
        ({"rsa": 90, "ecdsa": 90}, DIRECTORY, NAMES, 95, {"rsa": "95-day", "ecdsa": "95-day"}),
        (
            {"rsa": 90, "ecdsa": 90},
            DIRECTORY,
            [*NAMES, "new.example.net"],
            30,
            {"rsa": "does not name new.example.net", "ecdsa": "does not name new.example.net"},
        ),
        (
            {"rsa": 90, "ecdsa": 90},
            "https://other.example/dir",
            NAMES,
            30,
            {"rsa": "not issued through", "ecdsa": "not issued through"},
        ),
    ],
)
def test_prepare_orders_only_what_needs_a_certificate(
    tmp_path, store_has, directory, names, renew_days, expect
):
    store = tmp_path / "store"
    old = {m.kind: m for m in issued(store, store_has)} if store_has else {}
    before = sorted((p, p.read_bytes()) for p in store.rglob("*") if p.is_file())
    mats, notes = acme.prepare(store, "mx1", names, renew_days, directory, NOW)
    assert [m.kind for m in mats] == list(pki.KINDS)
    waiting = {m.kind: m for m in acme.pending(mats)}
    assert set(waiting) == set(expect)
    for kind, why in expect.items():
        assert any(n.startswith(f"acme: {kind} certificate") and why in n for n in notes)
        assert waiting[kind].replaces == (old[kind].cert_pem if kind in old else b"")
        if kind in old:  # a new key: its TLSA record changes (the plan says so)
            assert waiting[kind].spki_sha256 != old[kind].spki_sha256
    for m in mats:
        if m.kind not in expect:
            assert m.cert_pem == old[m.kind].cert_pem
    after = sorted((p, p.read_bytes()) for p in store.rglob("*") if p.is_file())
    assert after == before, "prepare wrote to the store"


def test_a_self_signed_certificate_in_the_store_is_not_taken_for_an_acme_one(tmp_path):
    store = tmp_path / "store"
    pki.ensure(store, "mx1", NAMES, 90, 30, NOW, dry=False)  # tls_cert_source = generate
    mats, notes = acme.prepare(store, "mx1", NAMES, 30, DIRECTORY, NOW)
    assert len(acme.pending(mats)) == 2 and "not issued through" in notes[0]


def test_save_keeps_which_directory_issued_what(tmp_path):
    store = tmp_path / "store"
    old = issued(store, {"rsa": 90, "ecdsa": 90})[1]
    again = replace(pki.generate("ecdsa", NAMES, 90, NOW), replaces=old.cert_pem)
    acme.save(store, "mx1", DIRECTORY, [again])  # an ecdsa renewal alone
    mats, notes = acme.prepare(store, "mx1", NAMES, 30, DIRECTORY, NOW)
    assert acme.pending(mats) == [] and notes == []
    assert (store / "mx1" / "ecdsa.crt").read_bytes() == again.cert_pem


# --- the plan as the admin reads it -----------------------------------------------------------


def test_plan_view_names_what_is_ordered_and_no_placeholder_fingerprint(tmp_path):
    s = make_settings(**GOOD, tls_cert_names=["smtp.example.net"])
    facts = recorded("debian12")
    mats, _ = acme.prepare(tmp_path / "store", "mx1", NAMES, 30, DIRECTORY, NOW)
    decision = plan.choose_cert(s, facts, NOW)
    assert decision.source == "acme"
    p = plan.make("mx1.example.net", s, facts, decision, mats)

    view = plan_view.describe(p, facts, s, mats)
    acme.annotate(view, mats, NAMES, DIRECTORY)
    text = "\n".join(plan_view.render("mx1.example.net", view))
    assert (
        f"acme: would request rsa, ecdsa for mx1.example.net, smtp.example.net from {DIRECTORY}"
        in text
    )
    assert "/etc/postfix/tls/rsa-<issued>.pem" in text
    for m in mats:
        assert m.fingerprint[:12] not in text


# --- the order's edges: hook contract, what the CA sent, why it failed --------------------------


def test_hook_gets_action_domain_record_value(tmp_path):
    log = tmp_path / "calls"
    hook = [
        sys.executable,
        "-c",
        f"import sys; open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')",
    ]
    acme._hook(hook, "add", "mx1.example.net", "_acme-challenge.mx1.example.net.", "VALUE")
    acme._hook(hook, "remove", "mx1.example.net", "_acme-challenge.mx1.example.net.", "VALUE")
    assert log.read_text().splitlines() == [
        "add mx1.example.net _acme-challenge.mx1.example.net. VALUE",
        "remove mx1.example.net _acme-challenge.mx1.example.net. VALUE",
    ]


@pytest.mark.parametrize(
    "hook,said",
    [
        ([sys.executable, "-c", "import sys; print('zone is frozen', file=sys.stderr); sys.exit(3)"],
         "exited 3: zone is frozen"),
        (["/nonexistent/hook"], "No such file"),
    ],
)  # fmt: skip
def test_a_failing_hook_says_why(hook, said):
    with pytest.raises(acme.AcmeError, match=said):
        acme._hook(hook, "add", "mx1.example.net", "_acme-challenge.mx1.example.net.", "V")


def test_issued_chain_must_fit_the_key_and_the_names():
    m = pki.generate("rsa", NAMES, 90, NOW)
    other = pki.generate("rsa", NAMES, 90, NOW)
    assert acme.check_issued(m, NAMES, NOW) is None
    wrong_key = pki.Material("rsa", m.key_pem, other.cert_pem)
    assert "not for the requested key" in acme.check_issued(wrong_key, NAMES, NOW)
    assert "does not name new.example.net" in acme.check_issued(m, [*NAMES, "new.example.net"], NOW)


def test_an_unreachable_ca_is_one_line_and_writes_nothing(tmp_path):
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    directory = f"https://127.0.0.1:{port}/dir"
    s = SimpleNamespace(
        myhostname="mx1.example.net",
        tls_cert_names=[],
        acme_directory=directory,
        acme_email="",
        acme_ca_bundle="",
        acme_dns_hook=HOOK,
    )
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    mats, _ = acme.prepare(store, "mx1", ["mx1.example.net"], 30, directory, NOW)
    with pytest.raises(acme.AcmeError) as e:
        acme.issue(s, store, acme.pending(mats), NOW)
    assert str(e.value) == f"ACME ({directory}): cannot reach {directory}: Connection refused"
    assert list(store.iterdir()) == []  # no account key for an account that does not exist


def test_plan_view_of_certificates_the_ca_issued_on_an_earlier_run(tmp_path):
    s = make_settings(**GOOD, tls_cert_names=["smtp.example.net"])
    facts = recorded("debian12")
    store = tmp_path / "store"
    issued(store, {"rsa": 90, "ecdsa": 90})
    mats, _ = acme.prepare(store, "mx1", NAMES, 30, DIRECTORY, NOW)
    p = plan.make("mx1.example.net", s, facts, plan.choose_cert(s, facts, NOW), mats)

    view = plan_view.describe(p, facts, s, mats)
    acme.annotate(view, mats, NAMES, DIRECTORY)
    assert [line.split(":")[0] for line in view["certificate"]] == [
        "issued rsa",
        "issued ecdsa",
        "why",
    ]
    assert not any("would request" in line for line in view["certificate"])
