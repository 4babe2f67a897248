"""Event logs of runs that suspended in this process, kept to resume them without
reading their history back from storage.

Only a speed-up: an entry is used only when it ends exactly where the stored log ends
(or is completed by reading just the newer events), and losing it costs one read.
Bounded by the total number of events held (least recently suspended dropped first).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict

from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import Event

MAX_EVENTS = 50_000

_entries: weakref.WeakKeyDictionary[StorageBackend, OrderedDict[str, list[Event]]] = (
    weakref.WeakKeyDictionary()
)
_held = 0


def remember(storage: StorageBackend, run_id: str, events: list[Event]) -> None:
    """Keep ``events`` (the run's whole log, in order) for its next resume here."""
    global _held
    forget(storage, run_id)
    if not events or len(events) > MAX_EVENTS:
        return
    runs = _entries.setdefault(storage, OrderedDict())
    runs[run_id] = events
    _held += len(events)
    while _held > MAX_EVENTS:
        _evict_oldest()


def take(storage: StorageBackend, run_id: str) -> list[Event] | None:
    """The remembered log of ``run_id`` (removed from the cache), or ``None``."""
    global _held
    runs = _entries.get(storage)
    events = runs.pop(run_id, None) if runs is not None else None
    if events is not None:
        _held -= len(events)
    return events


def forget(storage: StorageBackend, run_id: str) -> None:
    take(storage, run_id)


def _evict_oldest() -> None:
    global _held
    for runs in list(_entries.values()):
        if runs:
            _, events = runs.popitem(last=False)
            _held -= len(events)
            return
    _held = 0
