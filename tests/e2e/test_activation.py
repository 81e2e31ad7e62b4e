"""The activation after the upload (operations/activate.sh), on real hosts: every way
it can refuse or fail leaves the previous files byte-identical, Postfix running and
serving the previous certificate, and says why. Also the lock and the backups."""

from __future__ import annotations

import smtplib
import subprocess
import time

import pytest

from tests.e2e.conftest import deploy, reset, starttls

BOOKKEEPING = (".pfs-backup", ".pfs-lock", ".pfs-stage")


def etc_state(h) -> dict:
    """Every file under /etc/postfix (bytes, mode, owner), the deploy's bookkeeping aside."""
    base, out = h.root / "etc/postfix", {}
    for p in sorted(base.rglob("*")):
        rel = str(p.relative_to(base))
        if rel.startswith(BOOKKEEPING) or p.is_symlink() or not p.is_file():
            continue
        st = p.stat()
        out[rel] = (p.read_bytes(), st.st_mode, st.st_uid)
    return out


class Before:
    """The host before a run that must fail: files, master pid, served certificate."""

    def __init__(self, h):
        self.h, self.files, self.der = h, etc_state(h), served(h)

    def check(self, run, reason: str) -> None:
        assert run.returncode != 0, run.output[-3000:]
        assert reason in run.output, run.output[-3000:]
        now = etc_state(self.h)
        changed = sorted(k for k in set(now) | set(self.files) if now.get(k) != self.files.get(k))
        assert changed == [], f"{self.h.name}: not as before: {changed}"
        assert self.h.master_pid(), f"{self.h.name}: Postfix is not running"
        assert served(self.h) == self.der, f"{self.h.name}: serves another certificate"


def served(h) -> bytes | None:
    """The certificate port 25 serves; None where it offers no STARTTLS (fresh Debian 13)."""
    try:
        return starttls(h)[2]
    except smtplib.SMTPNotSupportedError:
        return None


def host(hosts, suite):
    return next(h for h in hosts if h.suite == suite)


def refused_on_trixie(hosts, store, extra: dict, reason: str) -> None:
    """A deploy of postfix_extra `extra` to the Debian 13 host fails with `reason` and
    leaves it as it was (Before.check)."""
    h = host(hosts, "trixie")
    reset(h.name)
    before = Before(h)
    run = deploy("--limit", h.name, store=store, extra_data={"postfix_extra": extra})
    before.check(run, reason)


def test_a_postconf_warning_on_the_staged_config_stops_before_the_switch(hosts, store):
    # Postfix 3.10 warns about parameters it will remove
    refused_on_trixie(
        hosts,
        store,
        {"smtpd_use_tls": "yes"},
        "postconf -n warns about the new configuration (introduced by this run, fatal)",
    )


def test_postfix_check_rejecting_the_staged_config_stops_before_the_switch(hosts, store):
    refused_on_trixie(
        hosts, store, {"mail_owner": "nosuchuser"}, "postfix check rejects the new configuration"
    )


def test_a_failed_starttls_after_the_switch_restores_the_previous_files(hosts, store):
    """A cipher list OpenSSL cannot use passes postconf and postfix check; smtpd then
    cannot set up TLS at all."""
    h = hosts[1]
    reset(h.name)
    before = Before(h)
    run = deploy(
        "--limit",
        h.name,
        store=store,
        extra_data={
            "tls_profile": "custom",  # the cipher lists are in the protected TLS set
            "postfix_extra": {"tls_medium_cipherlist": "NOSUCHCIPHER"},
        },
    )
    before.check(run, "failed after reload")
    assert "restoring the previous configuration" in run.output


def test_a_wrong_certificate_served_after_the_switch_restores_the_previous_files(hosts, store):
    """Something swaps the new RSA chain for the old snakeoil one as Postfix reloads."""
    h = hosts[0]
    reset(h.name)
    h.ssh(
        "cat /etc/ssl/private/ssl-cert-snakeoil.key /etc/ssl/certs/ssl-cert-snakeoil.pem "
        "> /root/old.pem && mv /etc/init.d/postfix /etc/init.d/postfix.real && "
        "printf '%s\\n' '#!/bin/sh' "
        '\'[ "$1" = reload ] && for f in /etc/postfix/tls/rsa-*.pem; do [ -e "$f" ] && cp /root/old.pem "$f"; done; true\' '
        "'exec /etc/init.d/postfix.real \"$@\"' > /etc/init.d/postfix && chmod 755 /etc/init.d/postfix"
    )
    before = Before(h)
    run = deploy("--limit", h.name, store=store)
    before.check(run, "verification failed after reload")
    assert "not the deployed" in run.output


def mount_full_tmpfs(path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8k,mode=700", "tmpfs", str(path)], check=True
    )
    subprocess.run(f"dd if=/dev/zero of={path}/filler bs=1k 2>/dev/null", shell=True, check=False)


def test_enospc_during_the_switch_restores_the_previous_files(hosts, store):
    """tls_dir on a full filesystem: the tables are switched first, then the key
    material cannot be written; the tables go again."""
    h = hosts[1]
    reset(h.name)
    tls = h.root / "etc/postfix/tls"
    mount_full_tmpfs(tls)
    try:
        before = Before(h)
        run = deploy("--limit", h.name, store=store, extra_data={"aliases": {"ops": "root"}})
        before.check(run, "could not write /etc/postfix/tls/")
        assert not (h.root / "etc/postfix/maps/aliases").exists()
    finally:
        subprocess.run(["umount", str(tls)], check=True)


