"""The schedule half of the storage contract on the SQL backends. Shared by SQLite,
PostgreSQL and MySQL/MariaDB like :mod:`pyworkflow.storage._sql`.

Each dialect's migrations create a ``schedules`` table with the columns of
:data:`SCHEDULE_COLUMNS`, keyed by ``schedule_id``; ``next_run_time`` is stored like the
runs' ``wake_at`` (so it orders and compares the same way), ``data`` is the record's
opaque JSON text, stored verbatim. Two indexes: ``(status, next_run_time, schedule_id)``
makes :meth:`list_due_schedules` one index range read in due order, and
``(workflow_name, schedule_id)`` serves :meth:`list_schedules` by workflow in id order.

Writes are single statements, atomic on their own:

* insert: an insert-if-absent whose row count tells whether it stored the row
  (``INSERT OR IGNORE`` on SQLite, ``ON CONFLICT (schedule_id) DO NOTHING`` on
  PostgreSQL). MySQL/MariaDB uses a plain ``INSERT`` and reads a duplicate-key error as
  "exists": its ``INSERT IGNORE`` would also turn strict-mode errors into warnings and
  silently store a truncated id.
* update: the compare-and-set ``UPDATE ... WHERE schedule_id = ? AND version = ?``; the
  matched row count (1 or 0) is the outcome. Of two writers holding one version, the
  second waits on the first's row lock, then matches nothing.

:mod:`pyworkflow.storage._sql_versioned` runs them (and decides what a lost connection
means), for gates too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from pyworkflow.storage._sql import READ, WRITE, Conn, Dialect, Statements
from pyworkflow.storage._sql_hooks import SQLHookBackend
from pyworkflow.storage._sql_versioned import save_versioned
from pyworkflow.storage.payloads import check_schedule
from pyworkflow.storage.schemas import ScheduleRecord, ScheduleStatus

# Column order of every schedule SELECT and INSERT.
SCHEDULE_COLUMNS = (
    "schedule_id",
    "workflow_name",
    "status",
    "next_run_time",
    "version",
    "data",
    "created_at",
    "updated_at",
)
# Every column but the key, in SCHEDULE_COLUMNS order: what a compare-and-set replaces.
_UPDATED = SCHEDULE_COLUMNS[1:]
_SCHEDULE_STATUSES: dict[str, ScheduleStatus] = {s.value: s for s in ScheduleStatus}
_ACTIVE = ScheduleStatus.ACTIVE.value

# Insert-if-absent per dialect: (statement head, tail). Any other dialect uses a plain
# INSERT, whose duplicate-key error save_schedule reads as "exists".
_INSERT_IF_ABSENT: dict[str, tuple[str, str]] = {
    "sqlite": ("INSERT OR IGNORE INTO", ""),
    "postgres": ("INSERT INTO", " ON CONFLICT (schedule_id) DO NOTHING"),
}


class ScheduleStatements:
    """The schedule statements for one :class:`~pyworkflow.storage._sql.Statements`."""

    def __init__(self, sql: Statements) -> None:
        c = self._convert = sql.convert
        schedules = self.schedules = f"{sql.prefix}schedules"
        self.dialect: Dialect = sql.dialect
        columns = ", ".join(SCHEDULE_COLUMNS)
        self.select = f"SELECT {columns} FROM {schedules}"
        head, tail = _INSERT_IF_ABSENT.get(sql.dialect.name, ("INSERT INTO", ""))
        self.insert = c(
            f"{head} {schedules} ({columns}) "
            f"VALUES ({', '.join('?' * len(SCHEDULE_COLUMNS))}){tail}"
        )
        # Compare-and-set: only the row still at the expected version changes.
        sets = ", ".join(f"{name} = ?" for name in _UPDATED)
        self.update = c(f"UPDATE {schedules} SET {sets} WHERE schedule_id = ? AND version = ?")
        self.get = c(f"{self.select} WHERE schedule_id = ?")
        self.delete = c(f"DELETE FROM {schedules} WHERE schedule_id = ?")
        self.due = c(
            f"{self.select} WHERE status = ? AND next_run_time <= ? "
            "ORDER BY next_run_time, schedule_id LIMIT ?"
        )
        self._list: dict[tuple[bool, bool], str] = {}
        self.row_to_schedule = _schedule_reader(sql.dialect.dt_from_db)

    def list(self, workflow_name: bool, status: bool) -> str:
        sql = self._list.get((workflow_name, status))
        if sql is None:
            where = [
                clause
                for wanted, clause in (
                    (workflow_name, "workflow_name = ?"),
                    (status, "status = ?"),
                )
                if wanted
            ]
            filters = f" WHERE {' AND '.join(where)}" if where else ""
            sql = self._list[(workflow_name, status)] = self._convert(
                f"{self.select}{filters} ORDER BY schedule_id LIMIT ?"
            )
        return sql

    def schedule_row(self, schedule: ScheduleRecord, version: int) -> tuple[Any, ...]:
        """The record's values in :data:`SCHEDULE_COLUMNS` order, with ``version``."""
        dt = self.dialect.dt_to_db
        return (
            schedule.schedule_id,
            schedule.workflow_name,
            ScheduleStatus(schedule.status).value,
            None if schedule.next_run_time is None else dt(schedule.next_run_time),
            version,
            schedule.data,
            dt(schedule.created_at),
            dt(schedule.updated_at),
        )

    def insert_params(self, schedule: ScheduleRecord, version: int) -> tuple[Any, ...]:
        """The insert's values: :meth:`schedule_row`."""
        return self.schedule_row(schedule, version)

    def update_params(
        self, schedule: ScheduleRecord, version: int, expected_version: int
    ) -> tuple[Any, ...]:
        """The compare-and-set's values: the new ones (every column but the key), then the
        key and the version the stored row must still have."""
        row = self.schedule_row(schedule, version)
        return (*row[1:], row[0], expected_version)


