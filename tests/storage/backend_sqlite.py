"""SQLite backend for the conformance suite: a fresh database file per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from pyworkflow.storage.sqlite import SQLiteStorageBackend

NAME = "sqlite"


@asynccontextmanager
async def open_backend(tmp_path: Path) -> AsyncIterator[tuple[SQLiteStorageBackend, str]]:
    path = tmp_path / "pyworkflow.db"
    yield SQLiteStorageBackend(path), f"sqlite:///{quote(str(path))}"
