"""A lived-in host: its own parameters stay, the TLS policy is protected, keys continue."""

import dataclasses
import datetime as dt

import pytest

from postfix_pfs import adopt, pki, plan, plan_view, settings
from postfix_pfs.facts import FileState
from tests.unit.helpers import NOW, recorded
from tests.unit.helpers import make_settings as plain_settings
from tests.unit.test_plan import HOST, material

# what a production MX carries that this deploy does not manage
LIVED_IN = {
    "smtpd_milters": "unix:/run/opendkim/opendkim.sock",
    "non_smtpd_milters": "$smtpd_milters",
    "milter_default_action": "accept",
    "smtpd_sasl_auth_enable": "yes",
    "smtpd_sasl_type": "dovecot",
    "smtpd_sasl_path": "private/auth",
    "smtpd_recipient_restrictions": "permit_mynetworks, permit_sasl_authenticated, "
    "reject_unauth_destination, reject_rbl_client zen.spamhaus.org",
    "virtual_mailbox_domains": "virt.example",
    "virtual_mailbox_maps": "hash:/etc/postfix/vmailbox",
    "virtual_mailbox_base": "/var/mail/vhosts",
    "virtual_uid_maps": "static:5000",
    "virtual_gid_maps": "static:5000",
    "message_size_limit": "20480000",
    "header_checks": "regexp:/etc/postfix/header_checks",
    "recipient_delimiter": "-",
    "inet_interfaces": "127.0.2.9",
}


def lived_in():
    f = recorded("debian12")
    f.postconf_n.update(LIVED_IN)
    f.files["/etc/postfix/main.cf"] = dataclasses.replace(
        f.files["/etc/postfix/main.cf"], sha256="lived-in"
    )
    return f


def plan_for(f, s, mats=None):
    s = adopt.effective(s, f)
    mats = material() if mats is None else mats
    return plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), mats), s


def test_every_unmanaged_parameter_is_kept_byte_identical():
    f = lived_in()
    p, _ = plan_for(f, plain_settings(HOST))
    for name, value in LIVED_IN.items():
        assert p.params[name] == value, name
        assert name in p.kept
    assert "smtpd_milters = unix:/run/opendkim/opendkim.sock" in p.main_cf
    assert "# --- Kept from this host's main.cf" in p.main_cf


@pytest.mark.parametrize(
    "key,param,host_value,expect",
    [
        ("inet_interfaces", "inet_interfaces", "loopback-only", ["loopback-only"]),
        ("inet_protocols", "inet_protocols", "ipv4", "ipv4"),
        ("mynetworks", "mynetworks", "10.0.0.0/8, 127.0.0.0/8", ["10.0.0.0/8", "127.0.0.0/8"]),
        ("mydestination", "mydestination", "$myhostname, localhost", ["$myhostname", "localhost"]),
        ("relayhost", "relayhost", "[smarthost.example]:587", "[smarthost.example]:587"),
        ("myhostname", "myhostname", "mx.example.org", "mx.example.org"),
        ("smtpd_banner", "smtpd_banner", "$myhostname ESMTP ready", "$myhostname ESMTP ready"),
        ("smtp_tls_security_level", "smtp_tls_security_level", "dane", "dane"),
        ("tls_loglevel", "smtpd_tls_loglevel", "2", 2),
    ],
)
def test_identity_and_network_keys_default_to_the_host(key, param, host_value, expect):
    f = recorded("debian12")
    f.postconf_n[param] = host_value
    s = adopt.effective(plain_settings(HOST), f)
    assert s.values[key] == expect
    assert s.origins[key] == adopt.HOST_ORIGIN
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), material())
    assert p.params[param] == host_value  # the host's own text, byte for byte


def test_inventory_wins_over_the_host_and_schema_default_applies_on_a_fresh_host():
    f = recorded("debian12")
    f.postconf_n["inet_interfaces"] = "loopback-only"
    s = adopt.effective(plain_settings(HOST, inet_interfaces=["127.0.2.1"]), f)
    assert s.inet_interfaces == ["127.0.2.1"]
    fresh = recorded("rhel9")  # no main.cf parameters at all
    s = adopt.effective(plain_settings(HOST), fresh)
    assert s.inet_interfaces == ["all"] and s.origins["inet_interfaces"] == "default"


