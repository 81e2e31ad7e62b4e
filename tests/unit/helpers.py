"""Shared builders for unit tests: real recorded facts, settings from plain dicts."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import subprocess
from functools import cache
from pathlib import Path

from postfix_pfs import facts as facts_mod
from postfix_pfs import settings, verify
from tests.conftest import FIXTURES

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


DISTROS = (
    "debian12",
    "debian13",
    "debian12-systemd",
    "ubuntu2404",
    "rhel9",
    "opensuse15",
    "alpine",
)


@cache
def _recorded(name: str) -> facts_mod.HostFacts:
    path = FIXTURES / "facts" / f"{name}.txt"
    if path.exists():
        return facts_mod.parse(path.read_text().splitlines())
    overlay = json.loads((FIXTURES / "facts" / f"{name}.json").read_text())
    f = copy.deepcopy(_recorded(overlay["base"]))
    for key, value in overlay.get("env", {}).items():
        setattr(f, key, value)
    f.postconf_d.update(overlay.get("postconf_d", {}))
    # the Debian recording's main.cf says nothing about another distro's: model a
    # fresh install (no main.cf parameters) unless the overlay gives some
    f.postconf_n = dict(overlay.get("postconf_n", {}))
    f.run_version = overlay.get("run_version", f.run_version)
    return f


def recorded(name: str) -> facts_mod.HostFacts:
    """A fresh copy of facts recorded from a real host (tests/fixtures/facts/NAME.txt)."""
    return copy.deepcopy(_recorded(name))


def make_settings(host: str = "mx1.example.net", **data) -> settings.Settings:
    return settings.resolve(host, [("host", data)])


def run_probe(bin_dir: Path, output: str, probe: str = "tls1_2") -> list[str]:
    """The lines pfs_probe (tls_check.sh) prints against a stub openssl in `bin_dir`
    that prints `output` whatever it is asked."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "out").write_text(output)
    stub = bin_dir / "openssl"
    stub.write_text(f"#!/bin/sh\ncat {bin_dir}/out\n")
    stub.chmod(0o755)
    script = verify.SCRIPT + f"\npfs_probe smtp 127.0.0.1 25 starttls {probe}\n"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    r = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env=env)
    return r.stdout.strip().splitlines()
