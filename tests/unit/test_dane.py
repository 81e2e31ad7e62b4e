"""DANE publishing and rollover: settings, the go-live rule, and the plan of one host
(the authoritative server's answer is given; the real server is in tests/e2e/test_dane.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from postfix_pfs import dane, pki, plan
from postfix_pfs.facts import FileState, HostFacts
from postfix_pfs.settings import SettingsError
from tests.unit.helpers import NOW, make_settings, recorded

SECRET = "c2VjcmV0LWtleS1vZi10aGlydHktdHdvLWJ5dGVzLi4u"  # 32 bytes, base64
DANE = {
    "dane_server": "192.0.2.53",
    "dane_zone": "example.net",
    "dane_tsig_name": "pfs-update.",
    "dane_tsig_secret": SECRET,
    "dane_ttl": 300,
}
T0 = NOW - dt.timedelta(hours=1)


def at(seconds_ago: int) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds_ago)


# --- the go-live rule ------------------------------------------------------------------

GO_LIVE = [
    # (new keys, published, first seen, wait, may go live now, from when); "a" is served now
    ("nothing changes", set(), {"a"}, {}, 600, True, None),
    ("no record at the name: no DANE sender depends on it", {"n"}, set(), {}, 600, True, None),
    ("records of other keys only: nobody verifies today", {"n"}, {"x"}, {}, 600, True, None),
    ("new record not published yet", {"n"}, {"a"}, {}, 600, False, None),
    ("published, not yet tracked", {"n"}, {"a", "n"}, {}, 600, False, None),
    ("visible for less than the wait", {"n"}, {"a", "n"}, {"n": at(599)}, 600, False, at(-1)),
    ("visible for the wait", {"n"}, {"a", "n"}, {"n": at(600)}, 600, True, NOW),
    ("two keys: the later one decides", {"n", "m"}, {"a", "n", "m"},
     {"n": at(900), "m": at(300)}, 600, False, at(-300)),
]  # fmt: skip


@pytest.mark.parametrize(
    "case,new,published,since,wait,ok,when", GO_LIVE, ids=[c[0] for c in GO_LIVE]
)
def test_may_go_live(case, new, published, since, wait, ok, when):
    assert dane.may_go_live(new, published, since, wait, NOW, {"a"}) == (ok, when)


@pytest.mark.parametrize(
    "ttl,wait,seen,expected", [(300, 0, 0, 600), (300, 0, 3600, 7200), (300, 60, 3600, 60)]
)
def test_wait_is_twice_the_ttl_unless_set(ttl, wait, seen, expected):
    cfg = dane.Config("ns", 53, "example.net.", "k.", "hmac-sha256", ttl, wait, SECRET)
    assert cfg.wait_for(seen) == expected


# --- settings --------------------------------------------------------------------------


def test_settings_all_four_or_none():
    assert make_settings(**DANE).dane_server == "192.0.2.53"
    assert make_settings().dane_server == ""
    with pytest.raises(SettingsError) as e:
        make_settings(dane_server="192.0.2.53", dane_zone="example.net")
    assert sorted(p.split(":")[1].strip() for p in e.value.problems) == [
        "dane_tsig_name",
        "dane_tsig_secret",
    ]


@pytest.mark.parametrize(
    "key,value,problem",
    [
        ("dane_zone", "example.org", "mx1.example.net is not inside example.org"),
        ("dane_server", "ns1.example.net:99999", "out of range"),
        ("dane_server", "ns 1", "not a valid host name"),
        ("dane_tsig_algorithm", "hmac-md5", "is not one of"),
        ("dane_tsig_name", "bad name", "is not a TSIG key name"),
        ("dane_ttl", 0, "outside 1..86400"),
    ],
)
def test_settings_problems_name_host_and_key(key, value, problem):
    with pytest.raises(SettingsError) as e:
        make_settings(**{**DANE, key: value})
    assert any(p.startswith(f"mx1.example.net: {key}:") and problem in p for p in e.value.problems)


@pytest.mark.parametrize("bad", ["not base64!", "c2hvcnQ=", "pa\nss"])
def test_a_bad_secret_is_never_shown(bad):
    with pytest.raises(SettingsError) as e:
        make_settings(**{**DANE, "dane_tsig_secret": bad})
    assert "dane_tsig_secret" in str(e.value) and bad not in str(e.value)


def test_the_secret_is_in_no_repr():
    s = make_settings(**DANE)
    assert SECRET not in repr(s) and SECRET not in repr(dane.config(s))
    ro = dane.Rollover("mx1", "_25._tcp.mx1.example.net.", "published", "", dane.config(s))
    assert SECRET not in repr(ro)


@pytest.mark.parametrize(
    "value,host,port",
    [("192.0.2.1", "192.0.2.1", 53), ("192.0.2.1:5353", "192.0.2.1", 5353),
     ("[2001:db8::1]:53", "2001:db8::1", 53), ("2001:db8::1", "2001:db8::1", 53),
     ("ns1.example.net", "ns1.example.net", 53)],
)  # fmt: skip
def test_split_server(value, host, port):
    assert dane.split_server(value) == (host, port)


# --- the plan of one host ----------------------------------------------------------------


def host_serving(store, material: list[pki.Material]) -> HostFacts:
    """Facts of a host whose main.cf serves this material from tls_dir."""
    facts = recorded("debian12")
    paths = [f"/etc/postfix/tls/{m.kind}-{m.fingerprint[:12]}.pem" for m in material]
    facts.postconf_n["smtpd_tls_chain_files"] = ", ".join(paths)
    for path, m in zip(paths, material, strict=True):
        facts.files[path] = FileState(path, True, certs_pem=m.cert_pem.decode())
    return facts


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A store with current keys a host serves; the zone's answer is set per test."""
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    names = ["mx1.example.net"]
    current, _ = pki.ensure(store, "mx1.example.net", names, 60, 30, T0, dry=False)
    answer = {"records": set(), "error": None}

    def lookup(cfg, name):
        if answer["error"]:
            raise dane.DaneError(answer["error"])
        return set(answer["records"]), 300

    monkeypatch.setattr(dane, "lookup", lookup)
    return store, current, answer


