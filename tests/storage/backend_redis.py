"""Redis backend for the conformance suite: a fresh key prefix per test, deleted afterwards.

The server comes from ``PYWORKFLOW_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``);
see :mod:`tests.services`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from pyworkflow.testing.conformance_corruption import damaged_record
from tests.services import require_service

NAME = "redis"


def with_prefix(url: str, prefix: str) -> str:
    """``url`` with ``prefix=`` added to its query string."""
    return f"{url}{'&' if '?' in url else '?'}prefix={prefix}"


def new_prefix() -> str:
    return f"pwtest-{uuid.uuid4().hex[:12]}"


async def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key of ``prefix`` (``SCAN`` + ``DEL``); how many were deleted."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    deleted = 0
    try:
        # The prefix is a uuid-based name: no glob metacharacters to escape.
        async for key in client.scan_iter(match=f"{{{prefix}}}:*", count=1000):
            deleted += await client.delete(key)
    finally:
        await client.aclose()
    return deleted


@asynccontextmanager
async def open_backend(tmp_path: Path) -> AsyncIterator[tuple[Any, str]]:
    url = require_service("redis")
    pytest.importorskip("redis", reason="pip install 'pyworkflow-engine[redis]'")
    from pyworkflow.storage.redis import RedisStorageBackend

    prefix = new_prefix()
    backend = RedisStorageBackend(url, prefix=prefix)
    try:
        yield backend, with_prefix(url, prefix)
    finally:
        await backend.close()
        await delete_prefix(url, prefix)


async def drop_connections(backend: Any) -> int:
    """Kill (``CLIENT KILL ID``) every server connection of ``backend``'s client.

    The backend names its connections (``CLIENT SETNAME``); this finds them in ``CLIENT
    LIST`` through a separate admin connection. Returns how many were killed.
    """
    import redis.asyncio as aioredis

    admin = aioredis.Redis.from_url(require_service("redis"), decode_responses=True)
    killed = 0
    try:
        for entry in await admin.client_list(_type="normal"):
            if entry.get("name") == backend.client_name:
                killed += int(await admin.execute_command("CLIENT", "KILL", "ID", entry["id"]))
    finally:
        await admin.aclose()
    return killed


async def corrupt_event(backend: Any, run_id: str, sequence: int, how: str) -> None:
    """Replace the event's item of the run's events list (``LSET``) with a damaged copy."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(require_service("redis"))
    key, index = backend._key("events", run_id), sequence - 1
    try:
        item = await client.lindex(key, index)
        await client.lset(key, index, damaged_record(item, how, type_key="t"))
    finally:
        await client.aclose()
