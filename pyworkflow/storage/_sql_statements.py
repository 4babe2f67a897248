"""The statements of the shared SQL storage, and the row <-> record codecs.

:class:`Statements` builds, once per dialect and table prefix, every statement the
:class:`~pyworkflow.storage._sql.SQLStorageBackend` methods run (from fixed column
tuples; values are always bound as parameters), plus the per-call ones (fenced projection
updates, ``IN`` lists, :meth:`list_runs` queries), and converts
:class:`WorkflowRun`/:class:`Event` values to bound values and rows back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from pyworkflow.storage._sql_dialect import (
    LIKE_ESCAPE,
    Dialect,
    convert_placeholders,
    dumps,
    from_micros,
    like_prefix,
    prefix_successor,
)
from pyworkflow.storage.base import RunQuery, parse_cursor
from pyworkflow.storage.payloads import (
    PayloadLimit,
    check_changes,
    check_run,
    effective_limit,
    event_json,
)
from pyworkflow.storage.schemas import (
    TERMINAL_STATUSES,
    UPDATABLE_RUN_FIELDS,
    Event,
    RunStatus,
    RunUpdate,
    WorkflowRun,
)

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
    "queue",
    "trace_context",
)
EVENT_COLUMNS = ("run_id", "sequence", "event_id", "type", "timestamp", "data")
DATETIME_COLUMNS = frozenset(f.name for f in fields(WorkflowRun) if "datetime" in str(f.type))

# Status values the timer, lease and recovery statements bind.
TERMINAL_VALUES = tuple(s.value for s in TERMINAL_STATUSES)
STALE_CANDIDATE_VALUES = tuple(
    s.value for s in RunStatus if s not in TERMINAL_STATUSES and s != RunStatus.SUSPENDED
)
SUSPENDED_VALUE = RunStatus.SUSPENDED.value
_STATUSES: dict[str, RunStatus] = {s.value: s for s in RunStatus}
# Bound variables per statement stay well below every server's limit.
IN_CHUNK = 500


def _identity(value: Any) -> Any:
    return value


def _status_to_db(value: Any) -> str:
    return RunStatus(value).value


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


def _workflow_names_sql(dialect: str, runs: str) -> str:
    """The distinct workflow names, sorted, at most ``?`` of them, read from the
    ``(workflow_name, created_at, run_id)`` index one probe per name.

    MySQL/MariaDB do that loose index scan for ``DISTINCT`` by themselves; PostgreSQL
    and SQLite would read the whole index, so they walk it with a recursive query that
    jumps to the next name each step.
    """
    if dialect == "mysql":
        return f"SELECT DISTINCT workflow_name FROM {runs} ORDER BY workflow_name LIMIT ?"
    return (
        f"WITH RECURSIVE names(name, n) AS ("
        f"SELECT MIN(workflow_name), 1 FROM {runs} "
        f"UNION ALL SELECT (SELECT MIN(workflow_name) FROM {runs} "
        f"WHERE workflow_name > names.name), n + 1 FROM names "
        f"WHERE names.name IS NOT NULL AND n < ?"
        f") SELECT name FROM names WHERE name IS NOT NULL ORDER BY name"
    )


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
        self._query_cache: dict[tuple[int | None, ...], str] = {}
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
        # The earliest ``limit`` due runs, counted per workflow (a derived table: MySQL
        # refuses LIMIT in an IN subquery, not in a FROM one).
        self.count_due = c(
            f"SELECT workflow_name, COUNT(*) FROM (SELECT workflow_name FROM {runs} "
            f"WHERE {self.due_condition} ORDER BY wake_at LIMIT ?) due GROUP BY workflow_name"
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
        self.workflow_names = c(_workflow_names_sql(d.name, runs))
        self.list_stale = c(
            f"{self.select_run} WHERE status IN ({_marks(len(STALE_CANDIDATE_VALUES))}) "
            f"AND (lease_expires_at IS NULL OR lease_expires_at < ?) "
            f"ORDER BY {d.stale_order} LIMIT ?"
        )
        self.acquire_lease = c(
            f"UPDATE {runs} SET lease_owner = ?, lease_expires_at = ? "
            f"WHERE run_id = ? AND status NOT IN ({_marks(len(TERMINAL_VALUES))}) "
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

    def get_runs(self, count: int) -> str:
        return self.in_list(f"{self.select_run} WHERE run_id", count)

    def claim_update(self, count: int) -> str:
        return self.in_list(
            f"UPDATE {self.runs} SET lease_owner = ?, lease_expires_at = ? WHERE run_id", count
        )

    def renew(self, count: int) -> str:
        return self.in_list(
            f"UPDATE {self.runs} SET lease_expires_at = ? WHERE lease_owner = ? AND run_id", count
        )

    def query(self, query: RunQuery, *, walk: bool = False) -> tuple[str, list[Any]]:
        """The :meth:`StorageBackend.query_runs` statement and its parameters.

        Newest first, ties by ``run_id``; with a tag filter the rows come from the
        ``run_tags`` index (which carries ``created_at``), otherwise from a ``runs`` index.
        ``cancel_requested`` with a status reads ``runs_cancel_status_created_at``.
        ``run_id_prefix`` is a key range on ``run_id`` (see :attr:`Dialect.prefix_like`):
        the planner reads the matching ids from the primary key and sorts them when the
        prefix is selective, or walks the ``created_at`` order and filters when it is not.
        ``walk`` takes the second plan whatever the planner thinks (see
        :attr:`Dialect.prefix_probe`).
        """
        dt = self.dialect.dt_to_db
        params: list[Any] = []
        if query.tag is not None:
            params.append(query.tag)
        if query.status is not None:
            params.append(_status_to_db(query.status))
        if query.cancel_requested is not None and self.dialect.cancel_flag is not None:
            params.append(self.dialect.bool_to_db(query.cancel_requested))
        for value in (query.workflow_name, query.parent_run_id):
            if value is not None:
                params.append(value)
        for moment in (query.created_after, query.created_before):
            if moment is not None:
                params.append(dt(moment))
        prefix = self._prefix_params(query.run_id_prefix)
        params.extend(prefix)
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
            query.cancel_requested,
            query.workflow_name is not None,
            query.parent_run_id is not None,
            query.created_after is not None,
            query.created_before is not None,
            len(prefix),
            walk and bool(prefix) and self.dialect.prefix_probe > 0,
            query.cursor is not None,
        )
        sql = self._query_cache.get(shape)
        if sql is None:
            sql = self._query_cache[shape] = self.convert(self._query_template(*shape))
        return sql, params

    def _query_template(
        self,
        tag: bool | None,
        status: bool | None,
        cancel: bool | None,
        name: bool | None,
        parent: bool | None,
        after: bool | None,
        before: bool | None,
        prefix: int,
        walk: bool,
        cursor: bool | None,
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
                (cancel is not None, self._cancel_clause(cancel)),
                (name, "r.workflow_name = ?"),
                (parent, "r.parent_run_id = ?"),
                (after, f"{k}.created_at >= ?"),
                (before, f"{k}.created_at < ?"),
                (prefix, self._prefix_clause(k, prefix, walk)),
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

    def unmatchable(self, query: RunQuery) -> bool:
        """Whether a text filter of ``query`` holds a character the server cannot store
        (a lone surrogate; NUL on PostgreSQL): no stored run matches it, and binding it
        would fail."""
        values = (query.workflow_name, query.tag, query.parent_run_id, query.run_id_prefix)
        return any(value is not None and not self.dialect.storable(value) for value in values)

    def _prefix_params(self, prefix: str | None) -> tuple[str, ...]:
        """The bound values of the ``run_id_prefix`` filter (none for no filter or ``""``,
        which every id starts with)."""
        if not prefix:
            return ()
        if self.dialect.prefix_like:
            return (like_prefix(prefix), LIKE_ESCAPE)
        upper = prefix_successor(prefix)
        return (prefix,) if upper is None else (prefix, upper)

    def _prefix_clause(self, table: str, bounds: int, walk: bool) -> str:
        if self.dialect.prefix_like:
            return f"CAST({table}.run_id AS BINARY) LIKE ? ESCAPE ?"
        # SQLite's unary + (a no-op on text) hides the column from the planner.
        column = f"{'+' if walk else ''}{table}.run_id"
        upper = f" AND {column} < ?" if bounds == 2 else ""
        return f"{column} >= ?{upper}"

    def prefix_probe(self, prefix: str) -> tuple[str, list[Any]] | None:
        """How many ids start with ``prefix``, counted from the primary key up to
        :attr:`Dialect.prefix_probe` (``None`` when the dialect does not probe)."""
        limit = self.dialect.prefix_probe
        if not limit or not prefix or self.dialect.prefix_like:
            return None
        bounds = self._prefix_params(prefix)
        where = "run_id >= ?" + (" AND run_id < ?" if len(bounds) == 2 else "")
        sql = f"SELECT COUNT(*) FROM (SELECT 1 FROM {self.runs} WHERE {where} LIMIT ?)"
        return self.convert(sql), [*bounds, limit]

    def _cancel_clause(self, cancel: bool | None) -> str:
        """The ``cancel_requested`` filter: an equality on the dialect's generated flag
        column (bound value), else a NULL test that a partial index matches."""
        flag = self.dialect.cancel_flag
        if flag is not None:
            return f"r.{flag} = ?"
        return f"r.cancel_requested_at IS {'NOT ' if cancel else ''}NULL"

    # -- values ----------------------------------------------------------------------------

    def run_row(self, run: WorkflowRun) -> tuple[Any, ...]:
        return tuple(write(getattr(run, name)) for name, write in self.writers.items())

    def event_rows(
        self, run_id: str, events: Sequence[Event], limit: PayloadLimit | None = None
    ) -> list[tuple[Any, ...]]:
        """Event rows; each event's data is strict JSON within ``limit`` (default: the
        configured ``max_payload_bytes``), else nothing is written."""
        dt, size = self.dialect.dt_to_db, limit or effective_limit(None)
        return [
            (
                run_id,
                e.sequence,
                e.event_id,
                e.type.value,
                dt(e.timestamp),
                event_json(run_id, e, size),
            )
            for e in events
        ]

    def create_plan(
        self, run: WorkflowRun, events: Sequence[Event], limit: PayloadLimit | None = None
    ) -> CreatePlan:
        size = limit or effective_limit(None)
        check_run(run, size)
        created = self.dialect.dt_to_db(run.created_at)
        return CreatePlan(
            run=run,
            run_row=self.run_row(run),
            tag_rows=[(run.run_id, tag, created) for tag in dict.fromkeys(run.tags)],
            event_rows=self.event_rows(run.run_id, events, size),
        )

    def append_plan(
        self,
        run_id: str,
        events: Sequence[Event],
        expected: int,
        update: RunUpdate | None,
        limit: PayloadLimit | None = None,
    ) -> AppendPlan:
        size = limit or effective_limit(None)
        columns: tuple[str, ...] = ()
        values: list[Any] = []
        if update is not None and update.changes:
            changes = update.changes
            check_changes(run_id, changes, size)
            columns = self._columns_of(tuple(changes))
            writers = self.writers
            values = [writers[name](changes[name]) for name in columns]
        return AppendPlan(
            run_id=run_id,
            expected=expected,
            last=events[-1].sequence if events else expected,
            columns=columns,
            values=values,
            event_rows=self.event_rows(run_id, events, size),
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
        """Events of ``(sequence, event_id, type, timestamp, data)`` rows (raises
        ``HistoryCorruptedError`` for a row that does not decode)."""
        from_stored, dt = Event.from_stored, self.dialect.dt_from_db
        return [
            from_stored(run_id, sequence, event_id, type_, timestamp, data, dt)
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
            queue=row[28],
            trace_context=row[29],
        )

    return read


__all__ = [
    "DATETIME_COLUMNS",
    "EVENT_COLUMNS",
    "IN_CHUNK",
    "RUN_COLUMNS",
    "STALE_CANDIDATE_VALUES",
    "SUSPENDED_VALUE",
    "TERMINAL_VALUES",
    "AppendPlan",
    "CreatePlan",
    "Statements",
]