def prepare(store, facts, renew_days=30):
    s = make_settings(**DANE, pfs_store=str(store), tls_cert_days=60, tls_renew_days=renew_days)
    decision = plan.CertDecision("generate", "managed by postfix-pfs in /etc/postfix/tls")
    material, _ = pki.ensure(
        store, "mx1.example.net", ["mx1.example.net"], 60, renew_days, NOW, True
    )
    return dane.rollover(s, "mx1.example.net", facts, decision, material, None, NOW)


def digests(material) -> set[str]:
    return {m.spki_sha256 for m in material}


def test_published_and_nothing_due(world):
    store, current, answer = world
    answer["records"] = digests(current)
    dane.save_state(store, "mx1.example.net", {d: T0 for d in digests(current)})
    material, _, ro = prepare(store, host_serving(store, current))
    assert ro.stage == "published" and not ro.acts_before and not ro.acts_after
    assert digests(material) == digests(current)


def test_first_records_go_out_with_the_keys(world):
    store, current, answer = world
    facts = recorded("debian12")  # serves the snakeoil certificate; no record at the name
    material, _, ro = prepare(store, facts)
    assert ro.stage == "publish" and ro.publish == digests(material) == ro.missing


def test_a_due_renewal_publishes_the_next_key_and_keeps_the_current(world):
    store, current, answer = world
    answer["records"] = digests(current)
    material, decision, ro = prepare(store, host_serving(store, current), renew_days=90)
    assert ro.stage == "next" and digests(material) == digests(current)
    assert not any(m.generated_now for m in material) and decision.source == "generate"
    assert len(ro.new_next) == 2 and ro.missing == digests(ro.new_next)
    assert ro.publish == digests(current) | digests(ro.new_next) and not ro.withdraw


def test_the_next_key_goes_live_after_the_wait_and_the_old_record_goes(world):
    store, current, answer = world
    answer["records"] = digests(current)
    dane.save_state(store, "mx1.example.net", {d: T0 for d in digests(current)})
    facts = host_serving(store, current)
    _, _, ro = prepare(store, facts, renew_days=90)
    dane.save_next(store, "mx1.example.net", ro.new_next)
    nxt = digests(ro.new_next)
    answer["records"] = digests(current) | nxt
    dane.save_state(store, "mx1.example.net", {d: at(599) for d in answer["records"]})
    assert ro.stage == "next"
    _, _, early = prepare(store, facts, renew_days=90)
    assert early.stage == "waiting" and not early.acts_before and early.go_live_at
    dane.save_state(store, "mx1.example.net", {d: at(600) for d in answer["records"]})
    material, _, ro = prepare(store, facts, renew_days=90)
    assert ro.stage == "switch" and digests(material) == nxt
    assert all(m.generated_now for m in material)  # saved to the store at execution
    assert ro.withdraw == digests(current) and ro.ready == nxt and ro.acts_after


def test_an_unreachable_server_holds_the_change(world):
    store, current, answer = world
    answer["error"] = "DANE: looking up _25._tcp.mx1.example.net. at 192.0.2.53:53: no answer"
    material, _, ro = prepare(store, host_serving(store, current), renew_days=90)
    assert ro.stage == "unavailable" and ro.acts_before and "the current key stays" in ro.error
    assert digests(material) == digests(current)


def test_without_the_store_the_host_keeps_its_files(world, tmp_path):
    store, current, answer = world
    answer["records"] = digests(current)
    facts = host_serving(store, current)
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    material, decision, ro = prepare(empty, facts)
    assert ro.stage == "next" and material == [] and decision.source == "existing"
    assert decision.files == {"smtpd_tls_chain_files": facts.postconf_n["smtpd_tls_chain_files"]}


def test_notes_say_the_change_waits():
    ro = dane.Rollover("h", "n", "waiting", "")
    note = "rsa certificate to be generated (expires 2027-01-01, inside the 30-day renewal window)"
    assert dane.reword(note, ro) == (
        "rsa key change due (expires 2027-01-01, inside the 30-day renewal window): "
        "waits for its DANE record (waiting)"
    )
    assert dane.reword(note, dane.Rollover("h", "n", "switch", "")) == note


def test_after_the_switch_a_served_key_without_record_fails_and_withdraws_nothing(
    tmp_path, monkeypatch
):
    cfg = dane.config(make_settings(**DANE))
    ro = dane.Rollover("mx1", "_25._tcp.mx1.example.net.", "switch", "", cfg, tmp_path)
    ro.withdraw = {"old"}
    updates = []
    monkeypatch.setattr(dane, "lookup", lambda cfg, name: ({"old", "new-rsa"}, 300))
    monkeypatch.setattr(dane, "update", lambda cfg, name, **kw: updates.append(kw))
    with pytest.raises(dane.DaneError) as e:
        dane.after(ro, {"rsa": "new-rsa", "ecdsa": "new-ecdsa"})
    assert str(e.value) == (
        "DANE: the served ecdsa key (3 1 1 new-ecdsa) has no record at "
        "_25._tcp.mx1.example.net. on 192.0.2.53:53"
    )
    assert updates == []
    dane.after(ro, {"rsa": "new-rsa"})  # every served key published: the old record goes
    assert updates == [{"delete": {"old"}}]