def test_obsolete_warned_and_protected_host_parameters_are_dropped_with_a_reason():
    f = lived_in()
    del f.postconf_n["smtp_tls_security_level"]  # it would override the obsolete switches
    f.postconf_n.update(
        {
            "smtpd_use_tls": "yes",
            "smtp_enforce_tls": "yes",
            "smtpd_tls_protocols": ">=TLSv1",
            "smtpd_tls_ciphers": "export",
            "tls_preempt_cipherlist": "yes",
        }
    )
    f.postconf_n_warnings.append(
        "postconf: warning: /etc/postfix/main.cf: unused parameter: smtpd_tls_CApth=/etc/ssl/certs"
    )
    p, s = plan_for(f, plain_settings(HOST))
    why = {name: reason for name, _, reason in p.dropped}
    assert "smtpd_tls_security_level" in why["smtpd_use_tls"]
    assert why["smtpd_tls_CApth"].startswith("Postfix warns: ")
    assert "protected" in why["smtpd_tls_ciphers"] and "protected" in why["tls_preempt_cipherlist"]
    assert p.params["smtpd_tls_protocols"] == ">=TLSv1.2"  # replaced, not kept
    assert s.smtp_tls_security_level == "encrypt"  # smtp_enforce_tls = yes is not weakened
    lines = plan_view.render(HOST, plan_view.describe(p, f, s, material()))
    assert any(line.strip() == "smtpd_milters: kept from this host" for line in lines)
    assert any(
        line.strip().startswith("smtpd_use_tls: removed (was yes): replaced") for line in lines
    )


def test_a_host_that_required_tls_inbound_keeps_requiring_it():
    f = recorded("debian12")
    f.postconf_n["smtpd_tls_security_level"] = "encrypt"
    p, _ = plan_for(f, plain_settings(HOST))
    assert p.params["smtpd_tls_security_level"] == "encrypt"


@pytest.mark.parametrize(
    "drop,kept,gone",
    [
        (["message_size_limit"], {"smtpd_milters"}, {"message_size_limit"}),
        (["all"], set(), {"smtpd_milters", "message_size_limit", "virtual_mailbox_domains"}),
    ],
)
def test_drop_host_params_by_name_or_all(drop, kept, gone):
    p, s = plan_for(lived_in(), plain_settings(HOST, drop_host_params=drop))
    assert kept <= set(p.params) and not gone & set(p.params)
    if drop == ["all"]:  # strictly declarative: the schema's defaults, not the host's
        assert p.params["inet_interfaces"] == "all"
        assert p.params["recipient_delimiter"] == "+"


@pytest.mark.parametrize(
    "params,open_",
    [
        ({"mynetworks": "127.0.0.0/8"}, False),
        ({"mynetworks": "0.0.0.0/0"}, True),
        ({"mynetworks": "127.0.0.0/8 [::]/0"}, True),
        ({"mynetworks": "hash:/etc/postfix/network_table"}, False),
        ({"smtpd_relay_restrictions": "permit"}, True),
        ({"smtpd_relay_restrictions": "permit_mynetworks reject_unauth_destination"}, False),
        ({"smtpd_relay_restrictions": "", "smtpd_recipient_restrictions": "permit"}, True),
        (
            {
                "smtpd_relay_restrictions": "",
                "smtpd_recipient_restrictions": "reject_unauth_destination",
            },
            False,
        ),
        ({"smtpd_relay_restrictions": "permit_sasl_authenticated, permit, reject"}, True),
    ],
)
def test_open_relay_table(params, open_):
    defaults = {"smtpd_relay_restrictions": "permit_mynetworks defer_unauth_destination"}
    assert (adopt.open_relay_problem(params, defaults) is not None) == open_


