"""PostgreSQL storage: the server backend for many workers and large stores.

Extra: ``pip install 'pyworkflow-engine[postgres]'`` (the ``asyncpg`` driver).

URL: ``postgresql://user:password@host:5432/database?schema=workflows`` (``postgres://``
works too). Options in the query string: ``schema`` (default ``public``; created if
missing), ``min_size`` / ``max_size`` (connection pool, default 1 / 10),
``application_name`` (default ``pyworkflow``, shown in ``pg_stat_activity``),
``statement_cache_size`` (default 100; 0 behind PgBouncer in transaction mode),
``connect_timeout`` (seconds to open a connection, default 10) and ``call_timeout``
(seconds one attempt of a storage call may take, default 30); any other option
(``sslmode=require``, ...) is passed to asyncpg. Percent-encode special characters
of the password. The password never appears in ``repr()`` or error messages.

Guarantees (the :class:`~pyworkflow.storage.base.StorageBackend` contract, across any
number of processes and hosts):

* ``append_events`` is one statement: the fenced projection update
  (``UPDATE runs ... WHERE run_id = $ AND last_sequence = $``) and the event insert are
  data-modifying CTEs of one ``WITH`` query, so they commit together in one round trip;
  a concurrent writer at the same expected sequence waits on the row lock, then finds
  the fence moved and gets :class:`SequenceConflictError`.
* ``create_run`` stores the run, its tags and its first events in one statement; the
  unique index on ``idempotency_key`` makes concurrent creates with one key store
  exactly one run (the others get that run back).
* ``claim_due_runs`` is ``UPDATE ... WHERE run_id IN (SELECT ... ORDER BY wake_at
  LIMIT n FOR UPDATE SKIP LOCKED) RETURNING``: concurrent schedulers split the due runs
  without waiting on each other. Lease changes are single conditional UPDATEs.
* Every query named in the contract is an index range scan (see the module docstring
  of :mod:`pyworkflow.storage._sql` and ``tests/storage/test_sql_indexes.py``).

Connection loss (server restart or crash, failover, ``pg_terminate_backend``, an idle
timeout): a lost session makes the pool replace every pooled connection. A call is
retried a few times with short pauses (about half a second in all,
:mod:`pyworkflow.storage._sql_retry`) when no connection could be had, when the server
rolled it back (deadlock, serialization failure), and when its connection died midway
if repeating it is safe: reads, lease acquire/renew/release and due-run claims.
``create_run`` and ``append_events`` retry a lost connection once; if the retry
conflicts, the backend checks whether the first attempt had committed (same stored run /
same event ids at those sequences) and reports success only then. Each attempt is
bounded by ``call_timeout``, so a server that stops answering never hangs a caller.
What still fails is a :class:`~pyworkflow.core.exceptions.StorageUnavailableError` (the
server is unreachable, dropped the call, or did not answer) or, for any other failure,
a :class:`~pyworkflow.core.exceptions.StorageError`.

Tuning: each in-flight storage call holds one pooled connection for one round trip, so
``max_size`` bounds the concurrency of one process (total connections = processes x
``max_size``; stay under the server's ``max_connections`` or put PgBouncer in front, in
session mode, or in transaction mode with ``statement_cache_size=0``). The pool skips
asyncpg's per-release session reset (this backend never changes session state), which
saves a round trip per call. Datetimes are ``timestamptz`` (microsecond precision), text
keys use the ``"C"`` collation (byte order, as the other backends compare), payloads and
event data are ``text``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote

import asyncpg

from pyworkflow.core.exceptions import ConfigurationError
from pyworkflow.storage._sql import (
    EVENT_COLUMNS,
    RUN_COLUMNS,
    TX,
    WRITE,
    AppendPlan,
    Conn,
    CreatePlan,
    Dialect,
    Mode,
    Statements,
    apply_migrations,
    read_schema_version,
)
from pyworkflow.storage._sql_retention import SQLRetentionBackend
from pyworkflow.storage._sql_retry import (
    CALL_TIMEOUT,
    CONNECT_TIMEOUT,
    RetryingPool,
)
from pyworkflow.storage.urls import parse_url, split_url

T = TypeVar("T")

#: URL query options this backend reads itself (the rest go to asyncpg).
URL_OPTIONS = (
    "schema",
    "min_size",
    "max_size",
    "application_name",
    "statement_cache_size",
    "connect_timeout",
    "call_timeout",
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# Schema migrations, applied in order; ``{p}`` is the quoted schema plus a dot. Never
# edit a released entry: append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE {p}runs (
            run_id TEXT COLLATE "C" PRIMARY KEY,
            workflow_name TEXT COLLATE "C" NOT NULL,
            status TEXT COLLATE "C" NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL,
            started_at TIMESTAMPTZ,
            completed_at TIMESTAMPTZ,
            input_payload TEXT,
            result_payload TEXT,
            error TEXT,
            idempotency_key TEXT COLLATE "C",
            max_duration TEXT,
            deadline_at TIMESTAMPTZ,
            context_payload TEXT,
            tags TEXT NOT NULL DEFAULT '[]',
            recovery_attempts INTEGER NOT NULL DEFAULT 0,
            max_recovery_attempts INTEGER NOT NULL DEFAULT 3,
            recover_on_worker_loss BOOLEAN NOT NULL DEFAULT TRUE,
            parent_run_id TEXT COLLATE "C",
            nesting_depth INTEGER NOT NULL DEFAULT 0,
            continued_from_run_id TEXT COLLATE "C",
            continued_to_run_id TEXT COLLATE "C",
            wake_at TIMESTAMPTZ,
            lease_owner TEXT COLLATE "C",
            lease_expires_at TIMESTAMPTZ,
            last_sequence BIGINT NOT NULL DEFAULT 0,
            cancel_requested_at TIMESTAMPTZ,
            cancel_reason TEXT
        ) WITH (fillfactor = 85)""",
        """CREATE TABLE {p}events (
            run_id TEXT COLLATE "C" NOT NULL,
            sequence BIGINT NOT NULL,
            event_id TEXT NOT NULL,
            type TEXT NOT NULL,
            timestamp TIMESTAMPTZ NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (run_id, sequence)
        )""",
        """CREATE TABLE {p}run_tags (
            run_id TEXT COLLATE "C" NOT NULL,
            tag TEXT COLLATE "C" NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (run_id, tag)
        )""",
        "CREATE UNIQUE INDEX runs_idempotency_key ON {p}runs (idempotency_key) "
        "WHERE idempotency_key IS NOT NULL",
        "CREATE INDEX runs_status_wake_at ON {p}runs (status, wake_at, run_id)",
        "CREATE INDEX runs_status_created_at ON {p}runs (status, created_at, run_id)",
        "CREATE INDEX runs_workflow_name_created_at ON {p}runs (workflow_name, created_at, run_id)",
        "CREATE INDEX runs_parent_created_at ON {p}runs (parent_run_id, created_at, run_id) "
        "WHERE parent_run_id IS NOT NULL",
        "CREATE INDEX runs_created_at ON {p}runs (created_at, run_id)",
        "CREATE INDEX run_tags_tag_created_at ON {p}run_tags (tag, created_at, run_id)",
        """CREATE TABLE {p}hooks (
            token_hash TEXT COLLATE "C" PRIMARY KEY,
            run_id TEXT COLLATE "C" NOT NULL,
            hook_id TEXT COLLATE "C" NOT NULL,
            name TEXT NOT NULL,
            token TEXT NOT NULL,
            status TEXT COLLATE "C" NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            expires_at TIMESTAMPTZ,
            received_at TIMESTAMPTZ,
            payload TEXT,
            payload_schema TEXT,
            CONSTRAINT hooks_run_hook UNIQUE (run_id, hook_id)
        )""",
        "CREATE INDEX hooks_run_created_at ON {p}hooks (run_id, created_at, token_hash)",
        "CREATE INDEX hooks_status_created_at ON {p}hooks (status, created_at, token_hash)",
        "CREATE INDEX hooks_created_at ON {p}hooks (created_at, token_hash)",
    ),
    # 2: schedules (next_run_time is a timestamptz like wake_at); due schedules and
    # schedules of one workflow are index range reads in the order their queries return.
    (
        """CREATE TABLE {p}schedules (
            schedule_id TEXT COLLATE "C" PRIMARY KEY,
            workflow_name TEXT COLLATE "C" NOT NULL,
            status TEXT COLLATE "C" NOT NULL,
            next_run_time TIMESTAMPTZ,
            version BIGINT NOT NULL,
            data TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        )""",
        "CREATE INDEX schedules_status_next_run_time "
        "ON {p}schedules (status, next_run_time, schedule_id)",
        "CREATE INDEX schedules_workflow_name ON {p}schedules (workflow_name, schedule_id)",
    ),
    # 3: runs asked to cancel, by status, newest first (crash recovery looks for the
    # suspended ones on every pass). Partial: only rows with a request are indexed.
    # IF NOT EXISTS: an operator may have built it CONCURRENTLY beforehand.
    (
        "CREATE INDEX IF NOT EXISTS runs_cancel_status_created_at "
        "ON {p}runs (status, created_at, run_id) WHERE cancel_requested_at IS NOT NULL",
    ),
    # 4: the worker registry, one row per worker process, replaced at every beat;
    # last_beat is indexed to find the stale ones.
    (
        """CREATE TABLE {p}workers (
            worker_id TEXT COLLATE "C" PRIMARY KEY,
            last_beat TIMESTAMPTZ NOT NULL,
            data TEXT NOT NULL
        )""",
        "CREATE INDEX workers_last_beat ON {p}workers (last_beat)",
    ),
    # 5: the run's broker queue (routing, ``@workflow(queue=...)``); NULL: the default.
    # A nullable column without a default: no table rewrite.
    ('ALTER TABLE {p}runs ADD COLUMN queue TEXT COLLATE "C"',),
    # 6: the trace context the run's spans continue (W3C, as JSON text); NULL: none.
    ("ALTER TABLE {p}runs ADD COLUMN trace_context TEXT",),
    # 7: runs' signal inboxes, read in sequence order from the key; a repeated send
    # finds its row by (run_id, signal_id).
    (
        """CREATE TABLE {p}signals (
            run_id TEXT COLLATE "C" NOT NULL,
            sequence BIGINT NOT NULL,
            signal_id TEXT COLLATE "C" NOT NULL,
            name TEXT NOT NULL,
            payload TEXT NOT NULL,
            sent_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (run_id, sequence),
            CONSTRAINT signals_run_signal UNIQUE (run_id, signal_id)
        )""",
    ),
    # 8: flow-control gates, read and compare-and-set by key. Every acquire and release
    # rewrites a gate's row: room left on its page lets the update stay there (HOT),
    # without a new entry in the key's index.
    (
        """CREATE TABLE {p}gates (
            gate_key TEXT COLLATE "C" PRIMARY KEY,
            version BIGINT NOT NULL,
            data TEXT NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        ) WITH (fillfactor = 70)""",
    ),
)

