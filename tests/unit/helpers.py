"""Shared builders for unit tests: real recorded facts, settings from plain dicts."""

from __future__ import annotations

import copy
import datetime as dt
from functools import cache

from operations import facts as facts_mod
from operations import settings
from tests.conftest import FIXTURES

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


@cache
def _recorded(name: str) -> facts_mod.HostFacts:
    return facts_mod.parse((FIXTURES / "facts" / f"{name}.txt").read_text().splitlines())


def recorded(name: str) -> facts_mod.HostFacts:
    """A fresh copy of facts recorded from a real host (tests/fixtures/facts/NAME.txt)."""
    return copy.deepcopy(_recorded(name))


def make_settings(host: str = "mx1.example.net", **data) -> settings.Settings:
    return settings.resolve(host, [("host", data)])
