"""Histories of runs that suspended in this process, kept to resume them without
reading their event log back from storage or folding it again.

When a run suspends here, its log (kept in step with every write of the execution) is
folded into a :class:`History` right away, while the run waits, so a wake-up goes
straight to replay. Only a speed-up: an entry is used only when it ends exactly where
the stored log ends (or is completed by reading just the newer events, which are folded
on top: folding is one pass in order), and losing it costs one read. Bounded by the
total number of events held (least recently suspended dropped first).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass

from pyworkflow.engine.replay import History
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import Event

MAX_EVENTS = 50_000


@dataclass(slots=True)
class Cached:
    events: list[Event]
    history: History  # folded from ``events``; handed to exactly one execution


_entries: weakref.WeakKeyDictionary[StorageBackend, OrderedDict[str, Cached]] = (
    weakref.WeakKeyDictionary()
)
_held = 0


def remember(
    storage: StorageBackend, run_id: str, events: list[Event], history: History | None = None
) -> None:
    """Keep ``events`` (the run's whole log, in order) and their fold (``history``, if
    the caller has it and hands it over; else folded here) for its next use here."""
    global _held
    forget(storage, run_id)
    if not events or len(events) > MAX_EVENTS:
        return
    runs = _entries.setdefault(storage, OrderedDict())
    folded = history if history is not None else History.from_events(run_id, events)
    runs[run_id] = Cached(events, folded)
    _held += len(events)
    while _held > MAX_EVENTS:
        _evict_oldest()


def take(storage: StorageBackend, run_id: str) -> Cached | None:
    """The remembered entry of ``run_id`` (removed from the cache), or ``None``."""
    global _held
    runs = _entries.get(storage)
    entry = runs.pop(run_id, None) if runs is not None else None
    if entry is not None:
        _held -= len(entry.events)
    return entry


def forget(storage: StorageBackend, run_id: str) -> None:
    take(storage, run_id)


def _evict_oldest() -> None:
    global _held
    for runs in list(_entries.values()):
        if runs:
            _, entry = runs.popitem(last=False)
            _held -= len(entry.events)
            return
    _held = 0
