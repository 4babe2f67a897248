"""SQL backends beyond the shared contract: schema migrations, isolation, exact keys.

* A SQLite database written by the previous release (schema version 1) upgrades in place.
* PostgreSQL and MySQL create their schema on first connect, race-free when several
  processes connect at once, and refuse a schema newer than they know.
* Schema (PostgreSQL) and database (MySQL) isolation; keys compare byte for byte.
* Several instances claiming due runs at once never claim one run twice.
* A database of the release before the cancellation index gains it, requests kept.
* A database of the release before the worker registry gains its table, runs kept.
* A database of the release before tracing gains the trace context column; a run it
  holds reads back without one and still completes.
* A database of the release before signal inboxes gains their table; a run it holds
  takes signals (and, suspended, is woken by them).
* A database of the release before flow control gains the gates table, runs kept.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pyworkflow import get_runtime, sleep, start, workflow
from pyworkflow.core.exceptions import StorageError
from pyworkflow.engine.runner import new_owner_id, resume_run
from pyworkflow.storage._sql import WRITE, Conn, SQLStorageBackend
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.config import storage_from_url
from pyworkflow.storage.schemas import GateRecord, HookRecord, RunStatus, WorkerRecord, utcnow
from pyworkflow.storage.sqlite import MIGRATIONS, SQLiteStorageBackend
from pyworkflow.testing.conformance import at, make_events, make_run
from tests.services import require_service
from tests.storage import backend_mysql, backend_postgres

SQL_BACKENDS = ("sqlite", "postgres", "mysql")

# The schema of the previous release, verbatim (schema version 1).
SQLITE_V1 = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    workflow_name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    started_at INTEGER,
    completed_at INTEGER,
    input_payload TEXT,
    result_payload TEXT,
    error TEXT,
    idempotency_key TEXT,
    max_duration TEXT,
    deadline_at INTEGER,
    context_payload TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    recovery_attempts INTEGER NOT NULL DEFAULT 0,
    max_recovery_attempts INTEGER NOT NULL DEFAULT 3,
    recover_on_worker_loss INTEGER NOT NULL DEFAULT 1,
    parent_run_id TEXT,
    nesting_depth INTEGER NOT NULL DEFAULT 0,
    continued_from_run_id TEXT,
    continued_to_run_id TEXT,
    wake_at INTEGER,
    lease_owner TEXT,
    lease_expires_at INTEGER,
    last_sequence INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE events (
    run_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, sequence)
) WITHOUT ROWID;
CREATE UNIQUE INDEX runs_idempotency_key ON runs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_status_wake_at ON runs (status, wake_at);
CREATE INDEX runs_workflow_name_created_at ON runs (workflow_name, created_at);
CREATE INDEX runs_created_at ON runs (created_at);
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version (version) VALUES (1);
"""


def selected(request: pytest.FixtureRequest, name: str) -> None:
    if request.config.getoption("--backend", default=None) not in (None, name):
        pytest.skip("--backend selects another storage backend")


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


# -- SQLite: in-place upgrade of a version-1 database ---------------------------------------


def write_v1_database(path: Path) -> None:
    """A database as the previous release left it: two runs (tags, events, a timer)."""
    t0 = 1_714_564_800_123_456  # at(0) in epoch microseconds
    with sqlite3.connect(path) as db:
        db.executescript(SQLITE_V1)
        db.execute(
            "INSERT INTO runs (run_id, workflow_name, status, created_at, updated_at, tags, "
            "idempotency_key, wake_at, last_sequence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("old-1", "order", "suspended", t0, t0, '["vip","eu","vip"]', "key-1", t0 + 5, 2),
        )
        db.execute(
            "INSERT INTO runs (run_id, workflow_name, status, created_at, updated_at, tags, "
            "last_sequence) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("old-2", "refund", "running", t0 + 1_000_000, t0 + 1_000_000, '["eu"]', 0),
        )
        db.executemany(
            "INSERT INTO events (run_id, sequence, event_id, type, timestamp, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                ("old-1", 1, "e1", "workflow.started", t0, '{"n":1}'),
                ("old-1", 2, "e2", "sleep.started", t0, '{"n":2}'),
            ],
        )


