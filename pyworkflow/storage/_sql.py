"""The SQL logic the SQLite, PostgreSQL and MySQL/MariaDB backends share.

Written once here: the column lists, row <-> :class:`WorkflowRun`/:class:`Event`
conversion, every statement the :class:`StorageBackend` methods need (built from fixed
column tuples, values always bound as parameters), the versioned-migration runner, and
:class:`SQLStorageBackend`, which implements the whole contract on top of three driver
primitives (:class:`Conn`). A backend module adds only what differs: a :class:`Dialect`
(placeholder style, datetime storage, DDL migrations, error classification, whether the
server can ``UPDATE ... RETURNING`` / ``FOR UPDATE SKIP LOCKED``), its driver adapter and
its connection management; and it may override a hook where its server can do better
(PostgreSQL appends in one statement).

Schema shared by every dialect:

* ``runs``: one column per :class:`WorkflowRun` field (``tags`` as JSON text, so the list
  round-trips in order), keyed by ``run_id``; a unique index on ``idempotency_key``; and
  ``(filter, created_at, run_id)`` indexes so each :meth:`list_runs` filter, read newest
  first, is an index range scan that stops after ``limit`` rows.
* ``run_tags(run_id, tag, created_at)``: one row per distinct tag, indexed by
  ``(tag, created_at, run_id)``, so a tag filter is an index lookup too.
* ``events(run_id, sequence, ...)``: the logs, keyed by ``(run_id, sequence)``; that key
  rejects a duplicate sequence even if a fence were bypassed.
* ``schema_version(version)``: how many of the dialect's migrations ran.

The signal half of the contract (cancellation requests, hooks and their ``hooks`` table)
lives beside this module in :mod:`pyworkflow.storage._sql_signals`, and schedules (the
``schedules`` table) in :mod:`pyworkflow.storage._sql_schedules`.
"""

from __future__ import annotations

import json
import re
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal, Protocol, TypeVar

from pyworkflow.core.exceptions import (
    RunAlreadyExistsError,
    SequenceConflictError,
    StorageError,
    WorkflowNotFoundError,
)
from pyworkflow.serialization import compact_json
from pyworkflow.storage.base import RunQuery, StorageBackend, parse_cursor
from pyworkflow.storage.schemas import (
    TERMINAL_STATUSES,
    UPDATABLE_RUN_FIELDS,
    Event,
    RunStatus,
    RunUpdate,
    WorkflowRun,
)

T = TypeVar("T")

Mode = Literal["read", "write", "tx"]
#: One or more statements that need no transaction (each is atomic on its own).
READ: Mode = "read"
WRITE: Mode = "write"
#: Several statements that must commit together.
TX: Mode = "tx"

# Column order of every run SELECT and INSERT; the row reader unpacks rows in this order.
RUN_COLUMNS = (
    "run_id",
    "workflow_name",
    "status",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "input_payload",
    "result_payload",
    "error",
    "idempotency_key",
    "max_duration",
    "deadline_at",
    "context_payload",
    "tags",
    "recovery_attempts",
    "max_recovery_attempts",
    "recover_on_worker_loss",
    "parent_run_id",
    "nesting_depth",
    "continued_from_run_id",
    "continued_to_run_id",
    "wake_at",
    "lease_owner",
    "lease_expires_at",
    "last_sequence",
    # Added after the first release: appended, as ALTER TABLE ADD COLUMN appends them.
    "cancel_requested_at",
    "cancel_reason",
)
EVENT_COLUMNS = ("run_id", "sequence", "event_id", "type", "timestamp", "data")
DATETIME_COLUMNS = frozenset(f.name for f in fields(WorkflowRun) if "datetime" in str(f.type))

_TERMINAL = tuple(s.value for s in TERMINAL_STATUSES)
_STALE_CANDIDATES = tuple(
    s.value for s in RunStatus if s not in TERMINAL_STATUSES and s != RunStatus.SUSPENDED
)
_SUSPENDED = RunStatus.SUSPENDED.value
_STATUSES: dict[str, RunStatus] = {s.value: s for s in RunStatus}
# Bound variables per statement stay well below every server's limit.
IN_CHUNK = 500

# -- conversions ---------------------------------------------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(value: datetime) -> int:
    """Exact epoch microseconds of an aware datetime (any zone maps to its instant)."""
    return (value - EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def dumps(value: Any) -> str:
    return compact_json(value)


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for error messages and logs)."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)


