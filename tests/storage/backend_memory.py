"""In-memory backend for the conformance suite (cannot be reopened: no URL)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.testing.conformance_corruption import damaged_record

NAME = "memory"


@asynccontextmanager
async def open_backend(tmp_path: Path) -> AsyncIterator[tuple[InMemoryStorageBackend, None]]:  # noqa: ARG001
    yield InMemoryStorageBackend(), None


async def corrupt_event(
    backend: InMemoryStorageBackend, run_id: str, sequence: int, how: str
) -> None:
    """Replace the event with its stored record (JSON text of ``Event.to_dict``),
    damaged: the backend decodes any entry that is not an Event as such a record."""
    events: list[Any] = backend._events[run_id]
    record = json.dumps(events[sequence - 1].to_dict())
    events[sequence - 1] = damaged_record(record, how)
