"""Real mail between two sandbox hosts: tables from data, fleet CA, verified TLS."""

from __future__ import annotations

import time

from tests.e2e.conftest import deploy, inventory_with, reset

PASSWORD = "Pa55-never-printed-7f3a"


def wait_for(h, path: str, text: str, timeout: float = 60) -> str:
    deadline = time.time() + timeout
    content = ""
    while time.time() < deadline:
        content = h.ssh(f"cat {path} 2>/dev/null || true").stdout
        if text in content:
            return content
        time.sleep(0.5)
    log = h.ssh("tail -n 30 /var/log/postfix.log").stdout
    raise AssertionError(f"{text!r} never arrived in {h.name}:{path}\n{log}")


def mail_setup(hosts, tmp_path, **a_extra):
    a, b = [h for h in hosts if h.suite == "bookworm"][:2]
    b.ssh("id alice >/dev/null 2>&1 || useradd -m alice")
    data = {
        a.name: {
            # route b.test to B by name (from /etc/hosts: the sandbox has no DNS)
            "transport_maps": {"b.test": f"smtp:[{b.fqdn}]"},
            "smtp_tls_policy": {f"[{b.fqdn}]": "verify"},
            "canonical_maps": {f"root@{a.fqdn}": "postmaster@a.test"},
            "postfix_extra": {"smtp_host_lookup": "native"},
            **a_extra,
        },
        b.name: {
            "virtual_alias_domains": ["b.test"],
            "virtual_alias_maps": {"info@b.test": "alice"},
        },
    }
    return (
        a,
        b,
        inventory_with(
            tmp_path,
            data,
            groups={"sandbox": "maillog_file = '/var/log/postfix.log'\ntls_cert_source = 'ca'\n"},
        ),
    )


def test_mail_over_verified_tls_with_tables_from_data(hosts, store, tmp_path):
    reset()
    a, b, inv = mail_setup(hosts, tmp_path)
    run = deploy(store=store, inventory=inv)
    assert run.returncode == 0, run.output[-3000:]
    assert (store / "_fleet-ca" / "ca.key").stat().st_mode & 0o077 == 0

    a.ssh(
        f"printf 'Subject: pfs test\\n\\nhello over TLS\\n' | sendmail -f root@{a.fqdn} info@b.test"
    )
    mbox = wait_for(b, "/var/mail/alice", "hello over TLS")
    # B's Received header: TLS with an ephemeral (EC)DH key exchange
    unfolded = mbox.replace("\n\t", " ").replace("\n    ", " ")
    received = next(line for line in unfolded.splitlines() if "using TLSv1." in line)
    assert "key-exchange X25519" in received or "key-exchange secp" in received, received
    assert "Return-Path: <postmaster@a.test>" in mbox  # canonical rewrite on A
    assert "Delivered-To: alice@" in mbox  # virtual alias on B
    # A verified B's certificate against the fleet CA
    assert (
        f"Verified TLS connection established to {b.fqdn}"
        in a.ssh("cat /var/log/postfix.log").stdout
    )


def test_one_changed_table_entry_recompiles_one_table(hosts, store, tmp_path):
    reset()
    a, b, inv = mail_setup(hosts, tmp_path)
    assert deploy(store=store, inventory=inv).returncode == 0
    mtimes = a.ssh("stat -c '%n %Y.%y' /etc/postfix/maps/*.db").stdout.splitlines()
    pid = a.master_pid()
    time.sleep(1.1)
    a2, b2, inv2 = mail_setup(
        hosts, tmp_path, transport_maps={"b.test": f"smtp:[{b.fqdn}]", "c.test": "discard:"}
    )
    run = deploy(store=store, inventory=inv2)
    assert run.returncode == 0, run.output[-2000:]
    after = a.ssh("stat -c '%n %Y.%y' /etc/postfix/maps/*.db").stdout.splitlines()
    changed = [x.split()[0] for x, y in zip(mtimes, after, strict=True) if x != y]
    assert changed == ["/etc/postfix/maps/transport.db"], changed
    assert a.master_pid() == pid and "reload" not in a.ssh("tail -n 5 /var/log/postfix.log").stdout
    assert "discard:" in a.ssh("postmap -q c.test hash:/etc/postfix/maps/transport").stdout
    again = deploy(store=store, inventory=inv2)
    assert again.returncode == 0 and again.totals()["changed"] == 0, again.output[-2000:]


def test_relay_password_is_never_shown_nor_readable(hosts, store, tmp_path):
    h = hosts[-1]
    reset(h.name)
    data = {
        h.name: {
            "relayhost": "[relay.invalid]:587",
            "relayhost_username": "mx",
            "relayhost_password": PASSWORD,
        }
    }
    inv = inventory_with(tmp_path, data)
    runs = [
        deploy(
            "--limit",
            h.name,
            "--dry",
            "--diff",
            store=store,
            inventory=inv,
            extra_data={"report_dir": str(tmp_path / "r")},
        )
    ]
    runs.append(
        deploy(
            "--limit",
            h.name,
            "--diff",
            "-v",
            store=store,
            inventory=inv,
            extra_data={"report_dir": str(tmp_path / "r")},
        )
    )
    assert runs[-1].returncode == 0, runs[-1].output[-2000:]
    for r in runs:
        assert PASSWORD not in r.output
    for report in (tmp_path / "r").glob("*.json"):
        assert PASSWORD not in report.read_text()
    modes = h.ssh(
        "stat -c '%a %U %n' /etc/postfix/maps/sasl_passwd /etc/postfix/maps/sasl_passwd.db"
    ).stdout.split("\n")
    assert [m.split()[:2] for m in modes if m] == [["600", "root"]] * 2
    assert (
        "mx:" + PASSWORD
        in h.ssh("postmap -q '[relay.invalid]:587' hash:/etc/postfix/maps/sasl_passwd").stdout
    )
    assert (
        "encrypt"
        in h.ssh("postmap -q '[relay.invalid]:587' hash:/etc/postfix/maps/tls_policy").stdout
    )
    # nothing else on the host holds it where others could read it
    leaks = h.ssh(
        f"grep -rl {PASSWORD} /etc /tmp /var/tmp /var/spool/postfix 2>/dev/null || true"
    ).stdout.split()
    for path in leaks:
        assert h.ssh(f"stat -c %a {path}").stdout.strip().endswith("00"), path
