"""In-memory backend for the conformance suite (cannot be reopened: no URL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from pyworkflow.storage.memory import InMemoryStorageBackend

NAME = "memory"


@asynccontextmanager
async def open_backend(tmp_path: Path) -> AsyncIterator[tuple[InMemoryStorageBackend, None]]:  # noqa: ARG001
    yield InMemoryStorageBackend(), None
