"""File backend for the conformance suite: a fresh directory per test."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from pyworkflow.storage.file import FileStorageBackend
from pyworkflow.testing.conformance_corruption import damaged_record

NAME = "file"


@asynccontextmanager
async def open_backend(tmp_path: Path) -> AsyncIterator[tuple[FileStorageBackend, str]]:
    yield FileStorageBackend(tmp_path / "data"), f"file://{quote(str(tmp_path / 'data'))}"


async def corrupt_event(backend: FileStorageBackend, run_id: str, sequence: int, how: str) -> None:
    """Rewrite the event's line of the run's JSONL log, damaged, and the committed
    length in the run record to match (the line's length changes)."""
    run_path, events_path = backend._run_path(run_id), backend._events_path(run_id)
    record = json.loads(run_path.read_text(encoding="utf-8"))
    lines = events_path.read_bytes()[: record["events_size"]].splitlines()
    lines[sequence - 1] = damaged_record(lines[sequence - 1], how).encode()
    log = b"".join(line + b"\n" for line in lines)
    events_path.write_bytes(log)
    record["events_size"] = len(log)
    run_path.write_text(json.dumps(record), encoding="utf-8")
