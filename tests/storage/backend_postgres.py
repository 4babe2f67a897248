"""PostgreSQL backend for the conformance suite: a fresh schema per test, dropped afterwards.

The server comes from ``PYWORKFLOW_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``); see :mod:`tests.services`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from pyworkflow.testing.conformance_corruption import damage_sql
from tests.services import require_service

NAME = "postgres"


def with_options(url: str, **options: str) -> str:
    """``url`` with ``options`` added to its query string."""
    query = "&".join(f"{name}={value}" for name, value in options.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


def new_schema() -> str:
    return f"pwtest_{uuid.uuid4().hex[:16]}"


async def admin_execute(sql: str, *args: Any) -> str:
    """Run one statement on a separate connection (not the backend's pool)."""
    import asyncpg

    conn = await asyncpg.connect(require_service("postgres"))
    try:
        return str(await conn.execute(sql, *args))
    finally:
        await conn.close()


@asynccontextmanager
async def open_backend(tmp_path: Path) -> AsyncIterator[tuple[Any, str]]:
    url = require_service("postgres")
    pytest.importorskip("asyncpg", reason="pip install 'pyworkflow-engine[postgres]'")
    from pyworkflow.storage.postgres import PostgresStorageBackend

    schema = new_schema()
    # application_name = schema lets drop_connections find exactly this test's sessions.
    full_url = with_options(url, schema=schema, application_name=schema)
    backend = PostgresStorageBackend.from_url(full_url)
    try:
        yield backend, full_url
    finally:
        try:
            await backend.close()
        finally:
            # schema is a generated identifier (letters, digits, underscore).
            await admin_execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def drop_connections(backend: Any) -> int:
    """``pg_terminate_backend`` every server session of ``backend`` (and of other backends
    opened from the same URL); how many were terminated."""
    import asyncpg

    conn = await asyncpg.connect(require_service("postgres"))
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = $1 AND pid <> pg_backend_pid()",
            backend.application_name,
        )
    finally:
        await conn.close()
    return sum(1 for row in rows if row[0])


async def corrupt_event(backend: Any, run_id: str, sequence: int, how: str) -> None:
    """Damage the event's row in the backend's schema (a separate connection)."""
    # The schema is a generated identifier (letters, digits, underscore).
    sql, value = damage_sql(f'"{backend.schema}".events', how, placeholder="${n}")
    await admin_execute(sql, value, run_id, sequence)
