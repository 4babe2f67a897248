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
``acquire_lease`` hold across processes; a due-run claim is one ``UPDATE ... RETURNING``.
WAL journaling lets readers proceed while a writer commits; writers wait up to 10 s for
each other (``busy_timeout``). ``synchronous=NORMAL`` survives process crashes; ``FULL``
also survives power loss, at the cost of an fsync per commit (concurrent transactions
share one: group commit).

Operations run on the event loop's own thread with a connection of their own (a thread
hop costs more than a WAL commit); only a busy database sends them to aiosqlite's driver
thread. WAL checkpoints run on a background thread, off every commit.

Datetimes are stored as integer microseconds since the Unix epoch (UTC): exact (a float
epoch loses the last microsecond digit), cheap to convert, and ordered correctly by
SQLite's integer comparison. Tags and event data are JSON text; tags are also indexed in
``run_tags``. The statements and the contract logic are shared with the server backends
(:mod:`pyworkflow.storage._sql`); this module adds the dialect, the schema migrations and
the connection handling. A database written by an older release is upgraded in place on
first connect (``schema_version``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from pyworkflow.core.exceptions import ConfigurationError, StorageError
from pyworkflow.storage._sql import (
    READ,
    RUN_COLUMNS,
    TX,
    Conn,
    Dialect,
    Mode,
    Statements,
    apply_migrations,
    from_micros,
    read_schema_version,
    to_micros,
)
from pyworkflow.storage._sql_retention import SQLRetentionBackend
from pyworkflow.storage._sqlite_checkpoint import WalCheckpointer

T = TypeVar("T")

SYNCHRONOUS_MODES = ("NORMAL", "FULL", "EXTRA")
BUSY_TIMEOUT_MS = 10_000
MEMORY = ":memory:"

# Schema migrations, applied in order; the database stores how many ran in
# ``schema_version``. Never edit a released entry: append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: runs (one column per WorkflowRun field) and their event logs.
    (
        """CREATE TABLE runs (
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
        )""",
        """CREATE TABLE events (
            run_id TEXT NOT NULL,
            sequence INTEGER NOT NULL,
            event_id TEXT NOT NULL,
            type TEXT NOT NULL,
            timestamp INTEGER NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (run_id, sequence)
        ) WITHOUT ROWID""",
        "CREATE UNIQUE INDEX runs_idempotency_key ON runs (idempotency_key) "
        "WHERE idempotency_key IS NOT NULL",
        "CREATE INDEX runs_status_wake_at ON runs (status, wake_at)",
        "CREATE INDEX runs_workflow_name_created_at ON runs (workflow_name, created_at)",
        "CREATE INDEX runs_created_at ON runs (created_at)",
    ),
    # 2: cancellation requests and hooks; indexed tags; (filter, created_at, run_id)
    # indexes so every list_runs filter and cursor page is an index range read newest
    # first, with no sort.
    (
        "ALTER TABLE runs ADD COLUMN cancel_requested_at INTEGER",
        "ALTER TABLE runs ADD COLUMN cancel_reason TEXT",
        """CREATE TABLE hooks (
            token_hash TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            hook_id TEXT NOT NULL,
            name TEXT NOT NULL,
            token TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER,
            received_at INTEGER,
            payload TEXT,
            payload_schema TEXT,
            UNIQUE (run_id, hook_id)
        )""",
        "CREATE INDEX hooks_run_created_at ON hooks (run_id, created_at, token_hash)",
        "CREATE INDEX hooks_status_created_at ON hooks (status, created_at, token_hash)",
        "CREATE INDEX hooks_created_at ON hooks (created_at, token_hash)",
        """CREATE TABLE run_tags (
            run_id TEXT NOT NULL,
            tag TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (run_id, tag)
        ) WITHOUT ROWID""",
        "INSERT OR IGNORE INTO run_tags (run_id, tag, created_at) "
        "SELECT runs.run_id, json_each.value, runs.created_at FROM runs, json_each(runs.tags)",
        "CREATE INDEX run_tags_tag_created_at ON run_tags (tag, created_at, run_id)",
        "DROP INDEX runs_created_at",
        "CREATE INDEX runs_created_at ON runs (created_at, run_id)",
        "DROP INDEX runs_workflow_name_created_at",
        "CREATE INDEX runs_workflow_name_created_at ON runs (workflow_name, created_at, run_id)",
        "CREATE INDEX runs_status_created_at ON runs (status, created_at, run_id)",
        "CREATE INDEX runs_parent_created_at ON runs (parent_run_id, created_at, run_id) "
        "WHERE parent_run_id IS NOT NULL",
    ),
    # 3: schedules (next_run_time encoded like wake_at); due schedules and schedules of
    # one workflow are index range reads in the order their queries return them.
    (
        """CREATE TABLE schedules (
            schedule_id TEXT PRIMARY KEY,
            workflow_name TEXT NOT NULL,
            status TEXT NOT NULL,
            next_run_time INTEGER,
            version INTEGER NOT NULL,
            data TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        )""",
        "CREATE INDEX schedules_status_next_run_time "
        "ON schedules (status, next_run_time, schedule_id)",
        "CREATE INDEX schedules_workflow_name ON schedules (workflow_name, schedule_id)",
    ),
    # 4: runs asked to cancel, by status, newest first (crash recovery looks for the
    # suspended ones on every pass). Partial: only rows with a request are indexed.
    (
        "CREATE INDEX runs_cancel_status_created_at ON runs (status, created_at, run_id) "
        "WHERE cancel_requested_at IS NOT NULL",
    ),
    # 5: the worker registry, one row per worker process, replaced at every beat;
    # last_beat (encoded like wake_at) is indexed to find the stale ones.
    (
        """CREATE TABLE workers (
            worker_id TEXT PRIMARY KEY,
            last_beat INTEGER NOT NULL,
            data TEXT NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX workers_last_beat ON workers (last_beat)",
    ),
    # 6: the run's broker queue (routing, ``@workflow(queue=...)``); NULL: the default.
    ("ALTER TABLE runs ADD COLUMN queue TEXT",),
    # 7: the trace context the run's spans continue (W3C, as JSON text); NULL: none.
    ("ALTER TABLE runs ADD COLUMN trace_context TEXT",),
    # 8: runs' signal inboxes, read in sequence order from the key; a repeated send
    # finds its row by (run_id, signal_id). sent_at is encoded like wake_at.
    (
        """CREATE TABLE signals (
            run_id TEXT NOT NULL,
            sequence INTEGER NOT NULL,
            signal_id TEXT NOT NULL,
            name TEXT NOT NULL,
            payload TEXT NOT NULL,
            sent_at INTEGER NOT NULL,
            PRIMARY KEY (run_id, sequence),
            UNIQUE (run_id, signal_id)
        ) WITHOUT ROWID""",
    ),
    # 9: flow-control gates, read and compare-and-set by key; updated_at is encoded like
    # wake_at. A rowid table: data (a limit's holders and queue) may grow beyond what a
    # WITHOUT ROWID b-tree keeps well.
    (
        """CREATE TABLE gates (
            gate_key TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            data TEXT NOT NULL,
            updated_at INTEGER NOT NULL
        )""",
    ),
)


def _unique_violation(exc: BaseException) -> str | None:
    # "UNIQUE constraint failed: runs.idempotency_key" -> "runs.idempotency_key"
    if isinstance(exc, sqlite3.IntegrityError):
        head, _, constraint = str(exc).partition(": ")
        if head == "UNIQUE constraint failed":
            return constraint
    return None


def _missing_table(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc)


SQLITE = Dialect(
    name="sqlite",
    paramstyle="qmark",
    dt_to_db=to_micros,
    dt_from_db=from_micros,
    migrations=MIGRATIONS,
    unique_violation=_unique_violation,
    missing_table=_missing_table,
    bool_to_db=int,
    row_values=True,
    # UPDATE ... RETURNING arrived in SQLite 3.35; older builds claim in a transaction.
    update_returning=sqlite3.sqlite_version_info >= (3, 35),
    # rowid ends every index key for free and follows creation order.
    tiebreak="rowid",
    stale_order="rowid",
    prefix_probe=1000,
)
SQL = Statements(SQLITE)


class _SQLiteConn:
    """:class:`~pyworkflow.storage._sql.Conn` over an aiosqlite connection."""

    __slots__ = ("_db",)

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
        return cast(Sequence[Sequence[Any]], await self._db.execute_fetchall(sql, params))

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        cursor = await self._db.execute(sql, params)
        return int(cursor.rowcount)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._db.executemany(sql, rows)


class _ThreadConn:
    """:class:`~pyworkflow.storage._sql.Conn` over the raw ``sqlite3`` connection, used
    on aiosqlite's driver thread. Its methods never suspend, so a whole operation (a step's
    append: BEGIN, UPDATE, INSERT, COMMIT) costs one thread hop instead of four."""

    __slots__ = ("_raw",)

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._raw = raw

    async def fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
        return self._raw.execute(sql, params).fetchall()

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        return int(self._raw.execute(sql, params).rowcount)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._raw.executemany(sql, rows)


def _run_inline(coro: Coroutine[Any, Any, T]) -> T:
    """Drive a coroutine whose awaits are all :class:`_ThreadConn` calls (never suspend)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return cast(T, stop.value)
    coro.close()
    raise RuntimeError("a SQLite storage operation suspended on the driver thread")


def _in_thread(raw: sqlite3.Connection, mode: Mode, fn: Callable[[Conn], Awaitable[T]]) -> T:
    """Run ``fn`` on ``raw``'s thread, in a ``BEGIN IMMEDIATE`` transaction for TX."""
    if mode != TX:
        return _run_inline(cast(Coroutine[Any, Any, T], fn(_ThreadConn(raw))))
    raw.execute("BEGIN IMMEDIATE")
    try:
        result = _run_inline(cast(Coroutine[Any, Any, T], fn(_ThreadConn(raw))))
    except BaseException:
        with contextlib.suppress(sqlite3.OperationalError):
            raw.execute("ROLLBACK")
        raise
    raw.execute("COMMIT")
    return result


def _daemonize(conn: aiosqlite.Connection) -> None:
    # aiosqlite runs each connection on a non-daemon thread, so a backend an application
    # forgets to close (typically a module-level one) would keep the interpreter from
    # exiting. SQLite's journal makes dying mid-transaction safe, so let it be a daemon.
    thread = getattr(conn, "_thread", None)
    if isinstance(thread, threading.Thread) and not thread.is_alive():
        thread.daemon = True


class SQLiteStorageBackend(SQLRetentionBackend):
    """Runs and events in one SQLite database file, shared safely between processes.

    The backend connects on first use. One object may be used from successive event
    loops (e.g. a synchronous helper's private loop, then ``asyncio.run``), but not from
    two loops at the same time.
    """

    capabilities = frozenset({"persistent", "cross_process"})
    sql = SQL

    def __init__(
        self,
        db_path: str | os.PathLike[str] = ".pyworkflow/pyworkflow.db",
        *,
        synchronous: str = "NORMAL",
        read_only: bool = False,
    ) -> None:
        mode = str(synchronous).upper()
        if mode not in SYNCHRONOUS_MODES:
            raise ConfigurationError(
                f"invalid SQLite synchronous mode {synchronous!r}; "
                f"expected one of {', '.join(SYNCHRONOUS_MODES)}"
            )
        self.path = os.fspath(db_path)
        self.synchronous = mode
        # Opened with SQLite's mode=ro: no write, no migration, no checkpoint (the file
        # is left byte for byte as it was; see read_only()).
        self.is_read_only = read_only and self.path not in (MEMORY, "")
        self._read_only_uri = f"file:{urllib.parse.quote(os.path.abspath(self.path))}?mode=ro"
        if self.path in (MEMORY, ""):
            # A private database dies with its connection: neither persistent nor shared.
            self.capabilities = self.capabilities - {"persistent", "cross_process"}
        self._db: aiosqlite.Connection | None = None
        # Connections used directly on the event loop's thread (see _call), per thread.
        self._inline: dict[int, sqlite3.Connection] = {}
        # Transactions waiting for the next group commit (see _grouped).
        self._batch: list[tuple[Callable[[Conn], Awaitable[Any]], asyncio.Future[Any]]] = []
        # A batch whose leader was cancelled is committed by this task (kept referenced).
        self._pending_flush: asyncio.Future[None] | None = None
        self._checkpointer = WalCheckpointer(self.path)
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, synchronous={self.synchronous!r})"

    @property
    def label(self) -> str:
        return f"sqlite ({self.path})"

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

    def read_only(self) -> SQLiteStorageBackend:
        """The same database opened read-only: reads see everything committed, the
        database file is never written (verify's guarantee). The schema must be current
        already (a read-only open cannot migrate it)."""
        if self.path in (MEMORY, ""):
            return self  # a private database lives in this object's connection only
        return SQLiteStorageBackend(self.path, synchronous=self.synchronous, read_only=True)

    async def _open(self) -> aiosqlite.Connection:
        if self.is_read_only:
            return await self._open_read_only()
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

    async def _open_read_only(self) -> aiosqlite.Connection:
        # (A missing file is SQLite's "unable to open database file": mode=ro creates none.)
        db = aiosqlite.connect(self._read_only_uri, uri=True, isolation_level=None)
        _daemonize(db)
        await db
        try:
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            version = await read_schema_version(_SQLiteConn(db), SQL)
            if version != len(MIGRATIONS):
                raise StorageError(
                    f"sqlite: {self.path!r} has schema version {version}, this version of "
                    f"pyworkflow reads version {len(MIGRATIONS)}; a read-only open cannot "
                    "migrate it (any pyworkflow process of this version that writes to it "
                    "does, e.g. a worker)"
                )
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
        if self._db is not None:
            return  # connected already (called before every start: keep it cheap)
        async with self._session():
            pass

    async def close(self) -> None:
        async with self._get_lock():
            inline, self._inline = self._inline, {}
            for raw in inline.values():
                raw.close()
            self._checkpointer.stop()
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
                raise self._driver_error(exc) from exc

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: committed on exit, rolled back on error."""
        async with self._session() as db, self._transaction_on(db):
            yield db

    def _inline_conn(self) -> sqlite3.Connection | None:
        """This thread's connection for running operations without a thread hop, or
        ``None`` where operations must go to the driver thread.

        An operation costs tens of microseconds here (a WAL commit at
        ``synchronous=NORMAL`` does not wait for the disk): less than handing it to another
        thread and back, which costs more than the operation itself on a small machine.
        Strict modes (FULL, EXTRA) commit here too, in batches (see :meth:`_grouped`): the
        loop waits for one fsync per batch instead of a hop per commit. It never waits for
        a lock here (``busy_timeout = 0``): when another connection or process holds the
        database, the operation goes to the driver thread, which waits without blocking
        the event loop. Checkpoints run in the background (:mod:`._sqlite_checkpoint`).
        A private in-memory database exists only in the driver's own connection.
        """
        if self.path in (MEMORY, "") or self.is_read_only:
            return None  # (read-only: every read goes through the one mode=ro connection)
        key = threading.get_ident()
        raw = self._inline.get(key)
        if raw is None:
            raw = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            raw.execute("PRAGMA busy_timeout = 0")
            raw.execute(f"PRAGMA synchronous = {self.synchronous}")
            # Checkpoints run on a background thread (see _sqlite_checkpoint).
            raw.execute("PRAGMA wal_autocheckpoint = 0")
            self._inline[key] = raw
        return raw

    async def _grouped(self, fn: Callable[[Conn], Awaitable[Any]]) -> Any:
        """Group commit: the first transaction of a batch waits one event loop iteration
        (when anything else is ready to run in it), so that every coroutine ready in that
        iteration adds its own; then all commit at once (one commit, one fsync in strict
        modes). Each caller still returns only after its own transaction committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._batch.append((fn, future))
        if len(self._batch) == 1:  # first of a new batch: this caller commits it
            try:
                if _others_ready(loop):
                    await asyncio.sleep(0)
            except asyncio.CancelledError:
                # Others may have joined: the batch still gets committed, by a task.
                self._pending_flush = asyncio.ensure_future(self._flush_batch())
                raise
            await self._flush_batch()
        return await future

    async def _flush_batch(self) -> None:
        async with self._session() as db:
            batch, self._batch = self._batch, []
            if not batch:
                return
            raw = self._inline_conn()
            if raw is not None:
                try:
                    outcomes = _batch_in_thread(raw, [fn for fn, _ in batch])
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc):
                        _fail_batch(batch, self._driver_error(exc))
                        return
                    # Busy: another connection writes. Nothing was done here; the driver
                    # thread waits for the lock without blocking the loop.
                else:
                    self._checkpointer.committed(raw)
                    _settle_batch(batch, outcomes, self._driver_error)
                    return
            # Shielded: if this caller is cancelled, the others still get answers.
            await asyncio.shield(self._commit_batch(db, batch))

    async def _commit_batch(
        self,
        db: aiosqlite.Connection,
        batch: list[tuple[Callable[[Conn], Awaitable[Any]], asyncio.Future[Any]]],
    ) -> None:
        run_on_thread = getattr(db, "_execute", None)
        raw = getattr(db, "_conn", None)
        try:
            if run_on_thread is not None and isinstance(raw, sqlite3.Connection):
                outcomes = await run_on_thread(_batch_in_thread, raw, [fn for fn, _ in batch])
            else:  # no private driver API: one transaction each, the portable way
                outcomes = []
                for fn, _ in batch:
                    try:
                        async with self._transaction_on(db):
                            outcomes.append((True, await fn(_SQLiteConn(db))))
                    except Exception as exc:  # noqa: BLE001 - handed to its caller
                        outcomes.append((False, exc))
        except BaseException as exc:  # the commit itself failed: every caller learns it
            _fail_batch(batch, self._driver_error(exc) if isinstance(exc, sqlite3.Error) else exc)
            return
        _settle_batch(batch, outcomes, self._driver_error)

    @asynccontextmanager
    async def _transaction_on(self, db: aiosqlite.Connection) -> AsyncIterator[None]:
        """``BEGIN IMMEDIATE`` on ``db``: committed on exit, rolled back on error."""
        try:
            # Inside the try: if this await is cancelled while BEGIN waits for another
            # writer, the BEGIN still completes on the driver thread and must be undone.
            await db.execute("BEGIN IMMEDIATE")
            yield
            await db.execute("COMMIT")
        except BaseException:
            # No transaction may be open (BEGIN failed, or a cancelled COMMIT finished).
            with contextlib.suppress(sqlite3.OperationalError):
                await db.execute("ROLLBACK")
            raise

    async def _call(
        self,
        mode: Mode,
        fn: Callable[[Conn], Awaitable[T]],
        *,
        idempotent: bool = False,  # noqa: ARG002 - a local file has no connection to lose
    ) -> T:
        if mode != READ and (
            self.synchronous != "NORMAL" or self._batch or _others_ready(asyncio.get_running_loop())
        ):
            # Strict modes always share commits. At NORMAL a commit is cheap, so a write
            # waits for company only when other coroutines are ready to run (and may write).
            return cast(T, await self._grouped(fn))
        # This thread's inline connection (opened with the database on first use). No
        # lock around its use: an inline operation never suspends, so nothing else in this
        # process runs meanwhile; other connections are SQLite's business.
        raw_here = self._inline.get(threading.get_ident()) if self._db is not None else None
        if raw_here is None:
            async with self._session():
                raw_here = self._inline_conn()
        if raw_here is not None:
            try:
                # Writes run in a transaction here, so a busy database fails at BEGIN with
                # nothing done, and the driver-thread retry below is safe.
                result = _in_thread(raw_here, READ if mode == READ else TX, fn)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise self._driver_error(exc) from exc
            except sqlite3.Error as exc:
                raise self._driver_error(exc) from exc
            else:
                if mode != READ:
                    self._checkpointer.committed(raw_here)
                return result
        async with self._session() as db:
            # aiosqlite's own "run this on the driver thread" (a private method: checked,
            # with the portable path below as the fallback).
            run_on_thread = getattr(db, "_execute", None)
            raw = getattr(db, "_conn", None)
            if run_on_thread is not None and isinstance(raw, sqlite3.Connection):
                result = await run_on_thread(_in_thread, raw, mode, fn)
                return result
        async with self._transaction() if mode == TX else self._session() as db:
            return await fn(_SQLiteConn(db))