def _schedule_reader(dt: Callable[[Any], datetime]) -> Callable[[Sequence[Any]], ScheduleRecord]:
    def read(row: Sequence[Any]) -> ScheduleRecord:
        return ScheduleRecord(
            schedule_id=row[0],
            workflow_name=row[1],
            status=_SCHEDULE_STATUSES[row[2]],
            next_run_time=None if row[3] is None else dt(row[3]),
            version=int(row[4]),
            data=row[5],
            created_at=dt(row[6]),
            updated_at=dt(row[7]),
        )

    return read


async def _execute(sql: str, params: Sequence[Any], conn: Conn) -> int:
    return await conn.execute(sql, params)


class SQLScheduleBackend(SQLHookBackend):
    """:class:`~pyworkflow.storage._sql_hooks.SQLHookBackend` plus schedules.

    Connection loss: reads and deletes are retried once (a retried delete whose first
    attempt had landed answers ``False``; the schedule is gone either way). A save is
    :func:`~pyworkflow.storage._sql_versioned.save_versioned`: retried once too, and if
    the retry is refused it counts as done only when the stored schedule is exactly the
    one it wrote (its own first attempt landed).
    """

    _schedule_sql: ScheduleStatements | None = None

    @property
    def schedule_sql(self) -> ScheduleStatements:
        # Rebuilt when the backend rebuilds its statements (MySQL does on connect).
        schedule_sql = self._schedule_sql
        if schedule_sql is None or schedule_sql.dialect is not self.sql.dialect:
            schedule_sql = self._schedule_sql = ScheduleStatements(self.sql)
        return schedule_sql

    async def save_schedule(
        self, schedule: ScheduleRecord, *, expected_version: int | None
    ) -> bool:
        check_schedule(schedule, self.payload_limit)
        load = partial(self.get_schedule, schedule.schedule_id)
        return await save_versioned(
            self, lambda: self.schedule_sql, schedule, expected_version, load
        )

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        sql = self.schedule_sql

        async def fetch(conn: Conn) -> ScheduleRecord | None:
            rows = await conn.fetch(sql.get, (schedule_id,))
            return sql.row_to_schedule(rows[0]) if rows else None

        return await self._call(READ, fetch, idempotent=True)

    async def list_schedules(
        self,
        *,
        workflow_name: str | None = None,
        status: ScheduleStatus | None = None,
        limit: int = 1000,
    ) -> list[ScheduleRecord]:
        if limit <= 0:
            return []
        sql = self.schedule_sql
        params: list[Any] = []
        if workflow_name is not None:
            params.append(workflow_name)
        if status is not None:
            params.append(ScheduleStatus(status).value)
        params.append(limit)
        statement = sql.list(workflow_name is not None, status is not None)

        async def fetch(conn: Conn) -> list[ScheduleRecord]:
            return [sql.row_to_schedule(row) for row in await conn.fetch(statement, params)]

        return await self._call(READ, fetch, idempotent=True)

    async def list_due_schedules(self, now: datetime, limit: int = 100) -> list[ScheduleRecord]:
        if limit <= 0:
            return []
        sql = self.schedule_sql
        params = (_ACTIVE, sql.dialect.dt_to_db(now), limit)

        async def fetch(conn: Conn) -> list[ScheduleRecord]:
            return [sql.row_to_schedule(row) for row in await conn.fetch(sql.due, params)]

        return await self._call(READ, fetch, idempotent=True)

    async def delete_schedule(self, schedule_id: str) -> bool:
        statement = self.schedule_sql.delete
        deleted = await self._call(
            WRITE, partial(_execute, statement, (schedule_id,)), idempotent=True
        )
        return deleted == 1


__all__ = ["SCHEDULE_COLUMNS", "SQLScheduleBackend", "ScheduleStatements"]
