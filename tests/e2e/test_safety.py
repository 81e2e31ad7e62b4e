"""Never break a running mail server: bad input, failing checks, failing reloads,
dropped connections, full disks, concurrent runs. Each case on real sandbox hosts."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time

from tests.conftest import ROOT
from tests.e2e.conftest import (
    SANDBOX,
    deploy,
    deploy_cmd,
    forward_secret,
    reset,
    snapshot,
    starttls,
)
from tests.unit.test_settings import BAD as ALL_BAD

# pfs_store is set by the test harness on the command line (which wins)
BAD = [row for row in ALL_BAD if row[0] != "pfs_store"]


def main_cf_sha(h) -> str:
    return hashlib.sha256((h.root / "etc/postfix/main.cf").read_bytes()).hexdigest()


def healthy(h) -> None:
    assert h.master_pid(), f"{h.name}: Postfix is not running"
    assert h.ssh("postconf -n >/dev/null").stderr == "", h.name
    proto, cipher, _ = starttls(h)
    assert proto in ("TLSv1.2", "TLSv1.3")


def test_malformed_inputs_are_all_reported_and_no_host_is_changed(hosts, store, tmp_path):
    """One inventory, one bad value per host, all pointing at one real host."""
    reset()
    target = hosts[0]
    inv = tmp_path / "bad.py"
    lines = ["bad = ["]
    for i, (key, value, _) in enumerate(BAD):
        data = {
            "ssh_hostname": target.address,
            "ssh_user": "root",
            "ssh_key": str(SANDBOX / "id_ed25519"),
            "ssh_known_hosts_file": str(SANDBOX / "known_hosts"),
            key: value,
        }
        lines.append(f"    ('bad{i:02d}', {data!r}),")
    lines.append("]")
    inv.write_text("\n".join(lines) + "\n")
    before = {h.name: snapshot(h) for h in hosts}
    run = deploy("--parallel", "5", store=store, inventory=str(inv))
    assert run.returncode != 0
    assert "invalid inventory data, no host was changed" in run.output
    assert "Beginning operation run" not in run.output
    for i, (key, _, fragment) in enumerate(BAD):
        line = next(
            (ln for ln in run.output.splitlines() if ln.strip().startswith(f"bad{i:02d}: {key}: ")),
            None,
        )
        assert line and fragment in line, f"bad{i:02d} ({key}) not reported clearly"
    assert len(BAD) >= 30
    for h in hosts:
        assert snapshot(h) == before[h.name]


def test_plan_problems_of_every_host_are_reported_together(hosts, store):
    reset()
    before = {h.name: snapshot(h) for h in hosts}
    run = deploy(store=store, extra_data={"postfix_extra": {"smtpd_tls_CApth": "/etc/ssl/certs"}})
    assert run.returncode != 0
    for h in hosts:
        assert (
            f"{h.name}: postfix_extra: smtpd_tls_CApth unknown to this host's Postfix" in run.output
        )
        assert snapshot(h) == before[h.name]  # the facts command makes no handshake


def test_missing_lookup_table_is_caught_on_the_host(hosts, store):
    h = hosts[0]
    reset(h.name)
    sha, pid = main_cf_sha(h), h.master_pid()
    run = deploy(
        "--limit",
        h.name,
        store=store,
        extra_data={"postfix_extra": {"transport_maps": "hash:/etc/postfix/nonexistent"}},
    )
    assert run.returncode != 0
    assert "lookup table hash:/etc/postfix/nonexistent cannot be read" in run.output
    assert main_cf_sha(h) == sha and h.master_pid() == pid
    assert not h.ssh("ls /etc/postfix/tls 2>/dev/null", check=False).stdout.strip(), (
        "material switched in"
    )
    healthy(h)


def test_failing_reload_restores_the_old_config_and_other_hosts_carry_on(hosts, store):
    reset()
    bad, others = hosts[0], hosts[1:]
    bad.ssh(
        "mv /etc/init.d/postfix /etc/init.d/postfix.real && printf '%s\\n' '#!/bin/sh' "
        "'[ \"$1\" = reload ] && { echo reload broken on purpose >&2; exit 1; }' "
        "'exec /etc/init.d/postfix.real \"$@\"' > /etc/init.d/postfix && chmod 755 /etc/init.d/postfix"
    )
    sha = main_cf_sha(bad)
    run = deploy(store=store)
    assert run.returncode != 0
    assert "FAILED: /etc/init.d/postfix reload failed: reload broken on purpose" in run.output
    assert "restoring the previous configuration" in run.output
    assert main_cf_sha(bad) == sha
    assert bad.ssh("ls /etc/postfix/tls | wc -l").stdout.strip() == "0", "new material left behind"
    healthy(bad)
    for h in others:  # the failure of one host did not stop the others
        _, _, der = starttls(h)
        assert h.ssh("ls /etc/postfix/tls/*-*.pem | wc -l").stdout.strip() == "2", h.name


def test_ssh_cut_during_activation_leaves_old_or_new_never_a_mix(hosts, store):
    h = hosts[-1]
    reset(h.name)
    old = main_cf_sha(h)
    lock = h.root / "etc/postfix/.pfs-lock"
    proc = subprocess.Popen(
        deploy_cmd("--limit", h.name, store=store),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not lock.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    assert lock.exists(), "never saw the activation start"
    proc.send_signal(signal.SIGKILL)  # the controller dies: the SSH connection drops
    proc.wait()
    deadline = time.time() + 60
    while lock.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert not lock.exists(), "activation did not finish on its own"
    new = main_cf_sha(h)
    tls = (
        sorted(os.listdir(h.root / "etc/postfix/tls"))
        if (h.root / "etc/postfix/tls").exists()
        else []
    )
    tls = [f for f in tls if not f.startswith("ffdhe")]  # Postfix < 3.7: the DH group file
    if new == old:
        assert tls == [], "old main.cf with new material"
    else:
        assert len(tls) == 2 and all(f in (h.root / "etc/postfix/main.cf").read_text() for f in tls)
    healthy(h)
    again = deploy("--limit", h.name, store=store)
    assert again.returncode == 0, again.output[-2000:]
    final = deploy("--limit", h.name, store=store)
    assert final.totals()["changed"] == 0
    assert forward_secret(*starttls(h)[:2])


def test_full_filesystem_is_refused_with_a_clear_error(hosts, store, tmp_path):
    h = hosts[0]
    reset(h.name)
    etc = h.root / "etc/postfix"
    sha, pid = main_cf_sha(h), h.master_pid()
    copy = tmp_path / "postfix"
    subprocess.run(["cp", "-a", str(etc), str(copy)], check=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=755", "tmpfs", str(etc)], check=True
    )
    try:
        subprocess.run(
            f"cp -a {copy}/. {etc}/ && (dd if=/dev/zero of={etc}/filler bs=4k || true)",
            shell=True,
            check=True,
            capture_output=True,
        )
        run = deploy("--limit", h.name, store=store)
        assert run.returncode != 0
        assert "KiB free on the filesystem of /etc/postfix; nothing was changed" in run.output
        assert main_cf_sha(h) == sha and h.master_pid() == pid
    finally:
        subprocess.run(["umount", str(etc)], check=True)
    healthy(h)


def test_two_deploys_at_once_end_consistent(hosts, store):
    h = hosts[1]
    reset(h.name)
    procs = [
        subprocess.Popen(
            deploy_cmd("--limit", h.name, store=store),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    codes = [p.returncode for p in procs]
    for code, out in zip(codes, outs, strict=True):
        # one waits for the other, or fails saying so; never silently
        assert code == 0 or "another deploy" in out, out[-2000:]
    assert 0 in codes
    healthy(h)
    final = deploy("--limit", h.name, store=store)
    assert final.returncode == 0 and final.totals()["changed"] == 0, final.output[-2000:]
