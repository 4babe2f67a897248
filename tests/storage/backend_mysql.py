"""MySQL/MariaDB backend for the conformance suite: a fresh database per test, dropped
afterwards.

The server comes from ``PYWORKFLOW_TEST_MYSQL_URL`` (default
``mysql://root@127.0.0.1:3306/test``); see :mod:`tests.services`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest

from pyworkflow.testing.conformance_corruption import damage_sql
from tests.services import require_service

NAME = "mysql"


def new_database() -> str:
    return f"pwtest_{uuid.uuid4().hex[:16]}"


def with_database(url: str, database: str) -> str:
    """``url`` pointing at ``database`` instead of its own."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


async def admin_connect() -> Any:
    """A plain aiomysql connection to the test server (not any backend's pool)."""
    import aiomysql

    parts = urlsplit(require_service("mysql"))
    return await aiomysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        autocommit=True,
    )


async def admin_execute(sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = await admin_connect()
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(sql, args or None)
            return list(await cursor.fetchall())
    finally:
        conn.close()


@asynccontextmanager
async def open_backend(tmp_path: Path) -> AsyncIterator[tuple[Any, str]]:
    url = require_service("mysql")
    pytest.importorskip("aiomysql", reason="pip install 'pyworkflow-engine[mysql]'")
    from pyworkflow.storage.mysql import MySQLStorageBackend

    database = new_database()
    # database is a generated identifier (letters, digits, underscore).
    await admin_execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    full_url = with_database(url, database)
    backend = MySQLStorageBackend.from_url(full_url)
    try:
        yield backend, full_url
    finally:
        try:
            await backend.close()
        finally:
            await admin_execute(f"DROP DATABASE IF EXISTS `{database}`")


async def drop_connections(backend: Any) -> int:
    """``KILL`` every server connection using ``backend``'s database (its pool, and any
    other backend opened on the same URL); how many were killed."""
    conn = await admin_connect()
    killed = 0
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(
                "SELECT id FROM information_schema.PROCESSLIST "
                "WHERE db = %s AND id <> CONNECTION_ID()",
                (backend.database,),
            )
            for (thread_id,) in await cursor.fetchall():
                await cursor.execute("KILL %s", (int(thread_id),))
                killed += 1
    finally:
        conn.close()
    return killed


async def corrupt_event(backend: Any, run_id: str, sequence: int, how: str) -> None:
    """Damage the event's row in the backend's database (a separate connection)."""
    # The database is a generated identifier (letters, digits, underscore).
    sql, value = damage_sql(f"`{backend.database}`.events", how, placeholder="%s")
    await admin_execute(sql, value, run_id, sequence)
