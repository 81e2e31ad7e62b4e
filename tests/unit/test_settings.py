import pytest

from postfix_pfs import settings
from postfix_pfs.settings import SettingsError, resolve
from tests.conftest import ROOT


def test_defaults_fill_every_key():
    s = resolve("mx1.example.net", [])
    assert set(s.values) == set(settings.BY_NAME)
    assert s.myhostname == "mx1.example.net"  # default comes from the inventory name
    assert s.tls_profile == "fs-only"
    assert all(origin == "default" for origin in s.origins.values())


def test_layers_host_beats_group_beats_all():
    layers = [
        ("host", {"tls_profile": "modern"}),
        ("group:eu", {"tls_profile": "compat", "relayhost": "[relay.eu.example]:25"}),
        ("all", {"relayhost": "relay.example", "tls_loglevel": 2}),
    ]
    s = resolve("mx1.example.net", layers)
    assert (s.tls_profile, s.origins["tls_profile"]) == ("tls13-only", "host")
    assert (s.relayhost, s.origins["relayhost"]) == ("[relay.eu.example]:25", "group:eu")
    assert (s.tls_loglevel, s.origins["tls_loglevel"]) == (2, "all")
    assert s.origins["mynetworks"] == "default"


def test_pyinfra_connection_keys_are_not_ours():
    s = resolve("h.example", [("host", {"ssh_user": "root", "ssh_port": 2222, "_sudo": True})])
    assert "ssh_user" not in s.values


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(SettingsError) as e:
        resolve("mx1.example.net", [("group:eu", {"tls_profil": "modern"})])
    (line,) = e.value.problems
    assert (
        line
        == "mx1.example.net: tls_profil: unknown key in group:eu data (did you mean 'tls_profile'?"
        " a key another deploy reads: list it in pfs_foreign_keys)"
    )


# Each row: key, bad value, a fragment of the message. Every one must be refused
# with one line that names host, key and the reason.
BAD = [
    ("myhostname", "mx1.example.net\nrelayhost = evil", "control character"),
    ("myhostname", "-bad-.example", "not a valid host name"),
    ("myhostname", "a" * 64 + ".example", "not a valid host name"),
    ("myhostname", "under_score.example", "not a valid host name"),
    ("myhostname", 42, "must be str"),
    ("mydomain", "exa mple.com", "not a valid host name"),
    ("mydestination", "not-a-list", "must be list"),
    ("mydestination", ["$myhostname", "bad domain"], "not a valid domain"),
    ("mydestination", ["ok.example", 3], "list items must be strings"),
    ("inet_interfaces", ["300.1.1.1"], "is not 'all'"),
    ("inet_interfaces", ["all\r"], "control character"),
    ("inet_protocols", "ipv5", "not one of"),
    ("mynetworks", ["10.0.0.0/33"], "not an address or CIDR"),
    ("mynetworks", ["10.0.0.0/8 192.168.0.0/16"], "not an address or CIDR"),
    ("mynetworks", ["fe80::/200"], "not an address or CIDR"),
    ("relayhost", "[relay.example", "not host, [host]"),
    ("relayhost", "relay.example:99999", "out of range"),
    ("relayhost", "relay..example", "not a valid host name"),
    ("relayhost", "relay.example:25\nsmtpd_tls_security_level = none", "control character"),
    ("smtpd_banner", "hi\x00", "control character"),
    ("maillog_file", "var/log/postfix.log", "not an absolute path"),
    ("maillog_file", "/var/log/../../etc/shadow", "not an absolute path"),
    ("tls_profile", "moderne", "did you mean 'modern'"),
    ("tls_profile", "old", "not one of"),
    ("tls_pq_hybrid", "yes", "must be bool"),
    ("smtp_tls_security_level", "mandatory", "not one of"),
    ("tls_loglevel", 9, "outside 0..4"),
    ("tls_loglevel", True, "must be int"),
    ("tls_dh_group", "dh1024", "not one of"),
    ("tls_cert_source", "letsencrypt", "not one of"),
    ("tls_cert_names", ["ok.example", "bad name"], "not a valid host name"),
    ("tls_cert_days", 1, "outside 2..3650"),
    ("tls_renew_days", 0, "outside 1..365"),
    ("tls_dir", "tls", "not an absolute path"),
    ("tls_dir", "/etc", "system directory /etc"),
    ("tls_dir", "/etc/postfix", "system directory /etc/postfix"),
    ("tls_dir", "/", "system directory /"),
    ("tls_dir", "/etc/postfix/my tls", "no spaces"),
    ("table_dir", "/etc/postfix/tls", "must be separate directories"),
    ("table_dir", "/etc/postfix/tls/maps", "must be separate directories"),
    ("table_dir", "/etc/postfix/ma$ps", "no spaces"),
    ("aliases", {"postmaster:attacker@evil.example,": "root"}, "has a meaning in this table"),
    ("aliases", {"Postmaster": "root", "postmaster": "x"}, "differ only in case"),
    ("extra_maps", {"smtpd_banner": ["hash:/etc/postfix/x"]}, "not a map parameter"),
    ("extra_maps", {"alias_maps": ["hash:/etc/postfix/x\n"]}, "control character"),
    ("mynetworks", ["::1/128"], "must be bracketed"),
    ("mynetworks", ["[::1]/999"], "not an address or CIDR"),
    ("pfs_store", "~/.pfs-store", "not an absolute path"),
    ("postfix_extra", {"smtpd_tls_CApath\n": "/etc/ssl"}, "control character"),
    ("postfix_extra", {"Bad-Name": "x"}, "not a Postfix parameter name"),
    ("postfix_extra", {"message_size_limit": ["1"]}, "must be a string or number"),
    ("postfix_extra", {"header_checks": "regexp:/a\nrelayhost = x"}, "control character"),
    ("postfix_extra", "message_size_limit=1", "must be dict"),
]


