"""The ``storage`` fixture: every storage test runs once per backend.

Each backend lives in a ``backend_<name>.py`` module beside this file, defining
``NAME`` and ``open_backend(tmp_path)``: an async context manager yielding
``(backend, url)`` where ``url`` reopens the same data (``None`` when it cannot be
reopened). Backends that need a server call :func:`tests.services.require_service` so a
missing server fails under CI and skips (with how to start it) elsewhere.

A backend module may also define ``async def drop_connections(backend)``: make the server
drop every connection ``backend`` holds (the ``drop_connections`` fixture, used by the
reconnect conformance test; backends without it skip that test).

It may also define ``async def corrupt_event(backend, run_id, sequence, how)``: damage
one stored event in place with the backend's own client (``how="json"``: its data is not
JSON; ``how="type"``: its type is ``"step.exploded"``), for the corruption conformance
tests (the ``corrupt_event`` fixture; backends without it skip them).

``pytest --backend sqlite`` narrows the run to one backend.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pyworkflow.storage.base import StorageBackend


def _backend_modules() -> dict[str, ModuleType]:
    modules = {}
    for path in sorted(Path(__file__).parent.glob("backend_*.py")):
        module = importlib.import_module(f"tests.storage.{path.stem}")
        modules[module.NAME] = module
    return modules


BACKENDS = _backend_modules()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" in metafunc.fixturenames:
        wanted = metafunc.config.getoption("--backend", default=None)
        names = [name for name in BACKENDS if wanted in (None, name)]
        metafunc.parametrize("backend_name", names, ids=names)


@pytest.fixture
async def _opened(backend_name: str, tmp_path: Path) -> AsyncIterator[tuple[StorageBackend, Any]]:
    async with BACKENDS[backend_name].open_backend(tmp_path) as opened:
        yield opened


@pytest.fixture
def storage_url(_opened: tuple[StorageBackend, str | None]) -> str | None:
    return _opened[1]


@pytest.fixture
async def storage(_opened: tuple[StorageBackend, str | None]) -> AsyncIterator[StorageBackend]:
    backend = _opened[0]
    yield backend
    await backend.close()


def _backend_hook(
    backend_name: str, opened: tuple[StorageBackend, str | None], name: str
) -> Callable[..., Awaitable[Any]] | None:
    """The backend module's ``name`` function bound to the opened backend (``None``
    when the module has none)."""
    hook = getattr(BACKENDS[backend_name], name, None)
    if hook is None:
        return None
    backend = opened[0]

    async def call(*args: Any) -> Any:
        return await hook(backend, *args)

    return call


@pytest.fixture
def drop_connections(
    backend_name: str, _opened: tuple[StorageBackend, str | None]
) -> Callable[[], Awaitable[Any]] | None:
    """An async callable that makes the server drop the backend's connections, or
    ``None`` when the backend module defines no ``drop_connections``."""
    return _backend_hook(backend_name, _opened, "drop_connections")


@pytest.fixture
def corrupt_event(
    backend_name: str, _opened: tuple[StorageBackend, str | None]
) -> Callable[[str, int, str], Awaitable[Any]] | None:
    """An async callable ``corrupt(run_id, sequence, how)`` that damages one stored
    event, or ``None`` when the backend module defines no ``corrupt_event``."""
    return _backend_hook(backend_name, _opened, "corrupt_event")
