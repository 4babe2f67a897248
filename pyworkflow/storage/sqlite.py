"""SQLite storage: the default durable backend.

Extra: none (``aiosqlite`` is a core dependency). URLs (see
:func:`pyworkflow.storage.config.storage_from_url`): ``sqlite:///relative/path.db`` (three
slashes: relative to the working directory), ``sqlite:////abs/path.db`` (four: absolute),
``sqlite://`` or ``sqlite:///:memory:`` (a private in-memory database, gone on close);
query option ``?synchronous=FULL`` (default ``NORMAL``).

Features: persistent, and safe for several processes sharing one database file
(``cross_process``). Every multi-statement write runs in a ``BEGIN IMMEDIATE``
transaction, which takes SQLite's write lock up front, so the sequence fence of
``append_events``, the idempotency check of ``create_run`` and the conditional update of
``acquire_lease`` hold across processes. WAL journaling lets readers proceed while a
writer commits; writers wait up to 10 s for each other (``busy_timeout``).
``synchronous=NORMAL`` survives process crashes; ``FULL`` also survives power loss, at
the cost of an fsync per commit.

Datetimes are stored as integer microseconds since the Unix epoch (UTC): exact (a float
epoch loses the last microsecond digit), cheap to convert, and ordered correctly by
SQLite's integer comparison. Tags and event data are JSON text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiosqlite

from pyworkflow.core.exceptions import (
    ConfigurationError,
    RunAlreadyExistsError,
    SequenceConflictError,
    StorageError,
    WorkflowNotFoundError,
)
from pyworkflow.storage.base import RunQuery, StorageBackend, parse_cursor
from pyworkflow.storage.schemas import (
    TERMINAL_STATUSES,
    UPDATABLE_RUN_FIELDS,
    Event,
    RunStatus,
    RunUpdate,
    WorkflowRun,
)

SYNCHRONOUS_MODES = ("NORMAL", "FULL", "EXTRA")
BUSY_TIMEOUT_MS = 10_000
MEMORY = ":memory:"

# Schema migrations, applied in order; the database stores how many ran in
# ``schema_version``. Never edit a released entry: append a new one.
MIGRATIONS: list[str] = [
    # 1: runs (one column per WorkflowRun field) and their event logs.
    """
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
    """,
]

# -- conversions (hot path: keep them to a few C-level operations) -------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_STATUSES: dict[str, RunStatus] = {s.value: s for s in RunStatus}


def _dt_to_db(value: datetime | None) -> int | None:
    # Exact integer arithmetic; an aware datetime in any zone maps to the same instant.
    return None if value is None else (value - _EPOCH) // _MICROSECOND


def _dt_from_db(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def _status_to_db(value: Any) -> str:
    return RunStatus(value).value


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _identity(value: Any) -> Any:
    return value


_DATETIME_FIELDS = frozenset(f.name for f in fields(WorkflowRun) if "datetime" in str(f.type))

# Column order of every run SELECT and INSERT; _row_to_run unpacks rows in this order.
_RUN_COLUMNS_SQL = (
    "run_id, workflow_name, status, created_at, updated_at, started_at, completed_at, "
    "input_payload, result_payload, error, idempotency_key, max_duration, deadline_at, "
    "context_payload, tags, recovery_attempts, max_recovery_attempts, recover_on_worker_loss, "
    "parent_run_id, nesting_depth, continued_from_run_id, continued_to_run_id, wake_at, "
    "lease_owner, lease_expires_at, last_sequence"
)
RUN_COLUMNS = tuple(name.strip() for name in _RUN_COLUMNS_SQL.split(","))
_SPECIAL_WRITERS: dict[str, Callable[[Any], Any]] = {
    "status": _status_to_db,
    "tags": lambda tags: _json(list(tags)),
    "recover_on_worker_loss": int,
}
# Python value -> column value, per column (used for INSERTs and RunUpdate changes).
_WRITERS: dict[str, Callable[[Any], Any]] = {
    name: _dt_to_db if name in _DATETIME_FIELDS else _SPECIAL_WRITERS.get(name, _identity)
    for name in RUN_COLUMNS
}
_SELECT_RUN = f"SELECT {_RUN_COLUMNS_SQL} FROM runs"
_INSERT_RUN = f"INSERT INTO runs ({_RUN_COLUMNS_SQL}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})"
_INSERT_EVENT = (
    "INSERT INTO events (run_id, sequence, event_id, type, timestamp, data) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_TERMINAL = tuple(s.value for s in TERMINAL_STATUSES)
_STALE_CANDIDATES = tuple(
    s.value for s in RunStatus if s not in TERMINAL_STATUSES and s != RunStatus.SUSPENDED
)
_ACQUIRE_LEASE = (
    "UPDATE runs SET lease_owner = ?, lease_expires_at = ? "
    f"WHERE run_id = ? AND status NOT IN ({', '.join('?' * len(_TERMINAL))}) "
    "AND (lease_owner IS NULL OR lease_owner = ? OR lease_owner = ? "
    "OR lease_expires_at IS NULL OR lease_expires_at < ?)"
)
_LIST_STALE = (
    f"{_SELECT_RUN} WHERE status IN ({', '.join('?' * len(_STALE_CANDIDATES))}) "
    "AND (lease_expires_at IS NULL OR lease_expires_at < ?) ORDER BY rowid LIMIT ?"
)
# Well below SQLite's bound-variable limit on every supported version.
_IN_CHUNK = 500


def _run_to_row(run: WorkflowRun) -> tuple[Any, ...]:
    return tuple(write(getattr(run, name)) for name, write in _WRITERS.items())


def _row_to_run(row: Sequence[Any]) -> WorkflowRun:
    return WorkflowRun(
        run_id=row[0],
        workflow_name=row[1],
        status=_STATUSES[row[2]],
        created_at=_EPOCH + timedelta(microseconds=row[3]),
        updated_at=_EPOCH + timedelta(microseconds=row[4]),
        started_at=_dt_from_db(row[5]),
        completed_at=_dt_from_db(row[6]),
        input_payload=row[7],
        result_payload=row[8],
        error=row[9],
        idempotency_key=row[10],
        max_duration=row[11],
        deadline_at=_dt_from_db(row[12]),
        context_payload=row[13],
        tags=json.loads(row[14]),
        recovery_attempts=row[15],
        max_recovery_attempts=row[16],
        recover_on_worker_loss=bool(row[17]),
        parent_run_id=row[18],
        nesting_depth=row[19],
        continued_from_run_id=row[20],
        continued_to_run_id=row[21],
        wake_at=_dt_from_db(row[22]),
        lease_owner=row[23],
        lease_expires_at=_dt_from_db(row[24]),
        last_sequence=row[25],
    )


def _event_rows(run_id: str, events: Sequence[Event]) -> list[tuple[Any, ...]]:
    return [
        (run_id, e.sequence, e.event_id, e.type.value, _dt_to_db(e.timestamp), _json(e.data))
        for e in events
    ]


@lru_cache(maxsize=512)
def _update_sql(columns: tuple[str, ...]) -> str:
    # ``columns`` only ever holds names taken from UPDATABLE_RUN_FIELDS (see append_events).
    sets = "".join(f", {name} = ?" for name in columns)
    return f"UPDATE runs SET last_sequence = ?{sets} WHERE run_id = ? AND last_sequence = ?"


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (``executescript`` would COMMIT first)."""
    statements, buffer = [], ""
    for chunk in script.split(";"):
        buffer += chunk + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \n\t;"):
                statements.append(buffer.strip())
            buffer = ""
    return statements


