"""Server tests: an empty project directory, default configuration, and the app over a
fresh SQLite file or a fresh PostgreSQL schema (``backend_url``, both by default).

``client(app, token=...)`` gives an ``httpx.AsyncClient`` talking to the app in-process
(ASGI transport: the app's background work, such as a local run started through the API,
runs on the test's own event loop).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

import pyworkflow
from pyworkflow.runtime import get_runtime
from pyworkflow.server import ServerSettings, create_app
from tests.services import require_service
from tests.storage.backend_postgres import admin_execute, new_schema, with_options

ADMIN_TOKEN = "admin-token-0123456789abcdef"
READ_TOKEN = "read-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def _isolated_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("PYWORKFLOW_") and not name.startswith("PYWORKFLOW_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    pyworkflow.reset_config()
    yield
    pyworkflow.reset_config()


@pytest.fixture(params=["sqlite", "postgres"])
async def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A storage URL with nothing stored yet: SQLite in tmp_path, or a new PostgreSQL
    schema (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'server.db'}"
        return
    pytest.importorskip("asyncpg")
    schema = new_schema()
    yield with_options(require_service("postgres"), schema=schema, application_name=schema)
    await admin_execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
async def app(backend_url: str) -> AsyncIterator[FastAPI]:
    """The app with both tokens set, over ``backend_url``, with tests.server.flows
    imported (this process can run their code)."""
    import tests.server.flows  # noqa: F401 - registers the workflows

    settings = ServerSettings(token=ADMIN_TOKEN, read_token=READ_TOKEN, live_poll_interval=0.1)
    application = create_app(backend_url, settings=settings)
    yield application
    await get_runtime("local").shutdown()
    await application.state.pyworkflow.storage.close()


def client(app: FastAPI, token: str | None = ADMIN_TOKEN) -> httpx.AsyncClient:
    """An in-process client of ``app``, sending ``token`` as a bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=headers
    )