@pytest.mark.parametrize(
    "key,value,fragment", BAD, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(BAD)]
)
def test_bad_values_are_refused_with_one_clear_line(key, value, fragment):
    with pytest.raises(SettingsError) as e:
        resolve("mx9.example.net", [("host", {key: value})])
    (line,) = e.value.problems
    assert line.startswith(f"mx9.example.net: {key}: ")
    assert fragment in line
    assert line.endswith("(from host)")


GOOD = [
    ("inet_interfaces", ["all"]),
    ("inet_interfaces", ["127.0.0.1", "::1", "mx.example.net"]),
    ("inet_protocols", "ipv4, ipv6"),
    ("mynetworks", ["127.0.0.0/8", "[::1]/128", "[2001:db8::]/32", "192.0.2.7"]),
    ("relayhost", "[relay.example.net]:587"),
    ("relayhost", "relay.example.net"),
    ("relayhost", "[192.0.2.1]"),
    ("relayhost", ""),
    ("mydestination", ["$myhostname", "localhost.$mydomain"]),
    ("postfix_extra", {"message_size_limit": 52428800, "smtputf8_enable": False}),
]


@pytest.mark.parametrize("key,value", GOOD)
def test_good_values_pass(key, value):
    assert resolve("mx1.example.net", [("host", {key: value})]).values[key] == value


class FakeInventory:
    """The four pyinfra data layers, as pyinfra's Inventory exposes them."""

    def __init__(self, hosts: dict, groups: dict | None = None, all_data: dict | None = None):
        self.hosts, self.groups, self.all_data = hosts, groups or {}, all_data or {}

    def get_override_data(self):
        return {}

    def get_host_data(self, name):
        return self.hosts[name]

    def get_group_data(self, group):
        return self.groups.get(group, {})

    def get_data(self):
        return self.all_data


class FakeHost:
    def __init__(self, name, inventory, groups=()):
        self.name, self.inventory, self.groups = name, inventory, list(groups)


def test_every_problem_of_every_host_is_reported_at_once():
    inv = FakeInventory(
        {"a.example": {"tls_profile": "x"}, "b.example": {"relayhost": "["}, "c.example": {}}
    )
    hosts = [FakeHost(n, inv) for n in inv.hosts]
    with pytest.raises(SettingsError) as e:
        settings.validate_inventory(hosts)
    assert [p.split(":")[0] for p in e.value.problems] == ["a.example", "b.example"]


