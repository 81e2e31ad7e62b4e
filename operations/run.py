"""The state of one pyinfra run, in one object per pyinfra State.

What the pipeline shares between hosts during a run (the run id that names the
staging directories, every host's validated settings, the report, the planning
problems collected until the last host is planned, the fleet CA made in memory)
lives in a `Run`. It is kept per pyinfra `State` in a weak mapping, not as
attributes on pyinfra's object: two States in one process (the Python API)
each get their own run, and nothing is written into pyinfra's namespace.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

if TYPE_CHECKING:
    from pyinfra.api.state import State

    from .report import Report
    from .settings import Settings


def new_id() -> str:
    """A run id: UTC time and 6 random hex digits (names staging dirs and reports)."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


@dataclass
class Run:
    id: str = field(default_factory=new_id)
    settings: dict[str, Settings] | None = None  # every targeted host's, validated at once
    report: Report | None = None  # printed and written at exit
    problems: list[str] = field(default_factory=list)  # planning problems of all hosts
    done: int = 0  # hosts planned so far (the last one reports the problems)
    entered: set[str] = field(default_factory=set)  # hosts an entry point has run for
    cas: dict[Any, Any] = field(default_factory=dict)  # key store -> (fleet CA, notes)


_RUNS: WeakKeyDictionary[State, Run] = WeakKeyDictionary()


def of(state: State) -> Run:
    """The run of this pyinfra State (made on first use)."""
    run = _RUNS.get(state)
    if run is None:
        run = _RUNS[state] = Run()
    return run
