"""A host without Postfix gets it from its own package manager, then the usual deploy."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import ROOT
from tests.e2e.conftest import deploy, forward_secret, reset, starttls
from tests.e2e.test_package import user_project


def purge_postfix(h) -> None:
    """The host as a fresh machine: no Postfix; apt can reach its mirror."""
    h.ssh(
        "postfix stop; DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq postfix >/dev/null 2>&1"
    )
    assert h.ssh("command -v postconf", check=False).returncode != 0
    # the sandbox has no DNS on purpose; apt needs the machine's resolver to reach its mirror
    shutil.copy("/etc/resolv.conf", h.root / "etc/resolv.conf")


def test_missing_postfix_is_installed_then_configured(hosts, store):
    h = hosts[1]
    reset(h.name)
    purge_postfix(h)
    dry = deploy("--limit", h.name, "--dry", store=store)
    assert dry.returncode == 0 and "apt-get will install it" in dry.output, dry.output[-2000:]
    assert h.ssh("command -v postconf", check=False).returncode != 0, "--dry installed something"
    run = deploy("--limit", h.name, store=store)
    assert run.returncode == 0, run.output[-3000:]
    assert h.master_pid()
    assert forward_secret(*starttls(h)[:2])
    again = deploy("--limit", h.name, store=store)
    assert again.returncode == 0 and again.totals()["changed"] == 0, again.output[-2000:]
    reset(h.name)  # back to the sandbox's own resolv.conf and package set


SUDO_DEPLOY = """\
from postfix_pfs.deploys import postfix_tls

postfix_tls(_sudo=True)  # connect as pfsadmin, act as root; no --sudo on the command line
"""


def test_install_then_configure_keeps_the_deploys_sudo(hosts, tmp_path):
    """The configuration after the install runs at execution time (python.call): it must
    still act as root through the @deploy's _sudo=True, not as the SSH user."""
    h = hosts[1]
    reset(h.name)
    purge_postfix(h)
    project = user_project(tmp_path, h, SUDO_DEPLOY, user="pfsadmin")
    pyinfra = str(ROOT / ".venv/bin/pyinfra") if (ROOT / ".venv").is_dir() else "pyinfra"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(
        [pyinfra, "inventory.py", "mail.py", "-y"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    assert h.master_pid()
    proto, cipher, _ = starttls(h)
    assert forward_secret(proto, cipher), (proto, cipher)
    report = json.loads((Path(project) / "reports" / "latest.json").read_text())
    assert report["hosts"][h.name]["failed"] is False, report["hosts"][h.name]
    # everything the configuration wrote is root's, keys 0600: it ran through sudo
    owners = h.ssh("stat -c '%U %a %n' /etc/postfix/main.cf /etc/postfix/tls/*").stdout.split("\n")
    assert all(o.startswith("root ") for o in owners if o), owners
    keys = [o for o in owners if o.endswith(".pem") and "ffdhe" not in o]
    assert keys and all(o.split()[1] == "600" for o in keys), owners
    # the operations added at execution are still grouped under the deploy's name
    assert "postfix-pfs | Stage changed files" in out, out[-3000:]
    reset(h.name)


def test_a_plan_error_after_the_install_fails_that_host_with_one_line(hosts, store):
    """Planned only after the install (execution time): a refusal there is one failed
    host with its reason, not a traceback."""
    h = hosts[1]
    reset(h.name)
    purge_postfix(h)
    # a parameter no Postfix knows (whichever Debian this sandbox host runs)
    extra = {"postfix_extra": {"smtp_tls_not_a_parameter": "yes"}}
    run = deploy("--limit", h.name, store=store, extra_data=extra)
    assert run.returncode != 0, run.output[-3000:]
    assert "Traceback" not in run.output, run.output[-4000:]
    failed = [ln.strip() for ln in run.output.splitlines() if ln.strip().startswith("FAILED ")]
    assert len(failed) == 1, run.output[-3000:]
    assert re.search(r"smtp_tls_not_a_parameter unknown to this host's Postfix \d", failed[0]), (
        failed
    )
    # installed, configuration untouched: Debian's own main.cf, no material
    assert h.ssh("command -v postconf", check=False).returncode == 0
    assert h.ssh("ls /etc/postfix/tls 2>/dev/null | wc -l").stdout.strip() == "0"
    reset(h.name)