def test_open_relay_is_refused_unless_acknowledged():
    f = recorded("debian12")
    f.postconf_n["mynetworks"] = "0.0.0.0/0"
    with pytest.raises(plan.PlanError, match=r"d12-mx1.sandbox.test: mynetworks = 0.0.0.0/0"):
        plan_for(f, plain_settings(HOST))
    p, _ = plan_for(f, plain_settings(HOST, allow_open_relay=True))
    assert p.params["mynetworks"] == "0.0.0.0/0"


@pytest.mark.parametrize("name", sorted(adopt.PROTECTED))
def test_postfix_extra_cannot_override_the_protected_set(name):
    with pytest.raises(settings.SettingsError) as e:
        plain_settings(HOST, postfix_extra={name: "x"})
    assert f"{HOST}: postfix_extra: {name} is part of tls_profile fs-only" in str(e.value)
    s = plain_settings(HOST, tls_profile="custom", postfix_extra={name: "x"})
    assert s.tls_profile == "custom"


def test_custom_profile_renders_its_override_and_says_custom():
    f = recorded("debian12")
    s = plain_settings(HOST, tls_profile="custom", postfix_extra={"smtpd_tls_protocols": ">=TLSv1"})
    p, _ = plan_for(f, s)
    assert p.params["smtpd_tls_protocols"] == ">=TLSv1"
    assert p.params["smtpd_tls_exclude_ciphers"] == "kRSA, aNULL"


# --- key continuity -----------------------------------------------------------------------


def converged_with(mats, days_left=300):
    """A host that serves material this deploy made, as the facts command sees it."""
    f = recorded("debian12")
    paths = []
    for m in mats:
        path = f"/etc/postfix/tls/{m.kind}-{m.fingerprint[:12]}.pem"
        f.files[path] = FileState(
            path, True, "x", "600", "root", "root", certs_pem=m.cert_pem.decode()
        )
        paths.append(path)
    f.postconf_n["smtpd_tls_chain_files"] = ", ".join(paths)
    return f


@pytest.mark.parametrize("source", ["auto", "generate", "ca"])
def test_empty_store_keeps_the_hosts_own_keys_in_place(source):
    mats = material()
    f = converged_with(mats)
    s = plain_settings(HOST, tls_cert_source=source)
    decision = plan.choose_cert(s, f, NOW)
    assert decision.reason.startswith("managed by postfix-pfs")
    kept = plan.keep_in_place(s, f, decision, NOW)
    assert kept is not None and kept.source == "existing"
    p = plan.make(HOST, s, f, kept, [])
    assert p.params["smtpd_tls_chain_files"] == f.postconf_n["smtpd_tls_chain_files"]
    assert not p.remove and not [x for x in p.changed if x.secret]
    assert p.expected == {m.kind: m.fingerprint for m in mats}


def test_empty_store_still_renews_inside_the_window():
    mats = [pki.generate(k, [HOST], 20, NOW) for k in pki.KINDS]  # 20 days left, window 30
    f = converged_with(mats)
    s = plain_settings(HOST)
    assert plan.keep_in_place(s, f, plan.choose_cert(s, f, NOW), NOW) is None
    later = NOW + dt.timedelta(days=1)
    assert plan.keep_in_place(s, f, plan.choose_cert(s, f, later), later) is None


def test_store_is_written_only_by_save_and_refuses_a_concurrent_writer(tmp_path):
    store = tmp_path / "store"
    mats, _ = pki.ensure(store, "mx1", [HOST], 60, 30, NOW, dry=True)
    assert not store.exists()  # preparing writes nothing
    pki.save(store, "mx1", mats)
    assert pki.stored(store, "mx1")
    assert oct((store / "mx1" / "rsa.key").stat().st_mode & 0o777) == "0o600"
    again, _ = pki.ensure(store, "mx1", [HOST], 60, 30, NOW, dry=True)
    assert [m.fingerprint for m in again] == [m.fingerprint for m in mats]  # reused
    # two runs prepared against the same empty store: the second one to save is refused
    other, _ = pki.ensure(tmp_path / "other", "mx1", [HOST], 60, 30, NOW, dry=True)
    with pytest.raises(pki.StoreError, match="another deploy stored a new"):
        pki.save(store, "mx1", other)
