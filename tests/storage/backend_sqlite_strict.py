"""SQLite in strict mode (``synchronous=FULL``) for the conformance suite. Strict mode
writes through group commit (several transactions per commit, each in a savepoint), a
different code path from the default mode's writes on the event loop's thread."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from pyworkflow.storage.sqlite import SQLiteStorageBackend
from tests.storage.backend_sqlite import corrupt_event

__all__ = ["NAME", "corrupt_event", "open_backend"]

NAME = "sqlite_strict"


@asynccontextmanager
async def open_backend(tmp_path: Path) -> AsyncIterator[tuple[SQLiteStorageBackend, str]]:
    path = tmp_path / "pyworkflow.db"
    url = f"sqlite:///{quote(str(path))}?synchronous=FULL"
    yield SQLiteStorageBackend(path, synchronous="FULL"), url
