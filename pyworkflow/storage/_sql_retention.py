"""Retention on the SQL backends: :meth:`delete_runs`, deleting finished runs with their
rows. Shared by SQLite, PostgreSQL and MySQL/MariaDB like
:mod:`pyworkflow.storage._sql_signals`. (Flow-control gates belong to no run, so
retention leaves them alone.)

A run's data lives in five tables, all keyed (or indexed) by ``run_id``: ``runs``,
``events`` and ``signals`` (primary keys ``(run_id, sequence)``), ``run_tags`` (primary
key ``(run_id, tag)``) and ``hooks`` (``hooks_run_created_at`` starts with ``run_id``), so
every delete below is an index range read. One call is one transaction: it first
selects, among the given ids, the runs that are terminal *now* (on PostgreSQL and
MySQL with ``FOR UPDATE SKIP LOCKED``, so the selection cannot change before the
deletes and two purgers never wait on each other; SQLite's ``BEGIN IMMEDIATE``
serializes writers anyway), then deletes those runs' events, hooks, signals and tags and
the runs themselves. The idempotency key is a column of the run row, so it goes with it.
Nothing references a run by foreign key: children keep their ``parent_run_id``.

``IN`` lists hold at most ``IN_CHUNK`` ids (PostgreSQL binds one array instead), so a
larger batch runs several statements in the same transaction. Deleting the same runs
again changes nothing, so a lost connection is retried (a retried call whose first
attempt had committed answers ``0`` for the runs it already deleted).
"""

from __future__ import annotations

from collections.abc import Sequence

from pyworkflow.storage._sql import TX, Conn, Dialect, Statements
from pyworkflow.storage._sql_gates import SQLGateBackend
from pyworkflow.storage._sql_statements import IN_CHUNK, TERMINAL_VALUES


def _marks(count: int) -> str:
    return ", ".join("?" * count)


class RetentionStatements:
    """The retention statements for one :class:`~pyworkflow.storage._sql.Statements`."""

    def __init__(self, sql: Statements) -> None:
        self.sql = sql
        self.dialect: Dialect = sql.dialect
        self.tables = (sql.events, f"{sql.prefix}hooks", f"{sql.prefix}signals", sql.tags)
        self._select_head = (
            f"SELECT run_id FROM {sql.runs} WHERE status IN ({_marks(len(TERMINAL_VALUES))}) "
            "AND run_id"
        )
        # Built per chunk size and cached (batches mostly share one size).
        self._cache: dict[tuple[str, int], str] = {}

    def select_terminal(self, count: int) -> str:
        """The terminal runs among ``count`` ids (bound after the status values), locked
        against concurrent writers where the server can."""
        return self._statement("select", count)

    def delete(self, table: str, count: int) -> str:
        """Delete the rows of ``count`` runs from ``table``."""
        return self._statement(table, count)

    def _statement(self, what: str, count: int) -> str:
        if self.dialect.array_params:
            count = 0  # one array, whatever its length
        key = (what, count)
        sql = self._cache.get(key)
        if sql is None:
            ids = "= ANY(?)" if self.dialect.array_params else f"IN ({_marks(count)})"
            if what == "select":
                lock = self.dialect.lock_clause
                text = f"{self._select_head} {ids}{lock}"
            else:
                text = f"DELETE FROM {what} WHERE run_id {ids}"
            sql = self._cache[key] = self.sql.convert(text)
        return sql

    def id_params(self, ids: list[str]) -> list[object]:
        """The bound value(s) for an id list: one array, or one value per id."""
        return [ids] if self.dialect.array_params else list(ids)


class SQLRetentionBackend(SQLGateBackend):
    """:class:`~pyworkflow.storage._sql_gates.SQLGateBackend` plus
    :meth:`delete_runs` (see the module docstring)."""

    _retention_sql: RetentionStatements | None = None

    @property
    def retention_sql(self) -> RetentionStatements:
        # Rebuilt when the backend rebuilds its statements (MySQL does on connect).
        retention_sql = self._retention_sql
        if retention_sql is None or retention_sql.sql is not self.sql:
            retention_sql = self._retention_sql = RetentionStatements(self.sql)
        return retention_sql

    async def delete_runs(self, run_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(run_ids))
        if not ids:
            return 0
        sql = self.retention_sql
        step = len(ids) if sql.dialect.array_params else IN_CHUNK
        chunks = [ids[i : i + step] for i in range(0, len(ids), step)]

        async def delete(conn: Conn) -> int:
            deleted = 0
            for chunk in chunks:
                rows = await conn.fetch(
                    sql.select_terminal(len(chunk)), [*TERMINAL_VALUES, *sql.id_params(chunk)]
                )
                chosen = [row[0] for row in rows]
                if not chosen:
                    continue
                params = sql.id_params(chosen)
                for table in sql.tables:
                    await conn.execute(sql.delete(table, len(chosen)), params)
                deleted += await conn.execute(sql.delete(sql.sql.runs, len(chosen)), params)
            return deleted

        return await self._call(TX, delete, idempotent=True)


__all__ = ["RetentionStatements", "SQLRetentionBackend"]