def _daemonize(conn: aiosqlite.Connection) -> None:
    # aiosqlite runs each connection on a non-daemon thread, so a backend an application
    # forgets to close (typically a module-level one) would keep the interpreter from
    # exiting. SQLite's journal makes dying mid-transaction safe, so let it be a daemon.
    thread = getattr(conn, "_thread", None)
    if isinstance(thread, threading.Thread) and not thread.is_alive():
        thread.daemon = True


class SQLiteStorageBackend(StorageBackend):
    """Runs and events in one SQLite database file, shared safely between processes.

    The backend connects on first use. One object may be used from successive event
    loops (e.g. a synchronous helper's private loop, then ``asyncio.run``), but not from
    two loops at the same time.
    """

    capabilities = frozenset({"persistent", "cross_process"})

    def __init__(
        self,
        db_path: str | os.PathLike[str] = ".pyworkflow/pyworkflow.db",
        *,
        synchronous: str = "NORMAL",
    ) -> None:
        mode = str(synchronous).upper()
        if mode not in SYNCHRONOUS_MODES:
            raise ConfigurationError(
                f"invalid SQLite synchronous mode {synchronous!r}; "
                f"expected one of {', '.join(SYNCHRONOUS_MODES)}"
            )
        self.path = os.fspath(db_path)
        self.synchronous = mode
        if self.path in (MEMORY, ""):
            # A private database dies with its connection: neither persistent nor shared.
            self.capabilities = frozenset()
        self._db: aiosqlite.Connection | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, synchronous={self.synchronous!r})"

    # -- connection management ----------------------------------------------------------

    def _get_lock(self) -> asyncio.Lock:
        # One connection serves every coroutine, and a statement issued while another
        # coroutine's transaction is open would silently join that transaction; the lock
        # keeps operations whole. asyncio.Lock binds to the loop it first waits on, so a
        # new loop (successive asyncio.run calls) gets a new lock.
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock = asyncio.Lock()
            self._lock_loop = loop
        return self._lock

    async def _conn(self) -> aiosqlite.Connection:
        """The open connection, opened and migrated on first use (caller holds the lock)."""
        if self._db is None:
            self._db = await self._open()
        return self._db

    async def _open(self) -> aiosqlite.Connection:
        if self.path not in (MEMORY, ""):
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: the driver never opens transactions behind our back; we
        # issue BEGIN IMMEDIATE / COMMIT ourselves.
        db = aiosqlite.connect(self.path, isolation_level=None)
        _daemonize(db)
        await db
        try:
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await self._enable_wal(db)
            # self.synchronous was validated against SYNCHRONOUS_MODES in __init__.
            await db.execute(f"PRAGMA synchronous = {self.synchronous}")
            await _migrate(db)
        except BaseException:
            await db.close()
            raise
        return db

    async def _enable_wal(self, db: aiosqlite.Connection) -> None:
        if self.path in (MEMORY, ""):
            return
        # Switching a fresh file to WAL needs an exclusive lock and can report "locked"
        # without consulting busy_timeout when another process opens it at the same time.
        for attempt in range(100):
            try:
                await db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 99:
                    raise
                await asyncio.sleep(0.05)

    async def connect(self) -> None:
        async with self._session():
            pass

    async def close(self) -> None:
        async with self._get_lock():
            db, self._db = self._db, None
            if db is not None:
                try:
                    await db.close()
                except sqlite3.Error as exc:
                    raise StorageError(f"sqlite: closing {self.path!r} failed: {exc}") from exc

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[aiosqlite.Connection]:
        """Exclusive use of the connection, with driver errors mapped to StorageError."""
        async with self._get_lock():
            try:
                yield await self._conn()
            except sqlite3.Error as exc:
                raise StorageError(f"sqlite ({self.path}): {exc}") from exc

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: committed on exit, rolled back on error."""
        async with self._session() as db:
            try:
                # Inside the try: if this await is cancelled while BEGIN waits for another
                # writer, the BEGIN still completes on the driver thread and must be undone.
                await db.execute("BEGIN IMMEDIATE")
                yield db
                await db.execute("COMMIT")
            except BaseException:
                # No transaction may be open (BEGIN failed, or a cancelled COMMIT finished).
                with contextlib.suppress(sqlite3.OperationalError):
                    await db.execute("ROLLBACK")
                raise

    # -- runs -----------------------------------------------------------------------------

    async def create_run(self, run: WorkflowRun, events: Sequence[Event] = ()) -> WorkflowRun:
        row = _run_to_row(run)
        event_rows = _event_rows(run.run_id, events)
        key = run.idempotency_key
        async with self._transaction() as db:
            # BEGIN IMMEDIATE holds the write lock, so no other process can insert the
            # same key between this check and the INSERT below.
            if key is not None:
                existing = await _fetch_run(db, "idempotency_key = ?", key)
                if existing is not None:
                    return existing
            try:
                await db.execute(_INSERT_RUN, row)
            except sqlite3.IntegrityError as exc:
                if key is not None:
                    existing = await _fetch_run(db, "idempotency_key = ?", key)
                    if existing is not None:
                        return existing
                if await _fetch_run(db, "run_id = ?", run.run_id) is not None:
                    raise RunAlreadyExistsError(f"run {run.run_id!r} already exists") from None
                raise StorageError(f"sqlite: cannot store run {run.run_id!r}: {exc}") from exc
            if event_rows:
                await db.executemany(_INSERT_EVENT, event_rows)
        return run.copy()

    async def get_run(self, run_id: str) -> WorkflowRun | None:
        async with self._session() as db:
            return await _fetch_run(db, "run_id = ?", run_id)

    async def get_run_by_idempotency_key(self, key: str) -> WorkflowRun | None:
        async with self._session() as db:
            return await _fetch_run(db, "idempotency_key = ?", key)

    async def query_runs(self, query: RunQuery) -> list[WorkflowRun]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("status", None if query.status is None else _status_to_db(query.status)),
            ("workflow_name", query.workflow_name),
            ("parent_run_id", query.parent_run_id),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if query.tag is not None:
            clauses.append("EXISTS (SELECT 1 FROM json_each(runs.tags) WHERE value = ?)")
            params.append(query.tag)
        if query.created_after is not None:
            clauses.append("created_at >= ?")
            params.append(_dt_to_db(query.created_after))
        if query.created_before is not None:
            clauses.append("created_at < ?")
            params.append(_dt_to_db(query.created_before))
        if query.cursor is not None:
            micros, run_id = parse_cursor(query.cursor)
            clauses.append("(created_at < ? OR (created_at = ? AND run_id < ?))")
            params.extend((micros, micros, run_id))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"{_SELECT_RUN}{where} ORDER BY created_at DESC, run_id DESC LIMIT ? OFFSET ?"
        async with self._session() as db:
            rows = await db.execute_fetchall(sql, (*params, query.limit, query.offset))
        return [_row_to_run(r) for r in rows]

    # -- events ---------------------------------------------------------------------------

    async def append_events(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_last_sequence: int,
        update: RunUpdate | None = None,
    ) -> None:
        params: list[Any] = [events[-1].sequence if events else expected_last_sequence]
        sql = _update_sql(())
        if update is not None and update.changes:
            changes = update.changes
            # Column names come from the fixed tuple, never from the caller's dict keys.
            columns = tuple(name for name in UPDATABLE_RUN_FIELDS if name in changes)
            if len(columns) != len(changes):
                raise ValueError(f"RunUpdate cannot change {sorted(set(changes) - set(columns))}")
            sql = _update_sql(columns)
            params.extend(_WRITERS[name](changes[name]) for name in columns)
        params.append(run_id)
        params.append(expected_last_sequence)
        event_rows = _event_rows(run_id, events)
        async with self._transaction() as db:
            # The fence: the UPDATE matches only if nobody appended since the caller read.
            cursor = await db.execute(sql, params)
            if cursor.rowcount != 1:
                current = await _fetch_run(db, "run_id = ?", run_id)
                if current is None:
                    raise WorkflowNotFoundError(f"run {run_id!r} not found")
                raise SequenceConflictError(
                    f"run {run_id!r}: expected last sequence {expected_last_sequence}, "
                    f"found {current.last_sequence}"
                )
            if event_rows:
                await db.executemany(_INSERT_EVENT, event_rows)

    async def get_events(self, run_id: str, *, after_sequence: int = 0) -> list[Event]:
        async with self._session() as db:
            rows = await db.execute_fetchall(
                "SELECT sequence, event_id, type, timestamp, data FROM events "
                "WHERE run_id = ? AND sequence > ? ORDER BY sequence",
                (run_id, after_sequence),
            )
        parse_type = Event.parse_type
        return [
            Event(
                run_id=run_id,
                type=parse_type(type_),
                data=json.loads(data),
                sequence=sequence,
                timestamp=_EPOCH + timedelta(microseconds=timestamp),
                event_id=event_id,
            )
            for sequence, event_id, type_, timestamp, data in rows
        ]

    # -- timers and leases ----------------------------------------------------------------

    async def list_due_runs(self, now: datetime, limit: int = 100) -> list[str]:
        # rowid breaks wake_at ties in creation order and is free: it ends every index key.
        async with self._session() as db:
            rows = await db.execute_fetchall(
                "SELECT run_id FROM runs WHERE status = ? AND wake_at <= ? "
                "ORDER BY wake_at, rowid LIMIT ?",
                (RunStatus.SUSPENDED.value, _dt_to_db(now), limit),
            )
        return [r[0] for r in rows]

    async def next_wake_time(self) -> datetime | None:
        sql = "SELECT MIN(wake_at) FROM runs WHERE status = ? AND wake_at IS NOT NULL"
        async with self._session() as db:
            rows = list(await db.execute_fetchall(sql, (RunStatus.SUSPENDED.value,)))
        return _dt_from_db(rows[0][0]) if rows else None

    async def list_stale_runs(self, now: datetime, limit: int = 100) -> list[WorkflowRun]:
        async with self._session() as db:
            rows = await db.execute_fetchall(
                _LIST_STALE, (*_STALE_CANDIDATES, _dt_to_db(now), limit)
            )
        return [_row_to_run(r) for r in rows]

    async def acquire_lease(
        self,
        run_id: str,
        owner: str,
        expires_at: datetime,
        now: datetime,
        *,
        steal_from: str | None = None,
    ) -> bool:
        # One conditional UPDATE is atomic on its own (autocommit), across processes too.
        # ``lease_owner = NULL`` never matches, so steal_from=None adds no condition.
        params = (owner, _dt_to_db(expires_at), run_id, *_TERMINAL, owner, steal_from)
        async with self._session() as db:
            cursor = await db.execute(_ACQUIRE_LEASE, (*params, _dt_to_db(now)))
            return bool(cursor.rowcount == 1)

    async def renew_leases(self, run_ids: Sequence[str], owner: str, expires_at: datetime) -> None:
        ids = list(dict.fromkeys(run_ids))
        if not ids:
            return
        expires = _dt_to_db(expires_at)
        async with self._transaction() as db:
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                await db.execute(
                    "UPDATE runs SET lease_expires_at = ? WHERE lease_owner = ? "
                    f"AND run_id IN ({', '.join('?' * len(chunk))})",
                    (expires, owner, *chunk),
                )

    async def release_lease(self, run_id: str, owner: str) -> None:
        async with self._session() as db:
            await db.execute(
                "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL "
                "WHERE run_id = ? AND lease_owner = ?",
                (run_id, owner),
            )


async def _fetch_run(db: aiosqlite.Connection, where: str, value: str) -> WorkflowRun | None:
    # ``where`` is always one of this module's literal clauses.
    rows = list(await db.execute_fetchall(f"{_SELECT_RUN} WHERE {where}", (value,)))
    return _row_to_run(rows[0]) if rows else None


async def _migrate(db: aiosqlite.Connection) -> None:
    """Bring the schema to ``len(MIGRATIONS)``; a no-op read when it already is."""
    target = len(MIGRATIONS)
    try:
        rows = list(await db.execute_fetchall("SELECT version FROM schema_version"))
        if rows and rows[0][0] == target:
            return  # common case: no write lock needed
    except sqlite3.OperationalError:
        pass  # no schema_version table yet
    try:
        await db.execute("BEGIN IMMEDIATE")
        # Re-read under the write lock: another process may have migrated meanwhile.
        await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        rows = list(await db.execute_fetchall("SELECT version FROM schema_version"))
        current = rows[0][0] if rows else 0
        if not rows:
            await db.execute("INSERT INTO schema_version (version) VALUES (0)")
        if current > target:
            raise StorageError(
                f"database schema version {current} is newer than this pyworkflow "
                f"supports ({target}); upgrade pyworkflow-engine"
            )
        for script in MIGRATIONS[current:]:
            for statement in _statements(script):
                await db.execute(statement)
        if current != target:
            await db.execute("UPDATE schema_version SET version = ?", (target,))
        await db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.OperationalError):
            await db.execute("ROLLBACK")
        raise
