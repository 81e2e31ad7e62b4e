"""Shared builders for unit tests: real recorded facts, settings from plain dicts."""

from __future__ import annotations

import copy
import datetime as dt
import json
from functools import cache

from postfix_pfs import facts as facts_mod
from postfix_pfs import settings
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