async def test_sqlite_v1_database_upgrades_in_place(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    selected(request, "sqlite")
    path = tmp_path / "old.db"
    write_v1_database(path)

    backend = SQLiteStorageBackend(path)
    try:
        run = await backend.get_run("old-1")
        assert run is not None
        assert (run.status, run.tags, run.created_at, run.last_sequence) == (
            RunStatus.SUSPENDED,
            ["vip", "eu", "vip"],
            at(0),
            2,
        )
        # Tags written before run_tags existed were backfilled into the index.
        assert [r.run_id for r in await backend.list_runs(tag="eu")] == ["old-2", "old-1"]
        assert [r.run_id for r in await backend.list_runs(tag="vip")] == ["old-1"]
        by_key = await backend.get_run_by_idempotency_key("key-1")
        assert by_key is not None and by_key.run_id == "old-1"
        assert run is not None and run.queue is None  # routed to the default queue
        assert [e.event_id for e in await backend.get_events("old-1")] == ["e1", "e2"]
        assert await backend.claim_due_runs(at(10), "w1", at(60)) == ["old-1"]
        # And it keeps working as a current database.
        await backend.append_events("old-1", make_events("old-1", 3, 1), expected_last_sequence=2)
        await backend.create_run(make_run("new-1", created_at=at(5), tags=["eu"]))
        assert [r.run_id for r in await backend.list_runs(tag="eu")] == ["new-1", "old-2", "old-1"]
        # Columns and tables added since version 1 work on the old rows too.
        assert await backend.request_cancellation("old-2", "stop", at(9))
        old_2 = await backend.get_run("old-2")
        assert old_2 is not None and (old_2.cancel_requested_at, old_2.cancel_reason) == (
            at(9),
            "stop",
        )
        hook = HookRecord(token_hash="h", run_id="old-1", hook_id="hook:x#1", name="x")
        assert await backend.save_hook(hook) == hook
        worker = WorkerRecord(worker_id="w1", runs=["old-1"], last_beat=at(8))
        await backend.save_worker(worker)
        assert await backend.list_workers() == [worker]
        signal = await backend.send_signal("old-2", "go", "1", signal_id="s1", now=at(9))
        assert signal is not None and await backend.list_signals("old-2") == [signal]
        gate = GateRecord(key="concurrency:refund", data='{"holders":["old-2"]}', updated_at=at(9))
        assert await backend.save_gate(gate, expected_version=None)
        assert await backend.get_gate("concurrency:refund") == gate
    finally:
        await backend.close()

    assert query(path, "SELECT version FROM schema_version") == [(len(MIGRATIONS),)]
    indexes = {r[0] for r in query(path, "SELECT name FROM sqlite_master WHERE type='index'")}
    assert {
        "runs_status_created_at",
        "runs_parent_created_at",
        "run_tags_tag_created_at",
        "runs_created_at",
    } <= indexes
    columns = [r[2] for r in query(path, "PRAGMA index_info(runs_created_at)")]
    assert columns == ["created_at", "run_id"]
    # Reopening an upgraded file changes nothing.
    again = SQLiteStorageBackend(path)
    try:
        assert len(await again.list_runs()) == 3
    finally:
        await again.close()
    assert query(path, "SELECT version FROM schema_version") == [(len(MIGRATIONS),)]


async def test_sqlite_processes_upgrading_at_once_migrate_once(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    selected(request, "sqlite")
    path = tmp_path / "old.db"
    write_v1_database(path)
    backends = [SQLiteStorageBackend(path) for _ in range(4)]
    try:
        await asyncio.gather(*(b.connect() for b in backends))
        runs = await asyncio.gather(*(b.list_runs(tag="eu") for b in backends))
        assert all([r.run_id for r in found] == ["old-2", "old-1"] for found in runs)
    finally:
        for b in backends:
            await b.close()
    assert query(path, "SELECT count(*) FROM run_tags") == [(3,)]


# -- PostgreSQL and MySQL: schema creation, races, versions ---------------------------------


async def _set_version(name: str, namespace: str, version: int) -> None:
    if name == "postgres":
        await backend_postgres.admin_execute(
            f'UPDATE "{namespace}".schema_version SET version = $1', version
        )
    else:
        await backend_mysql.admin_execute(
            f"UPDATE `{namespace}`.schema_version SET version = %s", version
        )


@pytest.fixture
async def server_url(backend_name: str) -> AsyncIterator[tuple[str, str]]:
    """``(url, namespace)``: a URL of a new, empty schema (postgres) / database (mysql)."""
    if backend_name == "postgres":
        pytest.importorskip("asyncpg")
        base = require_service("postgres")
        schema = backend_postgres.new_schema()
        yield backend_postgres.with_options(base, schema=schema), schema
        await backend_postgres.admin_execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    elif backend_name == "mysql":
        pytest.importorskip("aiomysql")
        base = require_service("mysql")
        database = backend_mysql.new_database()
        await backend_mysql.admin_execute(f"CREATE DATABASE `{database}`")
        yield backend_mysql.with_database(base, database), database
        await backend_mysql.admin_execute(f"DROP DATABASE IF EXISTS `{database}`")
    else:
        pytest.skip("server backends only")


async def test_concurrent_first_connects_create_the_schema_once(
    server_url: tuple[str, str], backend_name: str
) -> None:
    url, namespace = server_url
    backends = [storage_from_url(url) for _ in range(5)]
    try:
        await asyncio.gather(*(b.connect() for b in backends))
        await backends[0].create_run(make_run("r1", tags=["t"]))
        for b in backends:
            assert [r.run_id for r in await b.list_runs(tag="t")] == ["r1"]
    finally:
        for b in backends:
            await b.close()

    # Newer than this release: refused with a clear error, nothing touched.
    await _set_version(backend_name, namespace, 99)
    newer = storage_from_url(url)
    with pytest.raises(StorageError, match="newer"):
        await newer.connect()
    await newer.close()


async def test_postgres_schemas_are_isolated(request: pytest.FixtureRequest) -> None:
    selected(request, "postgres")
    pytest.importorskip("asyncpg")
    async with (
        backend_postgres.open_backend(Path()) as (first, _),
        backend_postgres.open_backend(Path()) as (second, _),
    ):
        await first.create_run(make_run("r1", idempotency_key="k"))
        await second.create_run(make_run("r2", idempotency_key="k"))  # same key, other schema
        assert [r.run_id for r in await first.list_runs()] == ["r1"]
        assert [r.run_id for r in await second.list_runs()] == ["r2"]


# -- every SQL backend ---------------------------------------------------------------------


@pytest.fixture
def sql_storage(backend_name: str, storage: StorageBackend) -> StorageBackend:
    if backend_name not in SQL_BACKENDS:
        pytest.skip("SQL backends only")
    return storage


async def test_keys_compare_exactly(sql_storage: StorageBackend) -> None:
    # Case, trailing spaces and accents matter (MySQL's default collations ignore them).
    keys = ["key", "KEY", "key ", "kéy"]
    for i, key in enumerate(keys):
        stored = await sql_storage.create_run(make_run(f"r{i}", idempotency_key=key, tags=[key]))
        assert stored.run_id == f"r{i}"
    for i, key in enumerate(keys):
        by_key = await sql_storage.get_run_by_idempotency_key(key)
        assert by_key is not None and by_key.run_id == f"r{i}"
        assert [r.run_id for r in await sql_storage.list_runs(tag=key)] == [f"r{i}"]
    # Gate keys too: four gates.
    for i, key in enumerate(keys):
        gate = GateRecord(key=f"concurrency:{key}", data=f'{{"i":{i}}}', updated_at=at(i))
        assert await sql_storage.save_gate(gate, expected_version=None)
    for i, key in enumerate(keys):
        stored = await sql_storage.get_gate(f"concurrency:{key}")
        assert stored is not None and stored.data == f'{{"i":{i}}}'
    # Byte order of run ids, as run_cursor paging assumes.
    for run_id in ("b", "B", "a-b", "ab", "a_b"):
        await sql_storage.create_run(make_run(run_id, created_at=at(100)))
    newest = [r.run_id for r in await sql_storage.list_runs(created_after=at(100))]
    assert newest == sorted(["b", "B", "a-b", "ab", "a_b"], reverse=True)


async def test_instances_claiming_at_once_never_share_a_run(
    sql_storage: StorageBackend, storage_url: str | None
) -> None:
    if storage_url is None:
        pytest.skip("needs a URL to open more instances")
    for i in range(40):
        await sql_storage.create_run(
            make_run(f"due-{i:02}", status=RunStatus.SUSPENDED, wake_at=at(i))
        )
    others = [storage_from_url(storage_url) for _ in range(3)]
    try:
        claimers = [sql_storage, *others]
        claimed: list[str] = []
        # New owners each round (an owner may re-claim its own leases); a claimer may
        # come back short while others hold rows, hence the rounds.
        for round_ in range(10):
            batches = await asyncio.gather(
                *(
                    b.claim_due_runs(at(100), f"claimer-{round_}-{n}", at(200), limit=5)
                    for n, b in enumerate(claimers)
                )
            )
            claimed += [run_id for batch in batches for run_id in batch]
            if len(claimed) >= 40:
                break
        assert len(claimed) == len(set(claimed)) == 40
    finally:
        for b in others:
            await b.close()


# -- the latest migrations: a database of an earlier release gains them ----------------------

CANCEL_INDEX = "runs_cancel_status_created_at"
WORKERS_INDEX = "workers_last_beat"
# What the latest migrations added, undone, newest first: undoing the first n gives the
# schema of the release n migrations back.
UNDO_LATEST = {
    "sqlite": (
        "DROP TABLE gates",
        "DROP TABLE signals",
        "ALTER TABLE runs DROP COLUMN trace_context",
        "ALTER TABLE runs DROP COLUMN queue",
        "DROP TABLE workers",
        f"DROP INDEX {CANCEL_INDEX}",
    ),
    "postgres": (
        "DROP TABLE {prefix}gates",
        "DROP TABLE {prefix}signals",
        "ALTER TABLE {prefix}runs DROP COLUMN trace_context",
        "ALTER TABLE {prefix}runs DROP COLUMN queue",
        "DROP TABLE {prefix}workers",
        f"DROP INDEX {{prefix}}{CANCEL_INDEX}",
    ),
    "mysql": (
        "DROP TABLE gates",
        "DROP TABLE signals",
        "ALTER TABLE runs DROP COLUMN trace_context",
        "ALTER TABLE runs DROP COLUMN queue",
        "DROP TABLE workers",
        f"ALTER TABLE runs DROP KEY {CANCEL_INDEX}, DROP COLUMN cancel_requested",
    ),
}
HAS_INDEX = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'index' AND name = ?",
    "postgres": "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
    "AND indexname = $1",
    "mysql": "SELECT DISTINCT index_name FROM information_schema.statistics "
    "WHERE table_schema = DATABASE() AND index_name = %s",
}


async def _downgrade(backend: SQLStorageBackend, name: str, migrations: int) -> None:
    """Take the database back by the last ``migrations`` migrations."""
    sql = backend.sql

    async def undo(conn: Conn) -> None:
        for statement in UNDO_LATEST[name][:migrations]:
            await conn.execute(statement.format(prefix=sql.prefix), ())
        await conn.execute(sql.set_version, (len(sql.migrations) - migrations,))

    await backend._call(WRITE, undo)


async def _has_index(backend: SQLStorageBackend, name: str, index: str) -> bool:
    sql = HAS_INDEX[name]
    if name == "postgres":
        # pg_indexes by the backend's own schema (its search_path is not set to it).
        sql = sql.replace("current_schema()", "$2")
        params: tuple[str, ...] = (index, backend.schema)  # type: ignore[attr-defined]
    else:
        params = (index,)
    rows = await backend._call(WRITE, lambda conn: conn.fetch(sql, params))
    return bool(rows)


async def _schema_version(backend: SQLStorageBackend) -> int:
    rows = await backend._call(WRITE, lambda conn: conn.fetch(backend.sql.read_version, ()))
    return int(rows[0][0])


async def test_previous_schema_gains_the_cancel_index(
    sql_storage: StorageBackend, storage_url: str | None, backend_name: str
) -> None:
    assert isinstance(sql_storage, SQLStorageBackend) and storage_url is not None
    await sql_storage.create_run(make_run("asked", status=RunStatus.SUSPENDED, created_at=at(1)))
    await sql_storage.create_run(make_run("quiet", status=RunStatus.SUSPENDED, created_at=at(2)))
    await sql_storage.create_run(make_run("busy", status=RunStatus.RUNNING, created_at=at(3)))
    for run_id in ("asked", "busy"):
        assert await sql_storage.request_cancellation(run_id, "stop", at(5))
    await _downgrade(sql_storage, backend_name, migrations=6)
    assert not await _has_index(sql_storage, backend_name, CANCEL_INDEX)
    await sql_storage.close()

    upgraded = storage_from_url(storage_url)
    assert isinstance(upgraded, SQLStorageBackend)
    try:
        asked = await upgraded.list_runs(status=RunStatus.SUSPENDED, cancel_requested=True)
        assert [(r.run_id, r.cancel_requested_at, r.cancel_reason) for r in asked] == [
            ("asked", at(5), "stop")
        ]
        assert [r.run_id for r in await upgraded.list_runs(cancel_requested=False)] == ["quiet"]
        assert await _has_index(upgraded, backend_name, CANCEL_INDEX)
        assert await _schema_version(upgraded) == len(upgraded.sql.migrations)
    finally:
        await upgraded.close()


async def test_previous_schema_gains_the_workers_table(
    sql_storage: StorageBackend, storage_url: str | None, backend_name: str
) -> None:
    assert isinstance(sql_storage, SQLStorageBackend) and storage_url is not None
    await sql_storage.create_run(make_run("kept", tags=["eu"]))
    await sql_storage.append_events("kept", make_events("kept", 1, 2), expected_last_sequence=0)
    await _downgrade(sql_storage, backend_name, migrations=5)
    with pytest.raises(StorageError):  # the release before had no worker registry
        await sql_storage.list_workers()
    await sql_storage.close()

    upgraded = storage_from_url(storage_url)
    assert isinstance(upgraded, SQLStorageBackend)
    try:
        kept = await upgraded.get_run("kept")
        assert kept is not None and kept.tags == ["eu"]
        assert [e.sequence for e in await upgraded.get_events("kept")] == [1, 2]
        assert [r.run_id for r in await upgraded.list_runs(tag="eu")] == ["kept"]
        assert await upgraded.list_workers() == []
        worker = WorkerRecord(worker_id="w1", runs=["kept"], last_beat=at(7))
        await upgraded.save_worker(worker)
        assert await upgraded.list_workers() == [worker]
        assert await _has_index(upgraded, backend_name, WORKERS_INDEX)
        assert await _schema_version(upgraded) == len(upgraded.sql.migrations)
    finally:
        await upgraded.close()


async def test_previous_schema_gains_the_queue_column(
    sql_storage: StorageBackend, storage_url: str | None, backend_name: str
) -> None:
    """Runs stored before routing existed read back with ``queue=None`` (the default
    queue), and new runs keep theirs."""
    assert isinstance(sql_storage, SQLStorageBackend) and storage_url is not None
    await sql_storage.create_run(make_run("before", tags=["eu"]))
    await _downgrade(sql_storage, backend_name, migrations=4)
    await sql_storage.close()

    upgraded = storage_from_url(storage_url)
    assert isinstance(upgraded, SQLStorageBackend)
    try:
        before = await upgraded.get_run("before")
        assert before is not None and (before.tags, before.queue) == (["eu"], None)
        routed = make_run("after")
        routed.queue = "billing"
        await upgraded.create_run(routed)
        after = await upgraded.get_run("after")
        assert after is not None and after.queue == "billing"
        assert await _schema_version(upgraded) == len(upgraded.sql.migrations)
    finally:
        await upgraded.close()


@workflow(name="migrations_nap")
async def nap(order: str) -> str:
    await sleep(0.3)
    return order.upper()


TRACED = '{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}'


async def test_previous_schema_gains_the_trace_context_column(
    sql_storage: StorageBackend, storage_url: str | None, backend_name: str
) -> None:
    """A run stored (sleeping) by the release before tracing reads back with
    ``trace_context=None`` after the upgrade and, woken, completes; new runs keep theirs."""
    assert isinstance(sql_storage, SQLStorageBackend) and storage_url is not None
    run_id = await start(nap, "a", storage=sql_storage)
    await get_runtime("local").shutdown()  # nothing wakes it but this test
    asleep = await sql_storage.get_run(run_id)
    assert asleep is not None and asleep.status == RunStatus.SUSPENDED
    await _downgrade(sql_storage, backend_name, migrations=3)
    await sql_storage.close()

    upgraded = storage_from_url(storage_url)
    assert isinstance(upgraded, SQLStorageBackend)
    try:
        before = await upgraded.get_run(run_id)
        assert before is not None and before.wake_at is not None
        assert (before.status, before.trace_context) == (RunStatus.SUSPENDED, None)
        await asyncio.sleep(max(0.0, (before.wake_at - utcnow()).total_seconds()))
        await resume_run(upgraded, run_id, owner=new_owner_id(), lease_ttl=30)
        done = await upgraded.get_run(run_id)
        assert done is not None and (done.status, done.result) == (RunStatus.COMPLETED, "A")
        traced = make_run("after")
        traced.trace_context = TRACED
        await upgraded.create_run(traced)
        after = await upgraded.get_run("after")
        assert after is not None and after.trace_context == TRACED
        assert await _schema_version(upgraded) == len(upgraded.sql.migrations)
    finally:
        await upgraded.close()


async def test_previous_schema_gains_the_signals_table(
    sql_storage: StorageBackend, storage_url: str | None, backend_name: str
) -> None:
    """Runs stored before signal inboxes existed take signals after the upgrade (a
    suspended one becomes due); a finished one takes none and is still deleted."""
    assert isinstance(sql_storage, SQLStorageBackend) and storage_url is not None
    await sql_storage.create_run(
        make_run("waiting", status=RunStatus.SUSPENDED, wake_at=at(3600), last_sequence=1),
        make_events("waiting", 1, 1),
    )
    await sql_storage.create_run(make_run("done", status=RunStatus.COMPLETED))
    await _downgrade(sql_storage, backend_name, migrations=2)
    with pytest.raises(StorageError):  # the release before had no inboxes
        await sql_storage.list_signals("waiting")
    await sql_storage.close()

    upgraded = storage_from_url(storage_url)
    assert isinstance(upgraded, SQLStorageBackend)
    try:
        assert await upgraded.list_signals("waiting") == []
        sent = await upgraded.send_signal("waiting", "go", "1", signal_id="s1", now=at(10))
        assert sent is not None and sent.sequence == 1
        assert await upgraded.list_signals("waiting") == [sent]
        waiting = await upgraded.get_run("waiting")
        assert waiting is not None and (waiting.wake_at, waiting.last_sequence) == (at(10), 1)
        assert await upgraded.list_due_runs(at(10)) == ["waiting"]
        assert await upgraded.send_signal("done", "go", "1", signal_id="s1", now=at(10)) is None
        assert await upgraded.delete_runs(["done"]) == 1
        assert await _schema_version(upgraded) == len(upgraded.sql.migrations)
    finally:
        await upgraded.close()


async def test_previous_schema_gains_the_gates_table(
    sql_storage: StorageBackend, storage_url: str | None, backend_name: str
) -> None:
    """A database stored before flow control existed keeps its runs and keeps gates
    after the upgrade, inserted and then compare-and-set."""
    assert isinstance(sql_storage, SQLStorageBackend) and storage_url is not None
    await sql_storage.create_run(make_run("kept", tags=["eu"]))
    await _downgrade(sql_storage, backend_name, migrations=1)
    with pytest.raises(StorageError):  # the release before had no gates
        await sql_storage.get_gate("rate:charge")
    await sql_storage.close()

    upgraded = storage_from_url(storage_url)
    assert isinstance(upgraded, SQLStorageBackend)
    try:
        kept = await upgraded.get_run("kept")
        assert kept is not None and kept.tags == ["eu"]
        assert await upgraded.get_gate("rate:charge") is None
        gate = GateRecord(key="rate:charge", data='{"next":1}', updated_at=at(1))
        assert await upgraded.save_gate(gate, expected_version=None) and gate.version == 1
        gate.data, gate.updated_at = '{"next":2}', at(2)
        assert await upgraded.save_gate(gate, expected_version=1) and gate.version == 2
        assert await upgraded.get_gate("rate:charge") == gate
        assert await _schema_version(upgraded) == len(upgraded.sql.migrations)
    finally:
        await upgraded.close()


async def test_a_read_only_sqlite_view_reads_and_never_writes(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """``read_only()`` (what ``pyworkflow verify`` reads through): a current database
    is read, its file untouched, a write refused; an old schema is refused with the
    versions named, since a read-only open cannot migrate it."""
    selected(request, "sqlite")
    old = tmp_path / "old.db"
    write_v1_database(old)
    before = old.read_bytes()
    view = SQLiteStorageBackend(old).read_only()
    with pytest.raises(StorageError, match="has schema version 1, .* reads version"):
        await view.get_run("old-1")
    await view.close()
    assert old.read_bytes() == before

    current = SQLiteStorageBackend(old)  # migrated by a read-write open
    await current.get_run("old-1")
    await current.close()
    before = old.read_bytes()
    view = current.read_only()
    try:
        run = await view.get_run("old-1")
        assert run is not None and run.status is RunStatus.SUSPENDED
        assert [e.event_id for e in await view.get_events("old-1")] == ["e1", "e2"]
        with pytest.raises(StorageError, match="readonly"):
            await view.create_run(make_run("new-1"))
    finally:
        await view.close()
    assert old.read_bytes() == before
    with pytest.raises(StorageError, match="unable to open"):
        await SQLiteStorageBackend(tmp_path / "absent.db").read_only().get_run("x")
    assert not (tmp_path / "absent.db").exists()
