"""File backend for the conformance suite: a fresh directory per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from pyworkflow.storage.file import FileStorageBackend

NAME = "file"


@asynccontextmanager
async def open_backend(tmp_path: Path) -> AsyncIterator[tuple[FileStorageBackend, str]]:
    yield FileStorageBackend(tmp_path / "data"), f"file://{quote(str(tmp_path / 'data'))}"
