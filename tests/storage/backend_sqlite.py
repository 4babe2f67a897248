"""SQLite backend for the conformance suite: a fresh database file per test."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from urllib.parse import quote

from pyworkflow.storage.sqlite import SQLiteStorageBackend
from pyworkflow.testing.conformance_corruption import damage_sql

NAME = "sqlite"


@asynccontextmanager
async def open_backend(tmp_path: Path) -> AsyncIterator[tuple[SQLiteStorageBackend, str]]:
    path = tmp_path / "pyworkflow.db"
    yield SQLiteStorageBackend(path), f"sqlite:///{quote(str(path))}"


async def corrupt_event(
    backend: SQLiteStorageBackend, run_id: str, sequence: int, how: str
) -> None:
    """Damage the event's row through a second connection to the database file."""
    sql, value = damage_sql("events", how)
    with closing(sqlite3.connect(backend.path, timeout=10)) as conn, conn:
        conn.execute(sql, (value, run_id, sequence))