def test_a_failed_backup_stops_before_the_switch(hosts, store):
    h = hosts[1]
    reset(h.name)
    backups = h.root / "etc/postfix/.pfs-backup"
    mount_full_tmpfs(backups)
    try:
        before = Before(h)
        run = deploy("--limit", h.name, store=store)
        before.check(run, "failed (disk full?); nothing was changed")
        assert "postfix-pfs: FAILED: backup of " in run.output
    finally:
        subprocess.run(["umount", str(backups)], check=True)


def test_a_restore_that_cannot_prove_itself_is_reported_loudly(hosts, store):
    """The reload fails and, meanwhile, something spoiled the backup of main.cf."""
    h = hosts[0]
    reset(h.name)
    h.ssh(
        "mv /etc/init.d/postfix /etc/init.d/postfix.real && printf '%s\\n' '#!/bin/sh' "
        '\'if [ "$1" = reload ]; then for f in /etc/postfix/.pfs-backup/*/files/etc/postfix/main.cf; '
        'do echo "# spoiled" >> "$f"; done; exit 1; fi\' '
        "'exec /etc/init.d/postfix.real \"$@\"' > /etc/init.d/postfix && chmod 755 /etc/init.d/postfix"
    )
    run = deploy("--limit", h.name, store=store)
    assert run.returncode != 0
    assert (
        "RESTORE FAILED: /etc/postfix/main.cf differs from the file backed up; the backup is in /etc/postfix/.pfs-backup/"
        in run.output
    )
    assert (
        "FAILED " in run.output
        and "RESTORE FAILED" in run.output.split("--> postfix-pfs summary")[-1]
    )
    assert h.master_pid()


def test_backups_keep_the_last_five(hosts, store):
    h = hosts[0]
    reset(h.name)
    h.ssh(
        "mkdir -p "
        + " ".join(f"/etc/postfix/.pfs-backup/2020010{i}T000000-1/files" for i in range(1, 7))
    )
    run = deploy("--limit", h.name, store=store)
    assert run.returncode == 0, run.output[-2000:]
    kept = sorted(p.name for p in (h.root / "etc/postfix/.pfs-backup").iterdir())
    assert len(kept) == 5 and kept[:4] == [f"2020010{i}T000000-1" for i in range(3, 7)]
    assert (h.root / "etc/postfix/.pfs-backup" / kept[-1] / "files/etc/postfix/main.cf").exists()


# --- the lock ------------------------------------------------------------------------------


def hold_lock(h, seconds: int) -> str:
    """Another run holding the lock: its pid (flock's, which holds it for `seconds`)."""
    pid = h.ssh(
        f"nohup flock /etc/postfix/.pfs-lock.flock sleep {seconds} >/dev/null 2>&1 </dev/null & echo $!"
    ).stdout.strip()
    time.sleep(0.5)
    return pid


def test_lock_a_second_run_waits_for_the_first(hosts, store):
    h = host(hosts, "trixie")
    reset(h.name)
    started = time.time()
    hold_lock(h, 15)
    run = deploy("--limit", h.name, "-vvv", store=store)  # -vvv: the activation's own output
    assert run.returncode == 0, run.output[-2000:]
    assert time.time() - started >= 15, "did not wait for the lock"
    assert "waiting for another deploy" in run.output


def test_lock_timeout_changes_nothing(hosts, store):
    h = host(hosts, "trixie")
    reset(h.name)
    holder = hold_lock(h, 60)
    try:
        before = Before(h)
        run = deploy("--limit", h.name, store=store, extra_data={"_env": {"PFS_LOCK_WAIT": "3"}})
        before.check(run, "has been activating on this host for 3s; nothing was changed")
    finally:
        h.ssh(f"kill {holder} || true")


@pytest.mark.parametrize("pid", ["1", "999999"])
def test_lock_of_a_dead_run_is_no_obstacle(hosts, store, pid):
    """A dead run's lock: its pid is gone, or (after a reboot) another process has it."""
    h = host(hosts, "trixie")
    reset(h.name)
    h.ssh(
        f"mkdir -p /etc/postfix/.pfs-lock && echo {pid} > /etc/postfix/.pfs-lock/pid && "
        f"echo '{pid} 00000000-0000-0000-0000-000000000000 1' > /etc/postfix/.pfs-lock/owner"
    )
    started = time.time()
    run = deploy("--limit", h.name, store=store)
    assert run.returncode == 0, run.output[-2000:]
    assert "waiting for another deploy" not in run.output
    assert time.time() - started < 60


def test_a_bad_smtpd_only_value_that_the_staged_check_passes_is_rolled_back(hosts, store):
    """A value only smtpd reads (not a global parameter: neither `postfix status` nor
    `postfix check` judges it) passes the staged check; the new smtpd processes die on
    it after the reload, the proof's handshake fails, the previous files come back."""
    refused_on_trixie(
        hosts, store, {"smtpd_timeout": "abc"}, "restoring the previous configuration"
    )
