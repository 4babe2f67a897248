"""The worker-registry half of the storage contract on the SQL backends. Shared by
SQLite, PostgreSQL and MySQL/MariaDB like :mod:`pyworkflow.storage._sql_schedules`.

Each dialect's migrations create a ``workers`` table with the columns of
:data:`WORKER_COLUMNS`, keyed by ``worker_id`` (so :meth:`list_workers` reads the key in
order); ``last_beat`` is stored like the runs' timestamps (so it orders and compares the
same way) and indexed, because stale records are found by it; ``data`` is the record's
:meth:`~pyworkflow.storage.schemas.WorkerRecord.data_json` text, stored verbatim.

A beat is one upsert statement, atomic on its own: ``INSERT ... ON CONFLICT (worker_id)
DO UPDATE`` on SQLite and PostgreSQL, ``INSERT ... ON DUPLICATE KEY UPDATE`` on
MySQL/MariaDB, which binds the new values a second time (``VALUES(col)`` is deprecated
since MySQL 8.0.20, and MariaDB has no row alias to replace it). Writing a record again
gives the same row, so every call here is retried after a lost connection; a retried
delete whose first attempt had landed answers ``False`` (the record is gone either way).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from pyworkflow.storage._sql import READ, WRITE, Conn, Dialect, Statements
from pyworkflow.storage._sql_schedules import SQLScheduleBackend
from pyworkflow.storage.payloads import check_size
from pyworkflow.storage.schemas import WorkerRecord

# Column order of every worker SELECT and INSERT.
WORKER_COLUMNS = ("worker_id", "last_beat", "data")

# How an insert that meets an existing worker_id replaces its row, per dialect. SQLite
# and PostgreSQL read the rejected row's values (``excluded``); any other dialect (MySQL)
# binds them again. (SQLite has upserts since 3.24.)
_EXCLUDED_UPSERT = (
    " ON CONFLICT (worker_id) DO UPDATE SET last_beat = excluded.last_beat, data = excluded.data"
)
_UPSERT_TAIL: dict[str, str] = {"sqlite": _EXCLUDED_UPSERT, "postgres": _EXCLUDED_UPSERT}
_REBOUND_UPSERT = " ON DUPLICATE KEY UPDATE last_beat = ?, data = ?"


class WorkerStatements:
    """The worker statements for one :class:`~pyworkflow.storage._sql.Statements`."""

    def __init__(self, sql: Statements) -> None:
        c = sql.convert
        workers = self.workers = f"{sql.prefix}workers"
        self.dialect: Dialect = sql.dialect
        columns = ", ".join(WORKER_COLUMNS)
        tail = _UPSERT_TAIL.get(sql.dialect.name)
        #: Whether the upsert binds ``last_beat`` and ``data`` a second time.
        self.rebinds = tail is None
        self.upsert = c(
            f"INSERT INTO {workers} ({columns}) VALUES (?, ?, ?)"
            f"{_REBOUND_UPSERT if tail is None else tail}"
        )
        self.list = c(f"SELECT {columns} FROM {workers} ORDER BY worker_id LIMIT ?")
        self.list_after = c(
            f"SELECT {columns} FROM {workers} WHERE worker_id > ? ORDER BY worker_id LIMIT ?"
        )
        self.delete = c(f"DELETE FROM {workers} WHERE worker_id = ?")
        self.row_to_worker = _worker_reader(sql.dialect.dt_from_db)

    def upsert_params(self, worker: WorkerRecord) -> tuple[Any, ...]:
        """The upsert's bound values for ``worker``."""
        beat, data = self.dialect.dt_to_db(worker.last_beat), worker.data_json()
        if self.rebinds:
            return (worker.worker_id, beat, data, beat, data)
        return (worker.worker_id, beat, data)


def _worker_reader(dt: Callable[[Any], datetime]) -> Callable[[Sequence[Any]], WorkerRecord]:
    def read(row: Sequence[Any]) -> WorkerRecord:
        return WorkerRecord.from_stored(row[0], dt(row[1]), row[2])

    return read


async def _execute(sql: str, params: Sequence[Any], conn: Conn) -> int:
    return await conn.execute(sql, params)


class SQLWorkerBackend(SQLScheduleBackend):
    """:class:`~pyworkflow.storage._sql_schedules.SQLScheduleBackend` plus the worker
    registry (see the module docstring)."""

    _worker_sql: WorkerStatements | None = None

    @property
    def worker_sql(self) -> WorkerStatements:
        # Rebuilt when the backend rebuilds its statements (MySQL does on connect).
        worker_sql = self._worker_sql
        if worker_sql is None or worker_sql.dialect is not self.sql.dialect:
            worker_sql = self._worker_sql = WorkerStatements(self.sql)
        return worker_sql

    async def save_worker(self, worker: WorkerRecord) -> None:
        sql = self.worker_sql
        params = sql.upsert_params(worker)
        # Small in practice (a few hundred run ids at most); checked like every value.
        check_size(params[2], f"data of worker {worker.worker_id!r}", self.payload_limit)
        await self._call(WRITE, partial(_execute, sql.upsert, params), idempotent=True)

    async def list_workers(
        self, *, limit: int = 1000, after: str | None = None
    ) -> list[WorkerRecord]:
        if limit <= 0:
            return []
        sql = self.worker_sql
        statement, params = (
            (sql.list, (limit,)) if after is None else (sql.list_after, (after, limit))
        )

        async def fetch(conn: Conn) -> list[WorkerRecord]:
            return [sql.row_to_worker(row) for row in await conn.fetch(statement, params)]

        return await self._call(READ, fetch, idempotent=True)

    async def delete_worker(self, worker_id: str) -> bool:
        statement = self.worker_sql.delete
        deleted = await self._call(
            WRITE, partial(_execute, statement, (worker_id,)), idempotent=True
        )
        return deleted == 1


__all__ = ["WORKER_COLUMNS", "SQLWorkerBackend", "WorkerStatements"]
