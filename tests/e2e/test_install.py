"""A host without Postfix gets it from its own package manager, then the usual deploy."""

from __future__ import annotations

import shutil

from tests.e2e.conftest import deploy, forward_secret, reset, starttls


def test_missing_postfix_is_installed_then_configured(hosts, store):
    h = hosts[1]
    reset(h.name)
    h.ssh(
        "postfix stop; DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq postfix >/dev/null 2>&1"
    )
    assert h.ssh("command -v postconf", check=False).returncode != 0
    # the sandbox has no DNS on purpose; apt needs the machine's resolver to reach its mirror
    shutil.copy("/etc/resolv.conf", h.root / "etc/resolv.conf")
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
