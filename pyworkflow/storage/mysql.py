"""MySQL / MariaDB storage: the server backend for shops that run MySQL.

Extra: ``pip install 'pyworkflow-engine[mysql]'`` (the ``aiomysql`` driver).
Servers: MySQL 8.0+ and MariaDB 10.6+ (older versions work, but claim due runs with a
blocking ``FOR UPDATE`` instead of ``SKIP LOCKED``).

URL: ``mysql://user:password@host:3306/database`` with optional ``?min_size=1&max_size=10``
(connection pool), ``connect_timeout=10`` (seconds to open a connection) and
``call_timeout=30`` (seconds one attempt of a storage call may take). The database must
exist; the
tables are created in it on first connect. Percent-encode special characters of the
password; it never appears in ``repr()`` or error messages.

Guarantees (the :class:`~pyworkflow.storage.base.StorageBackend` contract, across any
number of processes): InnoDB tables; every multi-statement write is one transaction.
``append_events`` runs the fenced update (``UPDATE runs ... WHERE run_id = %s AND
last_sequence = %s``) first: its row lock makes a concurrent writer wait, re-read the
committed row and match nothing (:class:`SequenceConflictError`); the event insert
follows in the same transaction. ``create_run`` relies on the unique index on
``idempotency_key`` (concurrent creates with one key store one run). ``claim_due_runs``
selects due, unleased runs ``ORDER BY wake_at LIMIT n FOR UPDATE SKIP LOCKED`` and leases
them in the same transaction. Sessions use ``READ COMMITTED`` (no gap locks, so claims
and inserts do not block each other), strict SQL mode (an over-long value is an error,
never silently truncated) and report *matched* rows (``CLIENT.FOUND_ROWS``), so a
conditional update that changes nothing still counts as a match.

Storage: ``utf8mb4`` everywhere with a binary, no-pad collation (``utf8mb4_nopad_bin``
on MariaDB, ``utf8mb4_0900_bin`` on MySQL): keys compare byte for byte like the other
backends (case- and trailing-space-sensitive). Datetimes are ``DATETIME(6)`` holding
UTC (microsecond precision, independent of the session time zone). Payloads, errors
and event data are ``LONGTEXT``; identifiers (run ids, workflow names, idempotency
keys, tags, lease owners) are ``VARCHAR(255)``. A single statement must fit the server's
``max_allowed_packet`` (MariaDB/MySQL default 16-64 MB): the backend reads it when it
connects, refuses a value over half of it (escaping can double a value) with
:class:`~pyworkflow.core.exceptions.PayloadTooLargeError` before writing anything, and
checks every statement's final size before sending it, so an oversize write never
reaches the server (where it would fail mid-packet and drop the connection).

Connection loss (server restart or crash, ``KILL``, ``wait_timeout``): a lost session
makes the pool close its idle connections; a call is retried a few times when no
connection could be had, when the server rolled it back (deadlock, lock wait timeout),
and when its connection died midway if that is safe, exactly as described for
PostgreSQL in :mod:`pyworkflow.storage.postgres` (reads, lease changes and claims:
retried; creates and appends: retried once, and a conflict on the retry is checked
against what the first attempt may have committed). Each attempt is bounded by
``call_timeout``; what still fails is a
:class:`~pyworkflow.core.exceptions.StorageUnavailableError` (unreachable, dropped,
no answer) or a :class:`~pyworkflow.core.exceptions.StorageError`.

Tuning: ``max_size`` bounds one process's concurrent storage calls; keep processes x
``max_size`` under the server's ``max_connections``. A transaction costs explicit
``BEGIN``/``COMMIT`` round trips on top of its statements (3-4 per step append).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import unquote

import aiomysql

from pyworkflow.core.exceptions import ConfigurationError, PayloadTooLargeError, StorageError
from pyworkflow.storage._sql import (
    TX,
    Conn,
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
from pyworkflow.storage.payloads import PayloadLimit
from pyworkflow.storage.urls import parse_url, split_url

T = TypeVar("T")

URL_OPTIONS = ("min_size", "max_size", "connect_timeout", "call_timeout")
#: pymysql.constants.CLIENT.FOUND_ROWS: UPDATE reports matched rows, not changed rows.
CLIENT_FOUND_ROWS = 2
_SESSION_SETUP = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
# aiomysql interpolates sql_mode into "SET sql_mode=..." as is, hence the quotes.
_SQL_MODE = "'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'"

_TABLE_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collate}"

# Schema migrations, applied in order ({collate} is picked for the server on first
# connect). Never edit a released entry: append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        f"""CREATE TABLE IF NOT EXISTS runs (
            run_id VARCHAR(255) NOT NULL PRIMARY KEY,
            workflow_name VARCHAR(255) NOT NULL,
            status VARCHAR(32) NOT NULL,
            created_at DATETIME(6) NOT NULL,
            updated_at DATETIME(6) NOT NULL,
            started_at DATETIME(6) NULL,
            completed_at DATETIME(6) NULL,
            input_payload LONGTEXT NULL,
            result_payload LONGTEXT NULL,
            error LONGTEXT NULL,
            idempotency_key VARCHAR(255) NULL,
            max_duration VARCHAR(255) NULL,
            deadline_at DATETIME(6) NULL,
            context_payload LONGTEXT NULL,
            tags LONGTEXT NOT NULL,
            recovery_attempts INT NOT NULL DEFAULT 0,
            max_recovery_attempts INT NOT NULL DEFAULT 3,
            recover_on_worker_loss BOOLEAN NOT NULL DEFAULT TRUE,
            parent_run_id VARCHAR(255) NULL,
            nesting_depth INT NOT NULL DEFAULT 0,
            continued_from_run_id VARCHAR(255) NULL,
            continued_to_run_id VARCHAR(255) NULL,
            wake_at DATETIME(6) NULL,
            lease_owner VARCHAR(255) NULL,
            lease_expires_at DATETIME(6) NULL,
            last_sequence BIGINT NOT NULL DEFAULT 0,
            cancel_requested_at DATETIME(6) NULL,
            cancel_reason LONGTEXT NULL,
            UNIQUE KEY runs_idempotency_key (idempotency_key),
            KEY runs_status_wake_at (status, wake_at, run_id),
            KEY runs_status_created_at (status, created_at, run_id),
            KEY runs_workflow_name_created_at (workflow_name, created_at, run_id),
            KEY runs_parent_created_at (parent_run_id, created_at, run_id),
            KEY runs_created_at (created_at, run_id)
        ) {_TABLE_OPTIONS}""",
        f"""CREATE TABLE IF NOT EXISTS events (
            run_id VARCHAR(255) NOT NULL,
            sequence BIGINT NOT NULL,
            event_id VARCHAR(255) NOT NULL,
            type VARCHAR(64) NOT NULL,
            timestamp DATETIME(6) NOT NULL,
            data LONGTEXT NOT NULL,
            PRIMARY KEY (run_id, sequence)
        ) {_TABLE_OPTIONS}""",
        f"""CREATE TABLE IF NOT EXISTS run_tags (
            run_id VARCHAR(255) NOT NULL,
            tag VARCHAR(255) NOT NULL,
            created_at DATETIME(6) NOT NULL,
            PRIMARY KEY (run_id, tag),
            KEY run_tags_tag_created_at (tag, created_at, run_id)
        ) {_TABLE_OPTIONS}""",
        f"""CREATE TABLE IF NOT EXISTS hooks (
            token_hash VARCHAR(255) NOT NULL PRIMARY KEY,
            run_id VARCHAR(255) NOT NULL,
            hook_id VARCHAR(255) NOT NULL,
            name VARCHAR(255) NOT NULL,
            token TEXT NOT NULL,
            status VARCHAR(32) NOT NULL,
            created_at DATETIME(6) NOT NULL,
            expires_at DATETIME(6) NULL,
            received_at DATETIME(6) NULL,
            payload LONGTEXT NULL,
            payload_schema LONGTEXT NULL,
            UNIQUE KEY hooks_run_hook (run_id, hook_id),
            KEY hooks_run_created_at (run_id, created_at, token_hash),
            KEY hooks_status_created_at (status, created_at, token_hash),
            KEY hooks_created_at (created_at, token_hash)
        ) {_TABLE_OPTIONS}""",
    ),
    # 2: schedules (next_run_time is a DATETIME(6) like wake_at); due schedules and
    # schedules of one workflow are index range reads in the order their queries return.
    (
        f"""CREATE TABLE IF NOT EXISTS schedules (
            schedule_id VARCHAR(255) NOT NULL PRIMARY KEY,
            workflow_name VARCHAR(255) NOT NULL,
            status VARCHAR(32) NOT NULL,
            next_run_time DATETIME(6) NULL,
            version BIGINT NOT NULL,
            data LONGTEXT NOT NULL,
            created_at DATETIME(6) NOT NULL,
            updated_at DATETIME(6) NOT NULL,
            KEY schedules_status_next_run_time (status, next_run_time, schedule_id),
            KEY schedules_workflow_name (workflow_name, schedule_id)
        ) {_TABLE_OPTIONS}""",
    ),
    # 3: runs asked to cancel, by status, newest first (crash recovery looks for the
    # suspended ones on every pass). No partial indexes here: a virtual 0/1 column
    # mirrors "cancel_requested_at IS NOT NULL" so the filter is an equality the index
    # seeks and orders by (MYSQL.cancel_flag). Adding a virtual column rewrites no rows.
    (
        "ALTER TABLE runs ADD COLUMN cancel_requested TINYINT "
        "AS (cancel_requested_at IS NOT NULL) VIRTUAL, "
        "ADD KEY runs_cancel_status_created_at (status, cancel_requested, created_at, run_id)",
    ),
    # 4: the worker registry, one row per worker process, replaced at every beat;
    # last_beat is indexed to find the stale ones.
    (
        f"""CREATE TABLE IF NOT EXISTS workers (
            worker_id VARCHAR(255) NOT NULL PRIMARY KEY,
            last_beat DATETIME(6) NOT NULL,
            data LONGTEXT NOT NULL,
            KEY workers_last_beat (last_beat)
        ) {_TABLE_OPTIONS}""",
    ),
    # 5: the run's broker queue (routing, ``@workflow(queue=...)``); NULL: the default.
    ("ALTER TABLE runs ADD COLUMN queue VARCHAR(255) NULL",),
    # 6: the trace context the run's spans continue (W3C, as JSON text); NULL: none.
    ("ALTER TABLE runs ADD COLUMN trace_context TEXT NULL",),
    # 7: runs' signal inboxes, read in sequence order from the key; a repeated send
    # finds its row by (run_id, signal_id).
    (
        f"""CREATE TABLE IF NOT EXISTS signals (
            run_id VARCHAR(255) NOT NULL,
            sequence BIGINT NOT NULL,
            signal_id VARCHAR(255) NOT NULL,
            name VARCHAR(255) NOT NULL,
            payload LONGTEXT NOT NULL,
            sent_at DATETIME(6) NOT NULL,
            PRIMARY KEY (run_id, sequence),
            UNIQUE KEY signals_run_signal (run_id, signal_id)
        ) {_TABLE_OPTIONS}""",
    ),
    # 8: flow-control gates, read and compare-and-set by key (exact: the table's binary
    # collation, so 'A' and 'a' are two gates).
    (
        f"""CREATE TABLE IF NOT EXISTS gates (
            gate_key VARCHAR(255) NOT NULL PRIMARY KEY,
            version BIGINT NOT NULL,
            data LONGTEXT NOT NULL,
            updated_at DATETIME(6) NOT NULL
        ) {_TABLE_OPTIONS}""",
    ),
)

_DRIVER_ERRORS: tuple[type[BaseException], ...] = (aiomysql.Error, OSError)
_CLOSE_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *_DRIVER_ERRORS)
# CR_CONN_HOST_ERROR, CR_SERVER_GONE_ERROR, CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED,
# ER_SERVER_SHUTDOWN, ER_CONNECTION_KILLED (MariaDB), ER_CLIENT_INTERACTION_TIMEOUT.
_LOST_CODES = frozenset({2003, 2006, 2013, 2055, 1053, 1927, 4031})
# ER_LOCK_WAIT_TIMEOUT, ER_LOCK_DEADLOCK: the statement (or transaction) was rolled back.
_TRANSIENT_CODES = frozenset({1205, 1213})
_TOO_MANY_CONNECTIONS = 1040
_DUPLICATE_KEY = 1062
_NO_SUCH_TABLE = 1146
_KEY_NAME = re.compile(r"for key '(?:[^'.]*\.)?([^']*)'")


def _code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _unique_violation(exc: BaseException) -> str | None:
    if isinstance(exc, aiomysql.IntegrityError) and _code(exc) == _DUPLICATE_KEY:
        # "Duplicate entry 'k' for key 'runs_idempotency_key'" (MySQL 8: 'runs.runs_...')
        match = _KEY_NAME.search(str(exc))
        return match.group(1) if match else ""
    return None


def _connection_lost(exc: BaseException) -> bool:
    if isinstance(exc, aiomysql.InterfaceError | OSError):
        return True
    return isinstance(exc, aiomysql.OperationalError) and _code(exc) in _LOST_CODES


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, aiomysql.OperationalError) and _code(exc) in _TRANSIENT_CODES


def _unreachable(exc: BaseException) -> bool:
    """Whether a failure to get a connection is the server's passing state (down,
    restarting, full), not a configuration error (bad password, unknown database)."""
    return _connection_lost(exc) or _code(exc) == _TOO_MANY_CONNECTIONS


def _missing_table(exc: BaseException) -> bool:
    return isinstance(exc, aiomysql.ProgrammingError) and _code(exc) == _NO_SUCH_TABLE


def _dt_to_db(value: datetime) -> datetime:
    # DATETIME has no zone: store the UTC wall time (pymysql would drop tzinfo as is).
    return value.astimezone(UTC).replace(tzinfo=None)


def _dt_from_db(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


MYSQL = Dialect(
    name="mysql",
    paramstyle="format",
    dt_to_db=_dt_to_db,
    dt_from_db=_dt_from_db,
    migrations=MIGRATIONS,
    unique_violation=_unique_violation,
    connection_lost=_connection_lost,
    transient=_transient,
    missing_table=_missing_table,
    bool_to_db=int,
    # Neither MySQL nor MariaDB turns (a, b) < (?, ?) into an index range: spell it out.
    row_values=False,
    # No UPDATE ... RETURNING, and no LIMIT in an IN subquery: claim in a transaction.
    update_returning=False,
    lock_clause=" FOR UPDATE SKIP LOCKED",
    tiebreak="run_id",
    stale_order="created_at, run_id",
    cancel_flag="cancel_requested",
    # Replaced by the server's binary no-pad collation on connect (see server_traits).
    ddl_defaults={"collate": "utf8mb4_bin"},
)


_RUN_ID_COLLATION = (
    "SELECT COLLATION_NAME FROM information_schema.COLUMNS "
    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = ?"
)


def pads_spaces(collation: str) -> bool:
    """Whether ``collation`` compares with PAD SPACE (``'a' = 'a '``): every collation
    but MariaDB's ``*_nopad_*``, MySQL's ``*_0900_*`` and ``binary``."""
    return not ("_nopad_" in collation or "_0900_" in collation or collation == "binary")


def server_traits(version: str) -> tuple[bool, str]:
    """``(SKIP LOCKED available, table collation)`` for a server version string."""
    mariadb = "MariaDB" in version
    if mariadb and version.startswith("5.5.5-"):
        version = version[len("5.5.5-") :]  # what MariaDB reports to old clients
    numbers = tuple(int(n) for n in re.findall(r"\d+", version.split("-")[0])[:3])
    if mariadb:
        return numbers[:2] >= (10, 6), "utf8mb4_nopad_bin"
    if numbers >= (8, 0, 17):
        return True, "utf8mb4_0900_bin"
    return numbers[:2] >= (8, 0), "utf8mb4_bin"


def packet_limits(max_allowed_packet: int) -> tuple[PayloadLimit, int]:
    """``(limit per stored value, limit per statement)`` for a server's packet size.

    A value may take twice its size once escaped into a statement, hence half the
    packet per value; a statement keeps a little room for the protocol's framing.
    """
    statement = max(max_allowed_packet - _PACKET_MARGIN, 1)
    source = f"half of the MySQL server's max_allowed_packet of {max_allowed_packet:,} bytes"
    return PayloadLimit(max(statement // 2, 1), source), statement


_PACKET_MARGIN = 1024


class _MySQLConn:
    """:class:`~pyworkflow.storage._sql.Conn` over an aiomysql connection.

    With ``max_statement``, a statement that would be larger is refused with
    :class:`PayloadTooLargeError` before it is sent: the server would drop the
    connection partway through the packet ("Packet sequence number wrong").
    """

    __slots__ = ("_c", "_max")

    def __init__(self, connection: Any, max_statement: int | None = None) -> None:
        self._c = connection
        self._max = max_statement

    async def fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
        async with self._c.cursor() as cursor:
            await self._run(cursor, sql, params)
            rows: Sequence[Sequence[Any]] = await cursor.fetchall()
            return rows

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        async with self._c.cursor() as cursor:
            return await self._run(cursor, sql, params)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self._c.cursor() as cursor:
            if self._max is not None and any(self._may_exceed(sql, row) for row in rows):
                for row in rows:  # checked one by one (rare: large values only)
                    await self._run(cursor, sql, row)
                return
            # aiomysql folds an INSERT ... VALUES over many rows into multi-row
            # statements of at most max_stmt_length bytes.
            if self._max is not None:
                cursor.max_stmt_length = min(cursor.max_stmt_length, self._max)
            await cursor.executemany(sql, rows)

    def _may_exceed(self, sql: str, params: Sequence[Any]) -> bool:
        # Escaping at most doubles a character and UTF-8 takes at most 4 bytes for one
        # (escaped characters are ASCII): 4 bytes per character is an upper bound.
        chars = sum(len(p) for p in params if isinstance(p, str | bytes))
        return self._max is not None and len(sql) + 4 * chars + 64 * len(params) > self._max

    async def _run(self, cursor: Any, sql: str, params: Sequence[Any]) -> int:
        if not self._may_exceed(sql, params):
            return int(await cursor.execute(sql, params))
        query: str = cursor.mogrify(sql, params)
        size = len(query.encode("utf-8", "surrogateescape"))
        if self._max is not None and size > self._max:
            raise PayloadTooLargeError(
                f"a MySQL statement of {size:,} bytes is over the server's limit of "
                f"{self._max:,} bytes (max_allowed_packet); nothing was written",
                field="MySQL statement",
                size=size,
                limit=self._max,
            )
        return int(await cursor.execute(query))  # already formatted: no parameters


class MySQLStorageBackend(RetryingPool, SQLRetentionBackend):
    """Runs and events in InnoDB tables of one MySQL/MariaDB database, shared by any
    number of processes.

    Args:
        url: a ``mysql://`` URL (see the module docstring); keyword arguments override
            its parts.
        host, port, user, password, database: connection parameters.
        min_size, max_size: bounds of the connection pool.
        connect_timeout: seconds to wait for a new connection.
        call_timeout: seconds one attempt of a storage call may take (waiting for a
            pooled connection included).

    The pool opens on first use and belongs to the event loop that opened it; a backend
    used from a new loop opens a new pool.
    """

    capabilities = frozenset({"persistent", "cross_process"})

    def __init__(
        self,
        url: str | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        user: str | None = None,
        password: str | None = None,
        database: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = CONNECT_TIMEOUT,
        call_timeout: float = CALL_TIMEOUT,
    ) -> None:
        parts = split_url(url, name="MySQL", schemes=("mysql",)) if url else None
        self.host = host or (parts.hostname if parts else None) or "localhost"
        self.port = port or (parts.port if parts else None) or 3306
        self.user = user or (unquote(parts.username) if parts and parts.username else None)
        self.database = database or (unquote(parts.path.lstrip("/")) if parts else "") or None
        if self.database is None:
            raise ConfigurationError(
                "MySQL storage needs a database: mysql://user:password@host:3306/database"
            )
        if password is None and parts is not None and parts.password is not None:
            password = unquote(parts.password)
        self._password = password or ""
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ConfigurationError(
                f"invalid pool size min_size={min_size}, max_size={max_size}: need "
                "0 <= min_size <= max_size and max_size >= 1"
            )
        self.min_size, self.max_size = min_size, max_size
        self.connect_timeout, self.call_timeout = connect_timeout, call_timeout
        self.sql = Statements(MYSQL)
        # Set from the server's max_allowed_packet when the pool opens.
        self._max_statement: int | None = None

    @classmethod
    def from_url(cls, url: str) -> MySQLStorageBackend:
        """Build from ``mysql://user:password@host:port/database?max_size=10``.

        Raises:
            ConfigurationError: not a MySQL URL, an unknown option or a bad value (the
                message never contains the password).
        """
        parsed = parse_url(url, name="MySQL", schemes=("mysql",), options=URL_OPTIONS)
        return cls(
            parsed.driver_url(),
            min_size=parsed.count("min_size", 1),
            max_size=parsed.count("max_size", 10),
            connect_timeout=parsed.seconds("connect_timeout", CONNECT_TIMEOUT),
            call_timeout=parsed.seconds("call_timeout", CALL_TIMEOUT),
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(host={self.host!r}, port={self.port!r}, "
            f"database={self.database!r}, user={self.user!r})"
        )

    @property
    def label(self) -> str:
        who = f"{self.user}@" if self.user else ""
        return f"mysql ({who}{self.host}:{self.port}/{self.database})"

    # -- connection management ----------------------------------------------------------

    async def _open_pool(self) -> Any:
        try:
            pool = await aiomysql.create_pool(
                minsize=self.min_size,
                maxsize=self.max_size,
                host=self.host,
                port=self.port,
                user=self.user,
                password=self._password,
                db=self.database,
                charset="utf8mb4",
                autocommit=True,
                client_flag=CLIENT_FOUND_ROWS,
                sql_mode=_SQL_MODE,
                init_command=_SESSION_SETUP,
                connect_timeout=self.connect_timeout,
            )
        except _DRIVER_ERRORS as exc:
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
        """Adapt to the server, then create or upgrade the tables."""
        async with pool.acquire() as connection:
            skip_locked, collate = server_traits(connection.get_server_info())
            lock = " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"
            dialect, ddl_vars = replace(MYSQL, lock_clause=lock), {"collate": collate}
            self.sql = Statements(dialect, ddl_vars=ddl_vars)
            conn = _MySQLConn(connection)
            (packet,), *_ = await conn.fetch("SELECT @@max_allowed_packet", ())
            self.server_payload_limit, self._max_statement = packet_limits(int(packet))
            if await read_schema_version(conn, self.sql) != len(self.sql.migrations):
                await self._apply_migrations(conn)
            # The tables may predate this server (created with a padding collation).
            rows = await conn.fetch(self.sql.convert(_RUN_ID_COLLATION), (self.sql.runs, "run_id"))
            if rows and pads_spaces(str(rows[0][0])):
                self.sql = Statements(replace(dialect, prefix_like=True), ddl_vars=ddl_vars)

    async def _apply_migrations(self, conn: _MySQLConn) -> None:
        """Create or upgrade the tables, one connecting process at a time."""
        # DDL commits implicitly here, so a named lock (not a transaction) makes
        # concurrent first connects migrate one after the other.
        name = f"pyworkflow:{self.database}"[:64]
        rows = await conn.fetch(self.sql.convert("SELECT GET_LOCK(?, ?)"), (name, 60))
        if not rows or rows[0][0] != 1:
            raise StorageError(f"{self.label}: timed out waiting for the migration lock")
        try:
            with warnings.catch_warnings():
                # CREATE TABLE IF NOT EXISTS notes an existing table as a warning.
                warnings.filterwarnings("ignore", "Table .* already exists")
                await apply_migrations(conn, self.sql)
        finally:
            await conn.fetch(self.sql.convert("SELECT RELEASE_LOCK(?)"), (name,))

    async def close(self) -> None:
        pool, loop = self._pool, self._pool_loop
        if pool is None:
            return
        self._pool = self._pool_loop = None
        if loop is not asyncio.get_running_loop():
            with contextlib.suppress(Exception):
                pool.terminate()
            return
        pool.close()
        try:
            await asyncio.wait_for(pool.wait_closed(), timeout=10)
        except _CLOSE_ERRORS:
            pool.terminate()

    # -- hooks of RetryingPool -------------------------------------------------------------

    _unreachable = staticmethod(_unreachable)
    _driver_errors = _DRIVER_ERRORS

    async def _run(self, connection: Any, mode: Mode, fn: Callable[[Conn], Awaitable[T]]) -> T:
        conn = _MySQLConn(connection, self._max_statement)
        if mode != TX:
            return await fn(conn)
        return await _in_transaction(connection, conn, fn)

    def _drop(self, connection: Any) -> None:
        connection.close()

    async def _expire(self, pool: Any) -> None:
        with contextlib.suppress(*_DRIVER_ERRORS):
            await pool.clear()


async def _in_transaction(
    connection: Any, conn: _MySQLConn, fn: Callable[[Conn], Awaitable[T]]
) -> T:
    await connection.begin()
    try:
        result = await fn(conn)
        await connection.commit()
    except asyncio.CancelledError:
        # No await here: the pool closes a connection returned mid-transaction, and the
        # server rolls back what it had.
        raise
    except BaseException:
        with contextlib.suppress(*_DRIVER_ERRORS):
            await connection.rollback()
        raise
    return result


__all__ = [
    "MIGRATIONS",
    "MYSQL",
    "URL_OPTIONS",
    "MySQLStorageBackend",
    "packet_limits",
    "pads_spaces",
    "server_traits",
]