def _identity(value: Any) -> Any:
    return value


def _status_to_db(value: Any) -> str:
    return RunStatus(value).value


def _never(exc: BaseException) -> bool:  # noqa: ARG001 - the default classifier
    return False


# -- errors --------------------------------------------------------------------------------


class UniqueViolation(StorageError):
    """A driver's unique-constraint error, with the constraint it names (when it does)."""

    def __init__(self, message: str, constraint: str) -> None:
        super().__init__(message, constraint=constraint)
        self.constraint = constraint


class ConnectionLost(StorageError):
    """The server connection dropped during a call: whether a write landed is unknown."""


# -- dialects ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one SQL server does differently; everything else is shared.

    Attributes:
        name: label used in error messages.
        paramstyle: ``qmark`` (``?``), ``numeric`` (``$1``) or ``format`` (``%s``).
            Statements are written with ``?`` and converted once.
        dt_to_db / dt_from_db: datetime <-> stored value (never called with ``None``).
        migrations: DDL per schema version; ``{p}`` is the table prefix (schema) and
            other ``{names}`` come from ``ddl_defaults`` or the backend's ``ddl_vars``.
        ddl_defaults: values of the migrations' ``{names}`` unless the backend overrides.
        unique_violation: the constraint a driver error violated, or ``None`` if the
            error is not a unique violation.
        connection_lost: whether a driver error means the connection died.
        missing_table: whether a driver error means ``schema_version`` does not exist.
        bool_to_db: how a boolean column is bound.
        row_values: the planner turns ``(a, b) < (?, ?)`` into an index range (else the
            cursor condition is spelled out with ``OR``).
        update_returning: ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING``
            works, so a due-run claim is one statement.
        lock_clause: appended to the claim's row selection (``FOR UPDATE SKIP LOCKED``).
        array_params: a list binds as an array (``= ANY(?)``) instead of ``IN (...)``.
        tiebreak: orders due runs with equal ``wake_at``.
        stale_order: orders :meth:`list_stale_runs`.
    """

    name: str
    paramstyle: Literal["qmark", "numeric", "format"]
    dt_to_db: Callable[[datetime], Any]
    dt_from_db: Callable[[Any], datetime]
    migrations: tuple[tuple[str, ...], ...]
    unique_violation: Callable[[BaseException], str | None]
    connection_lost: Callable[[BaseException], bool] = _never
    missing_table: Callable[[BaseException], bool] = _never
    bool_to_db: Callable[[bool], Any] = int
    row_values: bool = True
    update_returning: bool = True
    lock_clause: str = ""
    array_params: bool = False
    tiebreak: str = "run_id"
    stale_order: str = "created_at, run_id"
    ddl_defaults: Mapping[str, str] = field(default_factory=dict)


def convert_placeholders(sql: str, paramstyle: str) -> str:
    """Rewrite the ``?`` placeholders of ``sql`` (statements here contain no other ``?``)."""
    if paramstyle == "qmark":
        return sql
    if paramstyle == "format":
        return sql.replace("?", "%s")
    head, *rest = sql.split("?")
    return head + "".join(f"${n}{part}" for n, part in enumerate(rest, 1))


def _marks(count: int) -> str:
    return ", ".join("?" * count)


# -- statements ----------------------------------------------------------------------------


@dataclass(slots=True)
class AppendPlan:
    """One :meth:`append_events` call, converted to bound values once."""

    run_id: str
    expected: int
    last: int
    columns: tuple[str, ...]
    values: list[Any]
    event_rows: list[tuple[Any, ...]]

    @property
    def update_params(self) -> list[Any]:
        return [self.last, *self.values, self.run_id, self.expected]


@dataclass(slots=True)
class CreatePlan:
    run: WorkflowRun
    run_row: tuple[Any, ...]
    tag_rows: list[tuple[Any, ...]]
    event_rows: list[tuple[Any, ...]]


class Statements:
    """Every statement of the contract for one dialect and table prefix, built once."""

    def __init__(
        self, dialect: Dialect, prefix: str = "", ddl_vars: dict[str, str] | None = None
    ) -> None:
        self.dialect = dialect
        self.prefix = prefix
        self.runs, self.events, self.tags = f"{prefix}runs", f"{prefix}events", f"{prefix}run_tags"
        d = dialect
        dt = d.dt_to_db

        def nullable_dt(value: datetime | None) -> Any:
            return None if value is None else dt(value)

        special: dict[str, Callable[[Any], Any]] = {
            "status": _status_to_db,
            "tags": lambda tags: dumps(list(tags)),
            "recover_on_worker_loss": d.bool_to_db,
        }
        # Python value -> bound value, per column (INSERTs and RunUpdate changes).
        self.writers: dict[str, Callable[[Any], Any]] = {
            name: nullable_dt if name in DATETIME_COLUMNS else special.get(name, _identity)
            for name in RUN_COLUMNS
        }
        self.row_to_run = _run_reader(d.dt_from_db)
        self._update_cache: dict[tuple[str, ...], str] = {}
        self._column_shapes: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._query_cache: dict[tuple[bool, ...], str] = {}
        self._build({**dialect.ddl_defaults, **(ddl_vars or {})})

    def convert(self, sql: str) -> str:
        return convert_placeholders(sql, self.dialect.paramstyle)

    def _build(self, ddl_vars: dict[str, str]) -> None:
        c, runs, events, tags = self.convert, self.runs, self.events, self.tags
        d = self.dialect
        self.run_columns = ", ".join(RUN_COLUMNS)
        self.select_run = f"SELECT {self.run_columns} FROM {runs}"
        self.get_run = c(f"{self.select_run} WHERE run_id = ?")
        self.get_run_by_key = c(f"{self.select_run} WHERE idempotency_key = ?")
        self.insert_run = c(
            f"INSERT INTO {runs} ({self.run_columns}) VALUES ({_marks(len(RUN_COLUMNS))})"
        )
        self.insert_tag = c(f"INSERT INTO {tags} (run_id, tag, created_at) VALUES (?, ?, ?)")
        self.insert_event = c(
            f"INSERT INTO {events} ({', '.join(EVENT_COLUMNS)}) VALUES ({_marks(6)})"
        )
        self.last_sequence = c(f"SELECT last_sequence FROM {runs} WHERE run_id = ?")
        self.get_events = c(
            f"SELECT sequence, event_id, type, timestamp, data FROM {events} "
            "WHERE run_id = ? AND sequence > ? ORDER BY sequence"
        )
        self.event_ids = c(
            f"SELECT event_id FROM {events} WHERE run_id = ? AND sequence > ? AND sequence <= ? "
            "ORDER BY sequence"
        )
        tie = d.tiebreak
        self.due_condition = "status = ? AND wake_at <= ?"
        self.list_due = c(
            f"SELECT run_id FROM {runs} WHERE {self.due_condition} ORDER BY wake_at, {tie} LIMIT ?"
        )
        free = (
            "(lease_owner IS NULL OR lease_owner = ? OR lease_expires_at IS NULL "
            "OR lease_expires_at < ?)"
        )
        pick = (
            f"SELECT run_id, wake_at, {tie} FROM {runs} WHERE {self.due_condition} AND {free} "
            f"ORDER BY wake_at, {tie} LIMIT ?{d.lock_clause}"
        )
        self.claim_select = c(pick)
        self.claim_returning = c(
            f"UPDATE {runs} SET lease_owner = ?, lease_expires_at = ? WHERE run_id IN ("
            f"SELECT run_id FROM {runs} WHERE {self.due_condition} AND {free} "
            f"ORDER BY wake_at, {tie} LIMIT ?{d.lock_clause}) RETURNING run_id, wake_at, {tie}"
        )
        self.next_wake = c(
            f"SELECT MIN(wake_at) FROM {runs} WHERE status = ? AND wake_at IS NOT NULL"
        )
        self.list_stale = c(
            f"{self.select_run} WHERE status IN ({_marks(len(_STALE_CANDIDATES))}) "
            f"AND (lease_expires_at IS NULL OR lease_expires_at < ?) "
            f"ORDER BY {d.stale_order} LIMIT ?"
        )
        self.acquire_lease = c(
            f"UPDATE {runs} SET lease_owner = ?, lease_expires_at = ? "
            f"WHERE run_id = ? AND status NOT IN ({_marks(len(_TERMINAL))}) "
            "AND (lease_owner IS NULL OR lease_owner = ? OR lease_owner = ? "
            "OR lease_expires_at IS NULL OR lease_expires_at < ?)"
        )
        self.release_lease = c(
            f"UPDATE {runs} SET lease_owner = NULL, lease_expires_at = NULL "
            "WHERE run_id = ? AND lease_owner = ?"
        )
        self.renew_any = c(
            f"UPDATE {runs} SET lease_expires_at = ? WHERE lease_owner = ? AND run_id = ANY(?)"
        )
        # schema_version and the dialect's migrations (DDL has no bound values).
        p = self.prefix
        self.create_version = (
            f"CREATE TABLE IF NOT EXISTS {p}schema_version (version INTEGER NOT NULL)"
        )
        self.read_version = f"SELECT version FROM {p}schema_version"
        self.insert_version = f"INSERT INTO {p}schema_version (version) VALUES (0)"
        self.set_version = c(f"UPDATE {p}schema_version SET version = ?")
        self.migrations = [
            tuple(stmt.format(p=p, **ddl_vars) for stmt in migration) for migration in d.migrations
        ]

    # -- statements that depend on the call ------------------------------------------------

    def update_template(self, columns: tuple[str, ...]) -> str:
        """The fenced projection UPDATE for ``columns``, with ``?`` placeholders.

        ``columns`` only ever holds names from UPDATABLE_RUN_FIELDS (see append_plan).
        """
        sets = "".join(f", {name} = ?" for name in columns)
        return (
            f"UPDATE {self.runs} SET last_sequence = ?{sets} WHERE run_id = ? AND last_sequence = ?"
        )

    def update(self, columns: tuple[str, ...]) -> str:
        sql = self._update_cache.get(columns)
        if sql is None:
            sql = self._update_cache[columns] = self.convert(self.update_template(columns))
        return sql

    def in_list(self, sql_head: str, count: int) -> str:
        """``sql_head`` followed by ``IN (?, ...)`` with ``count`` placeholders."""
        return self.convert(f"{sql_head} IN ({_marks(count)})")

    def claim_update(self, count: int) -> str:
        return self.in_list(
            f"UPDATE {self.runs} SET lease_owner = ?, lease_expires_at = ? WHERE run_id", count
        )

    def renew(self, count: int) -> str:
        return self.in_list(
            f"UPDATE {self.runs} SET lease_expires_at = ? WHERE lease_owner = ? AND run_id", count
        )

    def query(self, query: RunQuery) -> tuple[str, list[Any]]:
        """The :meth:`StorageBackend.query_runs` statement and its parameters.

        Newest first, ties by ``run_id``; with a tag filter the rows come from the
        ``run_tags`` index (which carries ``created_at``), otherwise from a ``runs`` index.
        """
        dt = self.dialect.dt_to_db
        params: list[Any] = []
        if query.tag is not None:
            params.append(query.tag)
        if query.status is not None:
            params.append(_status_to_db(query.status))
        for value in (query.workflow_name, query.parent_run_id):
            if value is not None:
                params.append(value)
        for moment in (query.created_after, query.created_before):
            if moment is not None:
                params.append(dt(moment))
        if query.cursor is not None:
            micros, run_id = parse_cursor(query.cursor)
            created = dt(from_micros(micros))
            if self.dialect.row_values:
                params.extend((created, run_id))
            else:
                params.extend((created, created, created, run_id))
        params.extend((query.limit, query.offset))
        shape = (
            query.tag is not None,
            query.status is not None,
            query.workflow_name is not None,
            query.parent_run_id is not None,
            query.created_after is not None,
            query.created_before is not None,
            query.cursor is not None,
        )
        sql = self._query_cache.get(shape)
        if sql is None:
            sql = self._query_cache[shape] = self.convert(self._query_template(*shape))
        return sql, params

    def _query_template(
        self,
        tag: bool,
        status: bool,
        name: bool,
        parent: bool,
        after: bool,
        before: bool,
        cursor: bool,
    ) -> str:
        columns = ", ".join(f"r.{col}" for col in RUN_COLUMNS)
        if tag:
            source = f"{self.tags} t JOIN {self.runs} r ON r.run_id = t.run_id"
        else:
            source = f"{self.runs} r"
        k = "t" if tag else "r"  # the table whose index provides the order
        where = [
            clause
            for wanted, clause in (
                (tag, "t.tag = ?"),
                (status, "r.status = ?"),
                (name, "r.workflow_name = ?"),
                (parent, "r.parent_run_id = ?"),
                (after, f"{k}.created_at >= ?"),
                (before, f"{k}.created_at < ?"),
            )
            if wanted
        ]
        if cursor:
            if self.dialect.row_values:
                where.append(f"({k}.created_at, {k}.run_id) < (?, ?)")
            else:
                # The redundant first bound gives the range optimizer a key part to
                # seek to (it cannot use the OR alone after an equality prefix).
                where.append(
                    f"{k}.created_at <= ? AND ({k}.created_at < ? "
                    f"OR ({k}.created_at = ? AND {k}.run_id < ?))"
                )
        filters = f" WHERE {' AND '.join(where)}" if where else ""
        return (
            f"SELECT {columns} FROM {source}{filters} "
            f"ORDER BY {k}.created_at DESC, {k}.run_id DESC LIMIT ? OFFSET ?"
        )

    # -- values ----------------------------------------------------------------------------

    def run_row(self, run: WorkflowRun) -> tuple[Any, ...]:
        return tuple(write(getattr(run, name)) for name, write in self.writers.items())

    def event_rows(self, run_id: str, events: Sequence[Event]) -> list[tuple[Any, ...]]:
        dt = self.dialect.dt_to_db
        return [
            (run_id, e.sequence, e.event_id, e.type.value, dt(e.timestamp), dumps(e.data))
            for e in events
        ]

    def create_plan(self, run: WorkflowRun, events: Sequence[Event]) -> CreatePlan:
        created = self.dialect.dt_to_db(run.created_at)
        return CreatePlan(
            run=run,
            run_row=self.run_row(run),
            tag_rows=[(run.run_id, tag, created) for tag in dict.fromkeys(run.tags)],
            event_rows=self.event_rows(run.run_id, events),
        )

    def append_plan(
        self,
        run_id: str,
        events: Sequence[Event],
        expected: int,
        update: RunUpdate | None,
    ) -> AppendPlan:
        columns: tuple[str, ...] = ()
        values: list[Any] = []
        if update is not None and update.changes:
            changes = update.changes
            columns = self._columns_of(tuple(changes))
            writers = self.writers
            values = [writers[name](changes[name]) for name in columns]
        return AppendPlan(
            run_id=run_id,
            expected=expected,
            last=events[-1].sequence if events else expected,
            columns=columns,
            values=values,
            event_rows=self.event_rows(run_id, events),
        )

    def _columns_of(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        """The updatable columns named by ``keys``, in a fixed order (remembered per key
        tuple: a run's writes use a handful of shapes)."""
        columns = self._column_shapes.get(keys)
        if columns is None:
            # Column names come from the fixed tuple, never from the caller's dict keys.
            columns = tuple(name for name in UPDATABLE_RUN_FIELDS if name in keys)
            if len(columns) != len(keys):
                raise ValueError(f"RunUpdate cannot change {sorted(set(keys) - set(columns))}")
            if len(self._column_shapes) < 1024:
                self._column_shapes[keys] = columns
        return columns

    def events_from_rows(self, run_id: str, rows: Sequence[Sequence[Any]]) -> list[Event]:
        parse_type, dt, loads = Event.parse_type, self.dialect.dt_from_db, json.loads
        return [
            Event(
                run_id=run_id,
                type=parse_type(type_),
                data=loads(data),
                sequence=sequence,
                timestamp=dt(timestamp),
                event_id=event_id,
            )
            for sequence, event_id, type_, timestamp, data in rows
        ]


def _run_reader(dt: Callable[[Any], datetime]) -> Callable[[Sequence[Any]], WorkflowRun]:
    def opt(value: Any) -> datetime | None:
        return None if value is None else dt(value)

    def read(row: Sequence[Any]) -> WorkflowRun:
        return WorkflowRun(
            run_id=row[0],
            workflow_name=row[1],
            status=_STATUSES[row[2]],
            created_at=dt(row[3]),
            updated_at=dt(row[4]),
            started_at=opt(row[5]),
            completed_at=opt(row[6]),
            input_payload=row[7],
            result_payload=row[8],
            error=row[9],
            idempotency_key=row[10],
            max_duration=row[11],
            deadline_at=opt(row[12]),
            context_payload=row[13],
            tags=json.loads(row[14]),
            recovery_attempts=row[15],
            max_recovery_attempts=row[16],
            recover_on_worker_loss=bool(row[17]),
            parent_run_id=row[18],
            nesting_depth=row[19],
            continued_from_run_id=row[20],
            continued_to_run_id=row[21],
            wake_at=opt(row[22]),
            lease_owner=row[23],
            lease_expires_at=opt(row[24]),
            last_sequence=row[25],
            cancel_requested_at=opt(row[26]),
            cancel_reason=row[27],
        )

    return read


# -- driver primitives and migrations --------------------------------------------------------


class Conn(Protocol):
    """The three things the shared logic asks of a driver connection."""

    async def fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
        """Run a statement and return every row."""

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        """Run a statement; the number of rows it matched."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run a statement once per row of parameters."""


async def read_schema_version(conn: Conn, sql: Statements) -> int | None:
    """The stored schema version, or ``None`` when ``schema_version`` does not exist."""
    try:
        rows = await conn.fetch(sql.read_version, ())
    except Exception as exc:
        if sql.dialect.missing_table(exc):
            return None
        raise
    return int(rows[0][0]) if rows else None


async def apply_migrations(conn: Conn, sql: Statements) -> int:
    """Run the migrations the database lacks; return the version it is now at.

    The caller holds the dialect's migration lock (a write transaction, an advisory or
    named lock), so concurrent processes migrate one at a time and the rest see the
    result. The version is recorded after each migration: on servers whose DDL is not
    transactional a failure leaves the database at the last complete version.

    Raises:
        StorageError: the database was migrated by a newer release of this library.
    """
    await conn.execute(sql.create_version, ())
    rows = await conn.fetch(sql.read_version, ())
    current = int(rows[0][0]) if rows else 0
    if not rows:
        await conn.execute(sql.insert_version, ())
    target = len(sql.migrations)
    if current > target:
        raise StorageError(
            f"database schema version {current} is newer than this pyworkflow "
            f"supports ({target}); upgrade pyworkflow-engine"
        )
    for version in range(current + 1, target + 1):
        for statement in sql.migrations[version - 1]:
            await conn.execute(statement, ())
        await conn.execute(sql.set_version, (version,))
    return target


# -- the backend ----------------------------------------------------------------------------


class SQLStorageBackend(StorageBackend):
    """The :class:`StorageBackend` contract over :class:`Statements` and a :class:`Conn`.

    Subclasses set ``sql`` and implement :meth:`_call`. Connection loss: reads and the
    idempotent writes (lease acquire/renew/release, due-run claims: repeating them for the
    same owner gives the same outcome) are retried once on a fresh connection by
    :meth:`_call`. ``create_run`` and ``append_events`` retry once too, and when the
    retry hits a conflict they check whether the first attempt had in fact committed
    (the stored run equals the one being created / the stored events at those sequences
    carry these event ids) and report success if so, the conflict otherwise.
    """

    sql: Statements
    #: Mode of the create/append primitives (a backend that does each in a single
    #: statement uses WRITE and saves the BEGIN/COMMIT round trips).
    _create_mode: Mode = TX
    _append_mode: Mode = TX

    @property
    @abstractmethod
    def label(self) -> str:
        """Where the data lives, for error messages (never includes a password)."""

    @abstractmethod
    async def _call(
        self, mode: Mode, fn: Callable[[Conn], Awaitable[T]], *, idempotent: bool = False
    ) -> T:
        """Run ``fn`` on a connection (inside a transaction for ``TX``).

        Driver errors leave as :class:`StorageError` (see :meth:`_driver_error`);
        errors ``fn`` raises on purpose pass through. With ``idempotent``, a lost
        connection is retried once; otherwise it raises :class:`ConnectionLost`.
        """

    def _driver_error(self, exc: BaseException) -> StorageError:
        dialect = self.sql.dialect
        constraint = dialect.unique_violation(exc)
        if constraint is not None:
            return UniqueViolation(f"{self.label}: {exc}", constraint)
        if dialect.connection_lost(exc):
            return ConnectionLost(f"{self.label}: connection lost: {exc}")
        return StorageError(f"{self.label}: {exc}")

    # -- runs -----------------------------------------------------------------------------

    async def create_run(self, run: WorkflowRun, events: Sequence[Event] = ()) -> WorkflowRun:
        plan = self.sql.create_plan(run, events)
        insert = partial(self._insert_run, plan)
        try:
            try:
                await self._call(self._create_mode, insert)
            except ConnectionLost:
                try:
                    await self._call(self._create_mode, insert)
                except UniqueViolation:
                    if await self._was_created(plan):
                        return run.copy()
                    raise
        except UniqueViolation as exc:
            return await self._existing_run(run, exc)
        return run.copy()

    async def _insert_run(self, plan: CreatePlan, conn: Conn) -> None:
        sql = self.sql
        await conn.execute(sql.insert_run, plan.run_row)
        if plan.tag_rows:
            await conn.executemany(sql.insert_tag, plan.tag_rows)
        if plan.event_rows:
            await conn.executemany(sql.insert_event, plan.event_rows)

    async def _existing_run(self, run: WorkflowRun, exc: UniqueViolation) -> WorkflowRun:
        # The insert rolled back. Runs are never deleted, so what it collided with is
        # still there: the key's run wins (the idempotency contract), then the run id.
        if run.idempotency_key is not None:
            existing = await self.get_run_by_idempotency_key(run.idempotency_key)
            if existing is not None:
                return existing
        if await self.get_run(run.run_id) is not None:
            raise RunAlreadyExistsError(f"run {run.run_id!r} already exists") from None
        raise StorageError(
            f"{self.label}: cannot store run {run.run_id!r}: {exc}", constraint=exc.constraint
        ) from exc

    async def _was_created(self, plan: CreatePlan) -> bool:
        stored = await self.get_run(plan.run.run_id)
        if stored != plan.run:
            return False
        ids = [row[2] for row in plan.event_rows]
        return [e.event_id for e in await self.get_events(plan.run.run_id)] == ids

    async def _fetch_run(self, sql: str, value: str) -> WorkflowRun | None:
        async def fetch(conn: Conn) -> WorkflowRun | None:
            rows = await conn.fetch(sql, (value,))
            return self.sql.row_to_run(rows[0]) if rows else None

        return await self._call(READ, fetch, idempotent=True)

    async def get_run(self, run_id: str) -> WorkflowRun | None:
        return await self._fetch_run(self.sql.get_run, run_id)

    async def get_run_by_idempotency_key(self, key: str) -> WorkflowRun | None:
        return await self._fetch_run(self.sql.get_run_by_key, key)

    async def query_runs(self, query: RunQuery) -> list[WorkflowRun]:
        sql, params = self.sql.query(query)
        rows = await self._call(READ, partial(_fetch, sql, params), idempotent=True)
        read = self.sql.row_to_run
        return [read(row) for row in rows]

    # -- events ---------------------------------------------------------------------------

    async def append_events(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_last_sequence: int,
        update: RunUpdate | None = None,
    ) -> None:
        plan = self.sql.append_plan(run_id, events, expected_last_sequence, update)
        append = partial(self._append, plan)
        try:
            await self._call(self._append_mode, append)
        except ConnectionLost:
            try:
                await self._call(self._append_mode, append)
            except SequenceConflictError:
                if plan.event_rows and await self._was_appended(plan):
                    return
                raise

    async def _append(self, plan: AppendPlan, conn: Conn) -> None:
        # The fence: the UPDATE matches only if nobody appended since the caller read.
        matched = await conn.execute(self.sql.update(plan.columns), plan.update_params)
        if matched != 1:
            raise await self._rejected(conn, plan)
        if plan.event_rows:
            await conn.executemany(self.sql.insert_event, plan.event_rows)

    async def _rejected(self, conn: Conn, plan: AppendPlan) -> Exception:
        """Why a fenced update matched no row: the run is missing, or moved on."""
        rows = await conn.fetch(self.sql.last_sequence, (plan.run_id,))
        if not rows:
            return WorkflowNotFoundError(f"run {plan.run_id!r} not found")
        return SequenceConflictError(
            f"run {plan.run_id!r}: expected last sequence {plan.expected}, found {rows[0][0]}"
        )

    async def _was_appended(self, plan: AppendPlan) -> bool:
        params = (plan.run_id, plan.expected, plan.last)
        rows = await self._call(READ, partial(_fetch, self.sql.event_ids, params), idempotent=True)
        return [row[0] for row in rows] == [row[2] for row in plan.event_rows]

    async def get_events(self, run_id: str, *, after_sequence: int = 0) -> list[Event]:
        params = (run_id, after_sequence)
        rows = await self._call(READ, partial(_fetch, self.sql.get_events, params), idempotent=True)
        return self.sql.events_from_rows(run_id, rows)

    # -- timers and leases ----------------------------------------------------------------

    async def list_due_runs(self, now: datetime, limit: int = 100) -> list[str]:
        params = (_SUSPENDED, self.sql.dialect.dt_to_db(now), limit)
        rows = await self._call(READ, partial(_fetch, self.sql.list_due, params), idempotent=True)
        return [row[0] for row in rows]

    async def claim_due_runs(
        self, now: datetime, owner: str, expires_at: datetime, limit: int = 100
    ) -> list[str]:
        """One atomic claim: due, unleased runs are leased to ``owner`` in one statement
        (or one transaction whose selection locks the rows it picks, skipping rows
        another claimer has locked)."""
        dt = self.sql.dialect.dt_to_db
        due = [_SUSPENDED, dt(now), owner, dt(now), limit]
        lease = [owner, dt(expires_at)]

        async def claim(conn: Conn) -> Sequence[Sequence[Any]]:
            sql = self.sql  # read once connected: MySQL adapts it to the server's version
            if sql.dialect.update_returning:
                return await conn.fetch(sql.claim_returning, lease + due)
            rows = await conn.fetch(sql.claim_select, due)
            if rows:
                await conn.execute(sql.claim_update(len(rows)), lease + [r[0] for r in rows])
            return rows

        mode = WRITE if self.sql.dialect.update_returning else TX
        rows = await self._call(mode, claim, idempotent=True)
        return [row[0] for row in sorted(rows, key=lambda row: (row[1], row[2]))]

    async def next_wake_time(self) -> datetime | None:
        rows = await self._call(
            READ, partial(_fetch, self.sql.next_wake, (_SUSPENDED,)), idempotent=True
        )
        value = rows[0][0] if rows else None
        return None if value is None else self.sql.dialect.dt_from_db(value)

    async def list_stale_runs(self, now: datetime, limit: int = 100) -> list[WorkflowRun]:
        params = (*_STALE_CANDIDATES, self.sql.dialect.dt_to_db(now), limit)
        rows = await self._call(READ, partial(_fetch, self.sql.list_stale, params), idempotent=True)
        read = self.sql.row_to_run
        return [read(row) for row in rows]

    async def acquire_lease(
        self,
        run_id: str,
        owner: str,
        expires_at: datetime,
        now: datetime,
        *,
        steal_from: str | None = None,
    ) -> bool:
        # One conditional UPDATE is atomic on its own. ``lease_owner = NULL`` never
        # matches, so steal_from=None adds no condition.
        dt = self.sql.dialect.dt_to_db
        params = (owner, dt(expires_at), run_id, *_TERMINAL, owner, steal_from, dt(now))
        matched = await self._call(
            WRITE, partial(_execute, self.sql.acquire_lease, params), idempotent=True
        )
        return matched == 1

    async def renew_leases(self, run_ids: Sequence[str], owner: str, expires_at: datetime) -> None:
        ids = list(dict.fromkeys(run_ids))
        if not ids:
            return
        sql, expires = self.sql, self.sql.dialect.dt_to_db(expires_at)

        async def renew(conn: Conn) -> None:
            if sql.dialect.array_params:
                await conn.execute(sql.renew_any, (expires, owner, ids))
                return
            for start in range(0, len(ids), IN_CHUNK):
                chunk = ids[start : start + IN_CHUNK]
                await conn.execute(sql.renew(len(chunk)), (expires, owner, *chunk))

        mode = WRITE if sql.dialect.array_params or len(ids) <= IN_CHUNK else TX
        await self._call(mode, renew, idempotent=True)

    async def release_lease(self, run_id: str, owner: str) -> None:
        params = (run_id, owner)
        await self._call(WRITE, partial(_execute, self.sql.release_lease, params), idempotent=True)


async def _fetch(sql: str, params: Sequence[Any], conn: Conn) -> Sequence[Sequence[Any]]:
    return await conn.fetch(sql, params)


async def _execute(sql: str, params: Sequence[Any], conn: Conn) -> int:
    return await conn.execute(sql, params)


__all__ = [
    "DATETIME_COLUMNS",
    "EVENT_COLUMNS",
    "READ",
    "RUN_COLUMNS",
    "TX",
    "WRITE",
    "AppendPlan",
    "Conn",
    "ConnectionLost",
    "CreatePlan",
    "Dialect",
    "SQLStorageBackend",
    "Statements",
    "UniqueViolation",
    "apply_migrations",
    "convert_placeholders",
    "dumps",
    "from_micros",
    "read_schema_version",
    "redact_url",
    "to_micros",
]