def _batch_in_thread(
    raw: sqlite3.Connection, fns: Sequence[Callable[[Conn], Awaitable[Any]]]
) -> list[tuple[bool, Any]]:
    """Run several operations in ONE transaction (one commit, one fsync), each inside a
    savepoint: an operation that fails is undone alone and reports its error."""
    if len(fns) == 1:  # nothing to share the commit with: no savepoint needed
        try:
            return [(True, _in_thread(raw, TX, fns[0]))]
        except sqlite3.OperationalError:
            raise  # a failed commit: every caller of the batch learns it
        except Exception as exc:  # noqa: BLE001 - handed to the operation's caller
            return [(False, exc)]
    outcomes: list[tuple[bool, Any]] = []
    raw.execute("BEGIN IMMEDIATE")
    try:
        for fn in fns:
            raw.execute("SAVEPOINT op")
            try:
                value = _run_inline(cast(Coroutine[Any, Any, Any], fn(_ThreadConn(raw))))
            except Exception as exc:  # noqa: BLE001 - handed to that operation's caller
                raw.execute("ROLLBACK TO op")
                raw.execute("RELEASE op")
                outcomes.append((False, exc))
            else:
                raw.execute("RELEASE op")
                outcomes.append((True, value))
        raw.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.OperationalError):
            raw.execute("ROLLBACK")
        raise
    return outcomes


