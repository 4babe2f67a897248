"""The ``storage`` fixture: every storage test runs once per built-in backend.

``pytest --backend sqlite`` narrows the run to one backend. ``storage_url`` names the
same data as a URL, so tests can reopen it in a new instance or another process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest

from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.file import FileStorageBackend
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.sqlite import SQLiteStorageBackend

BACKENDS = ("memory", "file", "sqlite")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" in metafunc.fixturenames:
        wanted = metafunc.config.getoption("--backend", default=None)
        names = [name for name in BACKENDS if wanted in (None, name)]
        metafunc.parametrize("backend_name", names, ids=names)


@pytest.fixture
def storage_url(backend_name: str, tmp_path: Path) -> str | None:
    if backend_name == "file":
        return f"file://{quote(str(tmp_path / 'data'))}"
    if backend_name == "sqlite":
        return f"sqlite:///{quote(str(tmp_path / 'pyworkflow.db'))}"
    return None  # an in-memory store cannot be reopened


@pytest.fixture
async def storage(backend_name: str, tmp_path: Path) -> AsyncIterator[StorageBackend]:
    backend: StorageBackend
    if backend_name == "file":
        backend = FileStorageBackend(tmp_path / "data")
    elif backend_name == "sqlite":
        backend = SQLiteStorageBackend(tmp_path / "pyworkflow.db")
    else:
        backend = InMemoryStorageBackend()
    yield backend
    await backend.close()
