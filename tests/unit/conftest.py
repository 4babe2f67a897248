"""Shared fixtures for the unit tests: fresh configuration, a temporary working directory,
no background runtime services left behind by a test, and :func:`open_storage` (one of
the in-memory backend, SQLite on disk and a private PostgreSQL schema)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import pyworkflow
from pyworkflow.runtime import get_runtime
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.config import storage_from_url
from pyworkflow.storage.memory import InMemoryStorageBackend
from tests.services import require_service

#: The backends engine tests run on: one per process kind that matters.
ENGINE_BACKENDS = ["memory", "sqlite", "postgres"]


@asynccontextmanager
async def open_storage(kind: str, tmp_path: Path) -> AsyncIterator[StorageBackend]:
    """A connected fresh backend of ``kind`` (one of :data:`ENGINE_BACKENDS`); a
    PostgreSQL one lives in a schema of its own, dropped afterwards."""
    schema = None
    if kind == "memory":
        backend: StorageBackend = InMemoryStorageBackend()
    elif kind == "sqlite":
        backend = storage_from_url(f"sqlite:///{tmp_path / 'engine.db'}")
    else:
        pytest.importorskip("asyncpg", reason="pip install 'pyworkflow-engine[postgres]'")
        from tests.storage.backend_postgres import with_options

        schema = f"pwtest_{uuid.uuid4().hex[:16]}"
        backend = storage_from_url(with_options(require_service("postgres"), schema=schema))
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.close()
        if schema is not None:
            from tests.storage.backend_postgres import admin_execute

            await admin_execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts from default configuration in an empty working directory, so
    nothing reads a stray ``pyworkflow.config.yaml`` or writes into the repository."""
    for name in list(os.environ):
        if name.startswith("PYWORKFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    pyworkflow.reset_config()
    yield
    pyworkflow.reset_config()


@pytest.fixture(autouse=True)
async def _stop_local_runtime() -> AsyncIterator[None]:
    """Stop the local runtime's timer/heartbeat services started on this test's loop."""
    yield
    await get_runtime("local").shutdown()
