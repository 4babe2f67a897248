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
  first, is an index range scan that stops after ``limit`` rows; and
  ``runs_cancel_status_created_at`` for the runs asked to cancel in a status (partial,
  ``WHERE cancel_requested_at IS NOT NULL``, where the server has partial indexes, else
  over the dialect's generated ``cancel_flag`` column).
* ``run_tags(run_id, tag, created_at)``: one row per distinct tag, indexed by
  ``(tag, created_at, run_id)``, so a tag filter is an index lookup too.
* ``events(run_id, sequence, ...)``: the logs, keyed by ``(run_id, sequence)``; that key
  rejects a duplicate sequence even if a fence were bypassed.
* ``schema_version(version)``: how many of the dialect's migrations ran.

Beside them, each optional group has its table and mixin module: ``hooks``
(:mod:`~pyworkflow.storage._sql_hooks`, with cancellation requests), ``schedules``,
``workers``, ``signals(run_id, sequence, ...)``, the runs' signal inboxes
(:mod:`~pyworkflow.storage._sql_signals`: a send locks the run's row first, so sends and
the run's own writes are ordered), and ``gates(gate_key, ...)``, the flow-control gates
(:mod:`~pyworkflow.storage._sql_gates`: compare-and-set records, like schedules; both
save through :mod:`~pyworkflow.storage._sql_versioned`).

The pieces live in sibling modules, all re-exported here: the dialect hooks, driver
protocol and value conversions in :mod:`pyworkflow.storage._sql_dialect`, the statements
and row codecs in :mod:`pyworkflow.storage._sql_statements`, the migration runner in
:mod:`pyworkflow.storage._sql_migrations`. The signal half of the contract
(cancellation requests, hooks and their ``hooks`` table) lives in
:mod:`pyworkflow.storage._sql_hooks`, schedules (the ``schedules`` table) in
:mod:`pyworkflow.storage._sql_schedules`, and the worker registry (the ``workers``
table) in :mod:`pyworkflow.storage._sql_workers`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from pyworkflow.core.exceptions import (
    RunAlreadyExistsError,
    RunNotFoundError,
    SequenceConflictError,
    StorageError,
)
from pyworkflow.storage._sql_dialect import (
    READ,
    TX,
    WRITE,
    Conn,
    ConnectionLost,
    Dialect,
    Mode,
    UniqueViolation,
    convert_placeholders,
    dumps,
    from_micros,
    to_micros,
)
from pyworkflow.storage._sql_migrations import apply_migrations, read_schema_version
from pyworkflow.storage._sql_retry import TransientFailure
from pyworkflow.storage._sql_statements import (
    DATETIME_COLUMNS,
    EVENT_COLUMNS,
    IN_CHUNK,
    RUN_COLUMNS,
    STALE_CANDIDATE_VALUES,
    SUSPENDED_VALUE,
    TERMINAL_VALUES,
    AppendPlan,
    CreatePlan,
    Statements,
)
from pyworkflow.storage.base import RunQuery, StorageBackend
from pyworkflow.storage.schemas import Event, RunUpdate, WorkflowRun
from pyworkflow.storage.urls import redact_url  # re-exported for compatibility

T = TypeVar("T")


# -- the backend ----------------------------------------------------------------------------


class SQLStorageBackend(StorageBackend):
    """The :class:`StorageBackend` contract over :class:`Statements` and a :class:`Conn`.

    Subclasses set ``sql`` and implement :meth:`_call`. Connection loss: reads and the
    idempotent writes (lease acquire/renew/release, due-run claims: repeating them for the
    same owner gives the same outcome) are retried on a fresh connection by
    :meth:`_call` (the server backends: a few times, see
    :mod:`pyworkflow.storage._sql_retry`). ``create_run`` and ``append_events`` retry a
    lost connection once more, and when the
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
        connection is retried; otherwise it raises :class:`ConnectionLost`.
        """

    def _driver_error(self, exc: BaseException) -> StorageError:
        dialect = self.sql.dialect
        constraint = dialect.unique_violation(exc)
        if constraint is not None:
            return UniqueViolation(f"{self.label}: {exc}", constraint)
        if dialect.connection_lost(exc):
            return ConnectionLost(f"{self.label}: connection lost: {exc}")
        if dialect.transient(exc):
            return TransientFailure(f"{self.label}: {exc}")
        return StorageError(f"{self.label}: {exc}")

    # -- runs -----------------------------------------------------------------------------

    async def create_run(self, run: WorkflowRun, events: Sequence[Event] = ()) -> WorkflowRun:
        plan = self.sql.create_plan(run, events, self.payload_limit)
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
        # The insert rolled back. What it collided with is normally still there: the
        # key's run wins (the idempotency contract), then the run id. (Only retention
        # deletes runs, finished ones: one deleted in between ends in the StorageError
        # below, and a repeated create then succeeds.)
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
        if not self.sql.dialect.storable(value):
            return None  # binding it would fail; no stored key holds it

        async def fetch(conn: Conn) -> WorkflowRun | None:
            rows = await conn.fetch(sql, (value,))
            return self.sql.row_to_run(rows[0]) if rows else None

        return await self._call(READ, fetch, idempotent=True)

    async def get_run(self, run_id: str) -> WorkflowRun | None:
        return await self._fetch_run(self.sql.get_run, run_id)

    async def get_runs(self, run_ids: Sequence[str]) -> list[WorkflowRun]:
        # One indexed IN read per IN_CHUNK ids, not a round trip per run (the scheduler
        # reads the queue of every run it claims).
        storable = self.sql.dialect.storable
        ids = [run_id for run_id in dict.fromkeys(run_ids) if storable(run_id)]
        if not ids:
            return []

        async def fetch(conn: Conn) -> list[Sequence[Any]]:
            rows: list[Sequence[Any]] = []
            for start in range(0, len(ids), IN_CHUNK):
                chunk = ids[start : start + IN_CHUNK]
                rows += await conn.fetch(self.sql.get_runs(len(chunk)), tuple(chunk))
            return rows

        rows = await self._call(READ, fetch, idempotent=True)
        return [self.sql.row_to_run(row) for row in rows]

    async def get_run_by_idempotency_key(self, key: str) -> WorkflowRun | None:
        return await self._fetch_run(self.sql.get_run_by_key, key)

    async def query_runs(self, query: RunQuery) -> list[WorkflowRun]:
        if self.sql.unmatchable(query):
            return []

        async def fetch(conn: Conn) -> Sequence[Sequence[Any]]:
            return await conn.fetch(*await self._query_statement(query, conn))

        rows = await self._call(READ, fetch, idempotent=True)
        read = self.sql.row_to_run
        return [read(row) for row in rows]

    async def workflow_names(self, *, limit: int = 1000) -> list[str] | None:
        if limit <= 0:
            return []
        statement = self.sql.workflow_names
        rows = await self._call(READ, partial(_fetch, statement, (limit,)), idempotent=True)
        return [str(row[0]) for row in rows]

    async def _query_statement(self, query: RunQuery, conn: Conn) -> tuple[str, list[Any]]:
        """The statement and parameters :meth:`query_runs` runs for ``query`` (a prefix
        is probed first where the dialect asks for it, see ``Dialect.prefix_probe``)."""
        statements = self.sql
        probe = statements.prefix_probe(query.run_id_prefix or "")
        walk = False
        if probe is not None:
            (count,), *_ = await conn.fetch(*probe)
            walk = count >= statements.dialect.prefix_probe
        return statements.query(query, walk=walk)

    # -- events ---------------------------------------------------------------------------

    async def append_events(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_last_sequence: int,
        update: RunUpdate | None = None,
    ) -> None:
        plan = self.sql.append_plan(
            run_id, events, expected_last_sequence, update, self.payload_limit
        )
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
            return RunNotFoundError(f"run {plan.run_id!r} not found")
        return SequenceConflictError(
            f"run {plan.run_id!r}: expected last sequence {plan.expected}, found {rows[0][0]}"
        )

    async def _was_appended(self, plan: AppendPlan) -> bool:
        params = (plan.run_id, plan.expected, plan.last)
        rows = await self._call(READ, partial(_fetch, self.sql.event_ids, params), idempotent=True)
        return [row[0] for row in rows] == [row[2] for row in plan.event_rows]

    async def get_events(self, run_id: str, *, after_sequence: int = 0) -> list[Event]:
        if not self.sql.dialect.storable(run_id):
            return []
        params = (run_id, after_sequence)
        rows = await self._call(READ, partial(_fetch, self.sql.get_events, params), idempotent=True)
        return self.sql.events_from_rows(run_id, rows)

    # -- timers and leases ----------------------------------------------------------------

    async def list_due_runs(self, now: datetime, limit: int = 100) -> list[str]:
        params = (SUSPENDED_VALUE, self.sql.dialect.dt_to_db(now), limit)
        rows = await self._call(READ, partial(_fetch, self.sql.list_due, params), idempotent=True)
        return [row[0] for row in rows]

    async def count_due_runs(self, now: datetime, *, limit: int = 10_000) -> dict[str, int]:
        params = (SUSPENDED_VALUE, self.sql.dialect.dt_to_db(now), limit)
        rows = await self._call(READ, partial(_fetch, self.sql.count_due, params), idempotent=True)
        return {str(row[0]): int(row[1]) for row in rows}

    async def claim_due_runs(
        self, now: datetime, owner: str, expires_at: datetime, limit: int = 100
    ) -> list[str]:
        """One atomic claim: due, unleased runs are leased to ``owner`` in one statement
        (or one transaction whose selection locks the rows it picks, skipping rows
        another claimer has locked)."""
        dt = self.sql.dialect.dt_to_db
        due = [SUSPENDED_VALUE, dt(now), owner, dt(now), limit]
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
            READ, partial(_fetch, self.sql.next_wake, (SUSPENDED_VALUE,)), idempotent=True
        )
        value = rows[0][0] if rows else None
        return None if value is None else self.sql.dialect.dt_from_db(value)

    async def list_stale_runs(self, now: datetime, limit: int = 100) -> list[WorkflowRun]:
        params = (*STALE_CANDIDATE_VALUES, self.sql.dialect.dt_to_db(now), limit)
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
        params = (owner, dt(expires_at), run_id, *TERMINAL_VALUES, owner, steal_from, dt(now))
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
    "Mode",
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