_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)
_CONNECT_ERRORS: tuple[type[BaseException], ...] = (*_DRIVER_ERRORS, ValueError)  # bad DSN
_LOST: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError
    asyncpg.AdminShutdownError,  # pg_terminate_backend, fast shutdown
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,  # server starting up or shutting down
    # The protocol state machine broke: seen when the server terminates a session that
    # sits idle in the pool (asyncpg #1069). The connection is unusable either way.
    asyncpg.InternalClientError,
    OSError,
)


_CLOSE_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *_DRIVER_ERRORS)


def _unique_violation(exc: BaseException) -> str | None:
    if isinstance(exc, asyncpg.UniqueViolationError):
        return str(getattr(exc, "constraint_name", None) or "")
    return None


def _connection_lost(exc: BaseException) -> bool:
    return isinstance(exc, _LOST) or (
        isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)
    )


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, asyncpg.SerializationError | asyncpg.DeadlockDetectedError)


def _unreachable(exc: BaseException) -> bool:
    """Whether a failure to get a connection is the server's passing state (down,
    restarting, full), not a configuration error (bad password, unknown database)."""
    return _connection_lost(exc) or isinstance(exc, asyncpg.TooManyConnectionsError)


def _missing_table(exc: BaseException) -> bool:
    return isinstance(exc, asyncpg.UndefinedTableError | asyncpg.InvalidSchemaNameError)