def _fail_batch(
    batch: list[tuple[Callable[[Conn], Awaitable[Any]], asyncio.Future[Any]]],
    error: BaseException,
) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)


def _settle_batch(
    batch: list[tuple[Callable[[Conn], Awaitable[Any]], asyncio.Future[Any]]],
    outcomes: list[tuple[bool, Any]],
    error: Callable[[BaseException], BaseException],
) -> None:
    for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
        if future.done():
            continue  # its caller was cancelled; the write happened all the same
        if ok:
            future.set_result(value)
        else:
            future.set_exception(error(value) if isinstance(value, sqlite3.Error) else value)


def _others_ready(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether other callbacks are ready to run in this loop iteration. asyncio's own
    loops keep them in ``_ready`` (a private attribute, read defensively); for other loops
    the answer is "maybe", which only costs a lone writer one loop iteration."""
    ready = getattr(loop, "_ready", None)
    return True if ready is None else len(ready) > 0


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


async def _migrate(db: aiosqlite.Connection) -> None:
    """Bring the schema to ``len(MIGRATIONS)``; a no-op read when it already is."""
    conn = _SQLiteConn(db)
    if await read_schema_version(conn, SQL) == len(MIGRATIONS):
        return  # common case: no write lock needed
    try:
        # The write lock serializes migrating processes; the runner re-reads the version
        # under it (another process may have migrated meanwhile).
        await db.execute("BEGIN IMMEDIATE")
        await apply_migrations(conn, SQL)
        await db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.OperationalError):
            await db.execute("ROLLBACK")
        raise


__all__ = ["MIGRATIONS", "RUN_COLUMNS", "SQLITE", "SQLiteStorageBackend"]