def test_host_layers_follow_pyinfra_group_order():
    inv = FakeInventory(
        {"mx1.example": {}, "mx2.example": {"tls_profile": "compat"}},
        groups={"eu": {"tls_profile": "modern"}, "prod": {"tls_profile": "intermediate"}},
        all_data={"tls_loglevel": 2},
    )
    mx1 = settings.for_host(FakeHost("mx1.example", inv, ["prod", "eu"]))
    mx2 = settings.for_host(FakeHost("mx2.example", inv, ["prod", "eu"]))
    # pyinfra: the last group listed wins
    assert (mx1.tls_profile, mx1.origins["tls_profile"]) == ("tls13-only", "group:eu")
    assert (mx2.tls_profile, mx2.origins["tls_profile"]) == ("postfix-defaults", "host")
    assert mx1.origins["tls_loglevel"] == "all"


def test_readme_data_reference_matches_schema():
    readme = (ROOT / "README.md").read_text()
    assert settings.markdown() in readme, "regenerate with: python -m postfix_pfs.settings"


def test_store_and_report_default_to_the_directory_pyinfra_runs_in(tmp_path, monkeypatch):
    """Never next to the installed package (site-packages): the user's project."""
    monkeypatch.chdir(tmp_path)
    s = resolve("mx1.example.net", [])
    assert (s.pfs_store, s.report_dir) == (str(tmp_path / ".pfs-store"), str(tmp_path / "reports"))


# One inventory, several deploys (issue 14): what is not ours is left alone, what looks
# like ours (a close match to one of our keys, or a prefix only we use) is a typo.
SHARED_INVENTORY = {
    "nginx_worker_processes": 4,  # another deploy's settings
    "ntp_servers": ["0.debian.pool.ntp.org"],
    "users": {"alice": {"shell": "/bin/zsh"}},
    "backup_hour": 3,  # a helper variable of the admin's
    "ssl_protocols": "TLSv1.2 TLSv1.3",  # the web server's, not Postfix's
    "datacenter": "fra1",
}


def test_keys_of_other_deploys_and_helper_variables_pass():
    layers = [("host", {"tls_profile": "modern"}), ("group:web", SHARED_INVENTORY)]
    s = resolve("mx1.example.net", layers)
    assert s.tls_profile == "tls13-only"
    assert not set(SHARED_INVENTORY) & set(s.values)  # ignored, not taken as ours


@pytest.mark.parametrize(
    "key, meant",
    [
        ("tls_profil", "tls_profile"),  # close to ours
        ("myhostnme", "myhostname"),
        ("mydestinations", "mydestination"),
        ("relayhost_pasword", "relayhost_password"),
        ("virtual_alias_map", "virtual_alias_maps"),
        ("postfix_extras", "postfix_extra"),
        ("tls_cipher_list", None),  # a prefix only this deploy uses, nothing close
        ("pfs_stor", "pfs_store"),
    ],
)
def test_a_typo_of_our_keys_is_refused_with_did_you_mean(key, meant):
    with pytest.raises(SettingsError) as e:
        resolve("mx1.example.net", [("group:mx", {key: "x", **SHARED_INVENTORY})])
    (line,) = e.value.problems
    assert line.startswith(f"mx1.example.net: {key}: unknown key in group:mx data")
    assert (f"did you mean {meant!r}?" in line) == (meant is not None), line


def test_another_deploys_key_that_looks_like_ours_can_be_declared_foreign():
    data = {"hostname": "www1", "tls_cert_path": "/etc/nginx/cert.pem"}
    with pytest.raises(SettingsError) as e:
        resolve("mx1.example.net", [("all", data)])
    assert len(e.value.problems) == 2  # hostname ~ myhostname, tls_ is our prefix
    s = resolve("mx1.example.net", [("all", {**data, "pfs_foreign_keys": list(data)})])
    assert "hostname" not in s.values and s.myhostname == "mx1.example.net"