def _identity(value: Any) -> Any:
    return value  # asyncpg maps aware datetimes to timestamptz and back (as UTC)


POSTGRES = Dialect(
    name="postgres",
    paramstyle="numeric",
    dt_to_db=_identity,
    dt_from_db=_identity,
    migrations=MIGRATIONS,
    unique_violation=_unique_violation,
    connection_lost=_connection_lost,
    transient=_transient,
    missing_table=_missing_table,
    bool_to_db=bool,
    row_values=True,
    update_returning=True,
    lock_clause=" FOR UPDATE SKIP LOCKED",
    array_params=True,
    text_nul=False,
    tiebreak="run_id",
    stale_order="created_at, run_id",
)


def _status_count(status: str) -> int:
    # "UPDATE 3" / "INSERT 0 1" -> the row count at the end.
    tail = status.rpartition(" ")[2]
    return int(tail) if tail.isdigit() else 0


class _PgConn:
    """:class:`~pyworkflow.storage._sql.Conn` over an asyncpg pool or connection."""

    __slots__ = ("_c",)

    def __init__(self, target: Any) -> None:
        self._c = target

    async def fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
        rows: Sequence[Sequence[Any]] = await self._c.fetch(sql, *params)
        return rows

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        return _status_count(await self._c.execute(sql, *params))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._c.executemany(sql, rows)


