"""Fixtures for the Celery tests: a broker (Redis or RabbitMQ), a storage (SQLite file or
a fresh PostgreSQL schema) and a :class:`~tests.celery.cluster.Cluster` of processes.

The test process itself acts as the application: it is configured with the same
storage and broker and starts runs with ``runtime="celery"``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

import pyworkflow
from tests.celery.cluster import Cluster, unique_db_name
from tests.services import require_service

# A database of its own, flushed before each test; PYWORKFLOW_TEST_BROKER_DB lets parallel
# checkouts on one machine keep out of each other's way.
REDIS_BROKER_DB = int(os.environ.get("PYWORKFLOW_TEST_BROKER_DB", "13"))


def _redis_broker() -> str:
    url = require_service("redis")
    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    return f"{base}/{REDIS_BROKER_DB}"


def _purge(broker: str) -> None:
    """Drop messages an earlier test left in the broker."""
    from kombu import Connection, Queue

    from pyworkflow.celery.app import QUEUES
    from tests.celery.flows import BILLING_QUEUE, GPU_QUEUE

    with Connection(broker) as conn:
        channel = conn.default_channel
        for name in (*QUEUES, GPU_QUEUE, BILLING_QUEUE):
            Queue(name, channel=channel).declare()
            Queue(name, channel=channel).purge()
        if broker.startswith("redis"):
            conn.default_channel.client.flushdb()


def _storage_url(kind: str, tmp_path: Path) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'workflows.db'}", None
    url = require_service("postgres")
    schema = unique_db_name()
    return f"{url}{'&' if '?' in url else '?'}schema={schema}", schema


async def _drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(require_service("postgres"))
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # generated name
    finally:
        await conn.close()


@pytest.fixture
async def make_cluster(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Cluster]]]:
    """``await make_cluster(storage="sqlite"|"postgres", broker="redis"|"rabbitmq"|URL,
    **env)``: configures this process as the application and returns the (empty) cluster; its
    ``storage`` attribute is the connected backend the test reads."""
    made: list[tuple[Cluster, str | None]] = []

    async def make(
        storage: str = "sqlite", broker: str = "redis", dispatch_timeout: float = 300, **env: str
    ) -> Cluster:
        if "://" in broker:
            broker_url = broker  # a private broker the test started
        else:
            broker_url = _redis_broker() if broker == "redis" else require_service("rabbitmq")
        _purge(broker_url)
        storage_url, schema = _storage_url(storage, tmp_path)
        env = {"PYWORKFLOW_DISPATCH_TIMEOUT": str(dispatch_timeout), **env}
        cluster = Cluster(tmp=tmp_path, broker=broker_url, storage_url=storage_url, env_extra=env)
        made.append((cluster, schema))
        pyworkflow.reset_config()
        pyworkflow.configure(
            storage=storage_url,
            celery_broker=broker_url,
            default_runtime="celery",
            modules=["tests.celery.flows"],
            lease_ttl=3,
            dispatch_timeout=dispatch_timeout,
        )
        cluster.storage = pyworkflow.get_storage()
        await cluster.storage.connect()
        return cluster

    yield make
    for cluster, schema in made:
        cluster.stop()
        await cluster.storage.close()
        if schema is not None:
            await _drop_schema(schema)
    pyworkflow.reset_config()
