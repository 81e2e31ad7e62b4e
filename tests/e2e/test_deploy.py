"""The backbone: one deploy puts every sandbox host on TLS with forward secrecy.

Judged from outside: Python's ssl module (not the deploy's code) does STARTTLS
on each host's port 25; files and processes are read over SSH.
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.e2e.conftest import deploy, forward_secret, reset, snapshot, starttls


def deployed_certs(store, host) -> set[bytes]:
    return {
        x509.load_pem_x509_certificate((store / host.name / f"{k}.crt").read_bytes()).public_bytes(
            Encoding.DER
        )
        for k in ("rsa", "ecdsa")
    }


def test_first_run_then_second_run_changes_nothing(hosts, store):
    reset()
    first = deploy(store=store)
    assert first.returncode == 0, first.output[-3000:]
    # per host: save the new keys in the store (at execution), stage, activate
    assert first.totals()["changed"] == 3 * len(hosts)

    pids = {}
    for h in hosts:
        proto, cipher, der = starttls(h)
        assert proto in ("TLSv1.2", "TLSv1.3"), (h.name, proto)
        assert forward_secret(proto, cipher), (h.name, proto, cipher)
        assert der in deployed_certs(store, h), (
            f"{h.name} serves a certificate the deploy did not make"
        )
        # Postfix itself is happy with the result
        assert h.ssh("postconf -n >/dev/null").stderr == "", h.name
        # key material is root-only, tlsmgr active exactly once
        modes = h.ssh("stat -c '%a %U %n' /etc/postfix/tls/*-*.pem").stdout.split("\n")
        assert [m.split()[:2] for m in modes if m] == [["600", "root"]] * 2, modes
        if h.suite == "bullseye":  # Postfix 3.5: an RFC 7919 group file, public
            dh = h.ssh("stat -c '%a %U' /etc/postfix/tls/ffdhe2048.pem").stdout.split()
            assert dh == ["644", "root"], dh
        assert h.ssh("grep -c '^tlsmgr[[:space:]]' /etc/postfix/master.cf").stdout.strip() == "1"
        pids[h.name] = h.master_pid()
        assert pids[h.name], f"{h.name}: Postfix not running"

    second = deploy("-v", store=store)
    assert second.returncode == 0, second.output[-3000:]
    t = second.totals()
    assert (t["changed"], t["error"], t["no_change"]) == (0, 0, t["ops"]), second.output[-2000:]
    # pyinfra -v says per host why nothing was done
    out = re.sub(r"\x1b\[[0-9;]*m", "", second.output)
    for h in hosts:
        noops = [ln for ln in out.splitlines() if f"[{h.name}] noop: " in ln]
        assert any("main.cf" in n and "unchanged: nothing to stage" in n for n in noops), noops
        assert any("TLS policy proof still valid (proven " in n for n in noops), noops
    for h in hosts:
        assert h.master_pid() == pids[h.name], f"{h.name}: Postfix was restarted by a no-change run"
        log = h.ssh("grep -c 'reload -- version' /var/log/postfix.log || true").stdout.strip()
        assert log == "1", f"{h.name}: expected exactly the first run's reload, saw {log}"
    # nothing was generated again either
    assert "generated" not in second.output


def test_dry_run_leaves_fresh_hosts_byte_identical(hosts, store):
    reset()
    before = {h.name: snapshot(h) for h in hosts}
    run = deploy("--dry", store=store)
    assert run.returncode == 0, run.output[-3000:]
    assert "to be generated" in run.output
    assert "Detected changes" in run.output and "Beginning operation run" not in run.output
    for h in hosts:
        assert snapshot(h) == before[h.name], f"{h.name} changed during --dry"
    assert not any(store.iterdir()), "a dry run wrote keys to the store"


def test_stages_alone_with_limit(hosts, store):
    reset()
    a, b = hosts[0], hosts[1]
    for h in (a, b):
        h.ssh("sed -i 's/^tlsmgr/#tlsmgr/' /etc/postfix/master.cf")
    pid_b = b.master_pid()

    run = deploy("--limit", a.name, store=store, deploy_file="deploys/tlsmgr.py")
    assert run.returncode == 0, run.output[-3000:]
    assert a.ssh("grep -c '^tlsmgr' /etc/postfix/master.cf").stdout.strip() == "1"
    assert b.ssh("grep -c '^tlsmgr' /etc/postfix/master.cf", check=False).stdout.strip() == "0"
    assert b.master_pid() == pid_b, "a host outside --limit was touched"
    # tlsmgr alone does not touch main.cf or certificates
    assert a.ssh("ls /etc/postfix/tls 2>/dev/null | wc -l").stdout.strip() == "0"
    b.ssh("sed -i 's/^#tlsmgr/tlsmgr/' /etc/postfix/master.cf")  # b's admin puts it back

    group = a.suite  # inventory groups are the Debian suites
    run = deploy("--limit", group, store=store, deploy_file="deploys/certificates.py")
    assert run.returncode == 0, run.output[-3000:]
    for h in hosts:
        has = h.ssh("ls /etc/postfix/tls 2>/dev/null | wc -l").stdout.strip()
        assert has == ("2" if h.suite == group else "0"), (h.name, has)
        if h.suite == group:
            assert starttls(h)[2] in deployed_certs(store, h)

    pid_a = a.master_pid()
    reloads = "grep -c 'reload -- version' /var/log/postfix.log || true"
    n = int(a.ssh(reloads).stdout)
    run = deploy("--limit", a.name, store=store, deploy_file="deploys/reload.py")
    assert run.returncode == 0, run.output[-3000:]
    assert a.master_pid() == pid_a  # a reload, not a restart
    assert int(a.ssh(reloads).stdout) == n + 1  # (the proof's handshakes log lines after it)


def test_stopped_postfix_is_started(hosts, store):
    h = hosts[-1]
    reset(h.name)
    h.ssh("postfix stop")
    assert h.master_pid() is None
    run = deploy("--limit", h.name, store=store)
    assert run.returncode == 0, run.output[-3000:]
    assert h.master_pid() is not None
    proto, cipher, _ = starttls(h)
    assert forward_secret(proto, cipher)


def test_private_keys_never_in_output(hosts, store):
    reset()
    runs = [
        deploy("--dry", "--diff", store=store),
        deploy("--diff", store=store),
        deploy("-v", store=store),
    ]
    assert all(r.returncode == 0 for r in runs), runs[-1].output[-2000:]
    keys = [(store / h.name / f"{k}.key").read_text() for h in hosts for k in ("rsa", "ecdsa")]
    body_lines = {line for key in keys for line in key.splitlines() if "-----" not in line}
    for r in runs:
        assert "PRIVATE KEY" not in r.output
        assert not body_lines & set(r.output.split()), (
            "a line of a private key appeared in the output"
        )