async def _keep_session(connection: Any) -> None:  # noqa: ARG001 - asyncpg's reset hook
    """Pool reset hook: nothing to undo, since this backend never changes session state
    (no SET, LISTEN, cursors or session-level locks); asyncpg still rolls back an open
    transaction. Replacing the default reset saves one round trip per call."""


def _discard(connection: Any) -> None:
    """Close a connection whose session died, so the pool never hands it out again (a
    session the server terminated can look open but be unusable: asyncpg #1069)."""
    # Already closed and detached from the pool when asyncpg noticed the loss itself.
    with contextlib.suppress(asyncpg.InterfaceError):
        if not connection.is_closed():
            connection.terminate()


def _event_arrays(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Event rows as five column arrays (sequence, event_id, type, timestamp, data)."""
    columns: list[list[Any]] = [[], [], [], [], []]
    for row in rows:
        for column, value in zip(columns, row[1:], strict=True):
            column.append(value)
    return columns


class PostgresStorageBackend(RetryingPool, SQLRetentionBackend):
    """Runs and events in PostgreSQL tables of one schema, shared by any number of
    processes.

    Args:
        dsn: a ``postgresql://`` URL for asyncpg (without this backend's own options;
            use :meth:`from_url` for a URL that has them).
        host, port, user, password, database: connection parameters (override ``dsn``).
        schema: the schema holding the tables, created on first connect if missing.
        min_size, max_size: bounds of the connection pool.
        application_name: shown in ``pg_stat_activity``.
        statement_cache_size: prepared statements asyncpg caches per connection.
        connect_timeout: seconds to open one connection.
        call_timeout: seconds one attempt of a storage call may take (waiting for a
            pooled connection included).

    The pool opens on first use and belongs to the event loop that opened it; a backend
    used from a new loop opens a new pool.
    """

    capabilities = frozenset({"persistent", "cross_process"})
    # create_run and append_events are single statements: no BEGIN/COMMIT round trips.
    _create_mode = WRITE
    _append_mode = WRITE

    def __init__(
        self,
        dsn: str | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        user: str | None = None,
        password: str | None = None,
        database: str | None = None,
        schema: str = "public",
        min_size: int = 1,
        max_size: int = 10,
        application_name: str = "pyworkflow",
        statement_cache_size: int = 100,
        connect_timeout: float = CONNECT_TIMEOUT,
        call_timeout: float = CALL_TIMEOUT,
    ) -> None:
        if not isinstance(schema, str) or not _IDENTIFIER.fullmatch(schema):
            raise ConfigurationError(
                f"invalid PostgreSQL schema name {schema!r}: use letters, digits and "
                "underscores (not starting with a digit), at most 63 characters"
            )
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ConfigurationError(
                f"invalid pool size min_size={min_size}, max_size={max_size}: need "
                "0 <= min_size <= max_size and max_size >= 1"
            )
        parts = split_url(dsn, name="PostgreSQL") if dsn else None
        self.host = host or (parts.hostname if parts else None) or "localhost"
        self.port = port or (parts.port if parts else None) or 5432
        self.user = user or (unquote(parts.username) if parts and parts.username else None)
        self.database = database or (unquote(parts.path.lstrip("/")) if parts else None) or None
        self.schema = schema
        self.min_size, self.max_size = min_size, max_size
        self.application_name = application_name
        self.statement_cache_size = statement_cache_size
        self.connect_timeout, self.call_timeout = connect_timeout, call_timeout
        self._dsn = dsn
        self._connect_kwargs: dict[str, Any] = {
            name: value
            for name, value in (
                ("host", host),
                ("port", port),
                ("user", user),
                ("password", password),
                ("database", database),
            )
            if value is not None
        }
        self.sql = Statements(POSTGRES, prefix=f'"{schema}".')
        self._append_sql: dict[tuple[str, ...], str] = {}
        self._create_sql = self._build_create_sql()

    @classmethod
    def from_url(cls, url: str) -> PostgresStorageBackend:
        """Build from ``postgresql://user:password@host:port/database?schema=...``.

        Raises:
            ConfigurationError: not a PostgreSQL URL, or a bad option value (the message
                never contains the password).
        """
        parsed = parse_url(
            url,
            name="PostgreSQL",
            schemes=("postgresql", "postgres"),
            options=URL_OPTIONS,
            passthrough=None,  # asyncpg's own options (sslmode, ...)
        )
        return cls(
            parsed.driver_url("postgresql"),
            schema=parsed.options.get("schema") or "public",
            min_size=parsed.count("min_size", 1),
            max_size=parsed.count("max_size", 10),
            application_name=parsed.options.get("application_name") or "pyworkflow",
            statement_cache_size=parsed.count("statement_cache_size", 100),
            connect_timeout=parsed.seconds("connect_timeout", CONNECT_TIMEOUT),
            call_timeout=parsed.seconds("call_timeout", CALL_TIMEOUT),
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(host={self.host!r}, port={self.port!r}, "
            f"database={self.database!r}, user={self.user!r}, schema={self.schema!r})"
        )

    @property
    def label(self) -> str:
        who = f"{self.user}@" if self.user else ""
        return f"postgres ({who}{self.host}:{self.port}/{self.database or ''} {self.schema})"

    # -- connection management ----------------------------------------------------------

    async def _open_pool(self) -> Any:
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self.min_size,
                max_size=self.max_size,
                reset=_keep_session,
                statement_cache_size=self.statement_cache_size,
                server_settings={"application_name": self.application_name},
                timeout=self.connect_timeout,
                **self._connect_kwargs,
            )
        except _CONNECT_ERRORS as exc:
            raise self._cannot_connect(exc) from exc
        try:
            await self._migrate(pool)
        except BaseException as exc:
            pool.terminate()
            if isinstance(exc, _DRIVER_ERRORS):
                raise self._driver_error(exc) from exc
            raise
        return pool

    async def _migrate(self, pool: Any) -> None:
        """Create or upgrade the schema; one read when it is current."""
        async with pool.acquire() as connection:
            conn = _PgConn(connection)
            if await read_schema_version(conn, self.sql) == len(self.sql.migrations):
                return
            async with connection.transaction():
                # DDL is transactional here: the advisory lock makes concurrent first
                # connects migrate one after the other (and CREATE SCHEMA race-free).
                await connection.execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1))", f"pyworkflow:{self.schema}"
                )
                exists = await connection.fetchval(
                    "SELECT 1 FROM pg_namespace WHERE nspname = $1", self.schema
                )
                if not exists:
                    # self.schema matched _IDENTIFIER in __init__.
                    await connection.execute(f'CREATE SCHEMA "{self.schema}"')
                await apply_migrations(conn, self.sql)

    async def close(self) -> None:
        pool, loop = self._pool, self._pool_loop
        if pool is None:
            return
        self._pool = self._pool_loop = None
        if loop is not asyncio.get_running_loop():
            with contextlib.suppress(Exception):
                pool.terminate()
            return
        try:
            await asyncio.wait_for(pool.close(), timeout=10)
        except _CLOSE_ERRORS:
            pool.terminate()

    # -- hooks of RetryingPool -------------------------------------------------------------

    _unreachable = staticmethod(_unreachable)
    _driver_errors = _DRIVER_ERRORS

    async def _run(self, connection: Any, mode: Mode, fn: Callable[[Conn], Awaitable[T]]) -> T:
        if mode != TX:
            return await fn(_PgConn(connection))
        async with connection.transaction():
            return await fn(_PgConn(connection))

    def _drop(self, connection: Any) -> None:
        # Also spares asyncpg waiting on the server to cancel a statement on release.
        _discard(connection)

    async def _expire(self, pool: Any) -> None:
        await pool.expire_connections()

    # -- single-statement writes ------------------------------------------------------------

    def _build_create_sql(self) -> str:
        sql = self.sql
        return sql.convert(
            f"WITH r AS (INSERT INTO {sql.runs} ({', '.join(RUN_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(RUN_COLUMNS))})), "
            f"t AS (INSERT INTO {sql.tags} (run_id, tag, created_at) "
            "SELECT ?::text, u.tag, ?::timestamptz FROM unnest(?::text[]) AS u(tag)), "
            f"e AS (INSERT INTO {sql.events} ({', '.join(EVENT_COLUMNS)}) "
            "SELECT ?::text, u.* FROM unnest(?::bigint[], ?::text[], ?::text[], "
            "?::timestamptz[], ?::text[]) AS u) "
            "SELECT 1"
        )

    async def _insert_run(self, plan: CreatePlan, conn: Conn) -> None:
        run = plan.run
        await conn.execute(
            self._create_sql,
            (
                *plan.run_row,
                run.run_id,
                run.created_at,
                [row[1] for row in plan.tag_rows],
                run.run_id,
                *_event_arrays(plan.event_rows),
            ),
        )

    def _append_statement(self, columns: tuple[str, ...]) -> str:
        sql = self._append_sql.get(columns)
        if sql is None:
            # The event insert runs only if the fenced update matched: both commit or
            # neither does, in one round trip.
            sql = self._append_sql[columns] = self.sql.convert(
                f"WITH upd AS ({self.sql.update_template(columns)} RETURNING 1), "
                f"ins AS (INSERT INTO {self.sql.events} ({', '.join(EVENT_COLUMNS)}) "
                "SELECT ?::text, u.* FROM unnest(?::bigint[], ?::text[], ?::text[], "
                "?::timestamptz[], ?::text[]) AS u WHERE EXISTS (SELECT 1 FROM upd)) "
                "SELECT count(*) FROM upd"
            )
        return sql

    async def _append(self, plan: AppendPlan, conn: Conn) -> None:
        params = (*plan.update_params, plan.run_id, *_event_arrays(plan.event_rows))
        rows = await conn.fetch(self._append_statement(plan.columns), params)
        if rows[0][0] != 1:
            raise await self._rejected(conn, plan)


__all__ = ["MIGRATIONS", "POSTGRES", "URL_OPTIONS", "PostgresStorageBackend"]
