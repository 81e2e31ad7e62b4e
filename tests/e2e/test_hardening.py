"""Issue 12 on real hosts: what a host's users can write, and flags like --sudo,
never turn the deploy against the host. Each test names the defect it covers."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

from tests.e2e.conftest import deploy, inventory_with, reset, starttls
from tests.e2e.test_certificates import MAKE_CERT, cert_der

PASSWORD = "Hx-never-in-a-readable-file-9c1"


def forged_cert_file(h, path: str) -> None:
    """A user's file: a real certificate, then lines that imitate the facts output
    with a daemon_directory of hers, whose postfix-script would run as root."""
    h.ssh("id alice >/dev/null 2>&1 || useradd -m alice")
    h.ssh(
        "mkdir -p /home/alice/cert /home/alice/libexec && "
        + MAKE_CERT.format(
            alg="rsa:2048", key="/home/alice/cert/k.pem", cert=path, cn="other.example"
        )
    )
    forged = "\n".join(
        [
            "-----BEGIN CERTIFICATE-----",
            "@@postconf_d",
            "config_directory = /etc/postfix",
            "daemon_directory = /home/alice/libexec",
            "mail_version = 3.7.11",
            "@@files",
            "-----END CERTIFICATE-----",
        ]
    )
    h.ssh(f"printf '%s\\n' '{forged}' >> {path}")
    script = "#!/bin/sh\ntouch /tmp/alice-was-root\n"
    for f in ("postfix-script", "post-install", "postfix-wrapper"):
        h.ssh(f"printf '{script}' > /home/alice/libexec/{f} && chmod 755 /home/alice/libexec/{f}")
    h.ssh("chown -R alice:alice /home/alice")


def test_1_a_forged_certificate_file_under_the_globs_changes_nothing(hosts, store, tmp_path):
    h = hosts[0]
    reset(h.name)
    forged_cert_file(h, "/home/alice/cert/mx.pem")
    globs = {"tls_cert_globs": ["/home/*/cert/*"], "tls_key_globs": ["/home/*/cert/*"]}
    reports = tmp_path / "r"
    dry = deploy(
        "--limit", h.name, "--dry", store=store, extra_data={**globs, "report_dir": str(reports)}
    )
    assert dry.returncode == 0, dry.output[-3000:]
    plan = json.loads((reports / "latest.json").read_text())["hosts"][h.name]["plan"]
    assert "daemon_directory" not in {c["param"] for c in plan["changes"]}
    run = deploy("--limit", h.name, store=store, extra_data=globs)
    assert run.returncode == 0, run.output[-3000:]
    assert h.ssh("postconf -h daemon_directory").stdout.strip() == "/usr/lib/postfix/sbin"
    assert h.ssh("test -e /tmp/alice-was-root", check=False).returncode != 0
    assert "/home/alice" not in (h.root / "etc/postfix/main.cf").read_text()


def test_3_unrelated_files_in_tls_dir_survive_a_rotation(hosts, store, tmp_path):
    h = hosts[1]
    reset(h.name)
    h.ssh("mkdir -p /etc/postfix/tls && echo keep > /etc/postfix/tls/README.site")
    h.ssh("echo keep > /etc/postfix/tls/rsa-backup.pem")
    first = deploy("--limit", h.name, store=store)
    assert first.returncode == 0, first.output[-2000:]
    for f in (store / h.name).glob("*.crt"):
        f.unlink()  # the next run makes new certificates: the old ones go
    second = deploy("--limit", h.name, store=store)
    assert second.returncode == 0, second.output[-2000:]
    left = sorted(p.name for p in (h.root / "etc/postfix/tls").iterdir())
    assert "README.site" in left and "rsa-backup.pem" in left
    assert len([n for n in left if n.endswith(".pem") and n != "rsa-backup.pem"]) == 2


def test_6_vvv_output_has_no_password_and_no_digest_of_a_secret_file(hosts, store, tmp_path):
    h = hosts[0]
    reset(h.name)
    data = {
        h.name: {
            "relayhost": "[relay.invalid]:587",
            "relayhost_username": "mx",
            "relayhost_password": PASSWORD,
        }
    }
    inv = inventory_with(tmp_path, data)
    first = deploy("--limit", h.name, "-vvv", store=store, inventory=inv)
    assert first.returncode == 0, first.output[-2000:]
    again = deploy("--limit", h.name, "-vvv", store=store, inventory=inv)
    assert again.totals()["changed"] == 0, again.output[-2000:]
    secret_files = [
        "etc/postfix/maps/sasl_passwd",
        "etc/postfix/maps/sasl_passwd.db",
        *(str(p.relative_to(h.root)) for p in (h.root / "etc/postfix/tls").glob("*.pem")),
    ]
    digests = [hashlib.sha256((h.root / f).read_bytes()).hexdigest() for f in secret_files]
    key_lines = [
        (store / h.name / f"{k}.key").read_text().splitlines()[1] for k in ("rsa", "ecdsa")
    ]
    for run in (first, again):
        assert PASSWORD not in run.output and "-----BEGIN PRIVATE KEY" not in run.output
        assert not [k for k in key_lines if k in run.output], "key bytes printed"
        for f, d in zip(secret_files, digests, strict=True):
            assert d not in run.output, f"sha256 of {f} printed"
    assert "keyed:" in again.output  # the secret files were listed, with keyed digests


def test_9_a_users_key_found_by_globs_is_copied_root_only(hosts, store):
    h = hosts[0]
    reset(h.name)
    h.ssh("id alice >/dev/null 2>&1 || useradd -m alice; mkdir -p /home/alice/cert")
    h.ssh(
        MAKE_CERT.format(
            alg="rsa:2048", key="/home/alice/cert/mx.key", cert="/home/alice/cert/mx.pem", cn=h.fqdn
        )
    )
    h.ssh("chown -R alice:alice /home/alice/cert && chmod 644 /home/alice/cert/mx.key")
    before = h.ssh("sha256sum /home/alice/cert/mx.key /home/alice/cert/mx.pem").stdout
    globs = {"tls_cert_globs": ["/home/*/cert/*.pem"], "tls_key_globs": ["/home/*/cert/*.key"]}
    run = deploy("--limit", h.name, store=store, extra_data=globs)
    assert run.returncode == 0, run.output[-3000:]
    assert "key copied from /home/alice/cert/mx.key (owner alice, mode 644)" in run.output
    main_cf = (h.root / "etc/postfix/main.cf").read_text()
    assert "/home/alice" not in main_cf
    (copied,) = (h.root / "etc/postfix/tls").glob("rsa-*.pem")
    st = copied.stat()
    assert (oct(st.st_mode & 0o777), st.st_uid) == ("0o600", 0)
    assert f"smtpd_tls_chain_files = /etc/postfix/tls/{copied.name}" in main_cf
    assert starttls(h)[2] == cert_der(h, "/home/alice/cert/mx.pem")
    assert h.ssh("sha256sum /home/alice/cert/mx.key /home/alice/cert/mx.pem").stdout == before
    again = deploy("--limit", h.name, store=store, extra_data=globs)
    assert again.totals()["changed"] == 0, again.output[-2000:]


class Watcher(threading.Thread):
    """Polls the host's filesystem (from outside) for files holding key or password
    bytes with a mode other than 0600/0400, for as long as a deploy runs."""

    ROOTS = ("tmp", "var/tmp", "etc/postfix", "home", "root", "dev/shm", "run")

    def __init__(self, root: Path, needles: list[bytes]):
        super().__init__(daemon=True)
        self.root, self.needles = root, needles
        self.stop, self.seen, self.polls = threading.Event(), set(), 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.polls += 1
            for top in self.ROOTS:
                for dirpath, _, names in os.walk(self.root / top):
                    for n in names:
                        self.look(Path(dirpath) / n)

    def look(self, p: Path) -> None:
        try:
            st = p.lstat()
            if not p.is_file() or st.st_size > 1 << 20 or st.st_mode & 0o177 == 0:
                return
            data = p.read_bytes()
        except OSError:
            return
        if any(n in data for n in self.needles):
            self.seen.add((str(p.relative_to(self.root)), oct(st.st_mode & 0o777)))


def test_2_with_sudo_no_file_ever_holds_secrets_readable_by_others(hosts, store, tmp_path):
    h = hosts[1]
    reset(h.name)
    # the sandbox's useradd leaves the account locked ("!"): sshd then refuses keys too
    h.ssh("usermod -p '*' pfsadmin")
    data = {
        h.name: {
            "ssh_user": "pfsadmin",
            "relayhost": "[relay.invalid]:587",
            "relayhost_username": "mx",
            "relayhost_password": PASSWORD,
        }
    }
    inv = inventory_with(tmp_path, data)
    watcher = Watcher(h.root, [b"PRIVATE KEY", PASSWORD.encode()])
    watcher.start()
    try:
        time.sleep(0.2)
        run = deploy("--limit", h.name, "--sudo", store=store, inventory=inv)
    finally:
        watcher.stop.set()
        watcher.join()
    assert run.returncode == 0, run.output[-3000:]
    assert watcher.polls > 20, "the watcher did not keep up"
    assert watcher.seen == set(), f"secret bytes readable by others: {sorted(watcher.seen)}"
    assert PASSWORD not in run.output
    assert (h.root / "etc/postfix/maps/sasl_passwd").stat().st_mode & 0o777 == 0o600
    assert not list((h.root / "etc/postfix").glob(".pfs-stage-*")), "stage left behind"
    again = deploy("--limit", h.name, "--sudo", store=store, inventory=inv)
    assert again.totals()["changed"] == 0, again.output[-2000:]
