"""The hook half of the storage contract on the SQL backends: cancellation requests and
hooks. Shared by SQLite, PostgreSQL and MySQL/MariaDB like :mod:`pyworkflow.storage._sql`.

Each dialect's migrations create a ``hooks`` table with the columns of
:data:`HOOK_COLUMNS` (the record's ``schema`` field is the ``payload_schema`` column,
since ``SCHEMA`` is a reserved word in MySQL), keyed by ``token_hash``, with a unique
``(run_id, hook_id)`` (a replayed run that saves its hook again gets the first one back)
and ``(filter, created_at, token_hash)`` indexes for :meth:`list_hooks`.

A cancellation request is one conditional ``UPDATE`` of the run's ``cancel_*`` columns,
unfenced (it does not touch ``last_sequence``), so it never conflicts with the run's own
writer; a hook delivery is one compare-and-set ``UPDATE ... WHERE status = expected``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pyworkflow.core.exceptions import StorageError
from pyworkflow.storage._sql import (
    READ,
    WRITE,
    Conn,
    SQLStorageBackend,
    Statements,
    UniqueViolation,
)
from pyworkflow.storage._sql_dialect import from_micros
from pyworkflow.storage.base import parse_cursor
from pyworkflow.storage.payloads import check_hook, check_hook_payload
from pyworkflow.storage.schemas import TERMINAL_STATUSES, HookRecord, HookStatus

# Column order of every hook SELECT and INSERT (payload_schema holds HookRecord.schema).
HOOK_COLUMNS = (
    "token_hash",
    "run_id",
    "hook_id",
    "name",
    "token",
    "status",
    "created_at",
    "expires_at",
    "received_at",
    "payload",
    "payload_schema",
)
_TERMINAL = tuple(s.value for s in TERMINAL_STATUSES)
_HOOK_STATUSES: dict[str, HookStatus] = {s.value: s for s in HookStatus}


class HookStatements:
    """The signal statements for one :class:`~pyworkflow.storage._sql.Statements`."""

    def __init__(self, sql: Statements) -> None:
        c, runs = sql.convert, sql.runs
        hooks = self.hooks = f"{sql.prefix}hooks"
        self.dialect = sql.dialect
        terminal = ", ".join("?" * len(_TERMINAL))
        self.request_cancellation = c(
            f"UPDATE {runs} SET cancel_requested_at = ?, cancel_reason = ? "
            f"WHERE run_id = ? AND cancel_requested_at IS NULL AND status NOT IN ({terminal})"
        )
        self.run_status = c(f"SELECT status FROM {runs} WHERE run_id = ?")
        columns = ", ".join(HOOK_COLUMNS)
        self.select = f"SELECT {columns} FROM {hooks}"
        self.insert = c(
            f"INSERT INTO {hooks} ({columns}) VALUES ({', '.join('?' * len(HOOK_COLUMNS))})"
        )
        self.get = c(f"{self.select} WHERE token_hash = ?")
        self.get_by_run = c(f"{self.select} WHERE run_id = ? AND hook_id = ?")
        # Compare-and-set: only a hook still in the expected status moves.
        self.update = c(
            f"UPDATE {hooks} SET status = ?, payload = COALESCE(?, payload), "
            "received_at = COALESCE(?, received_at) WHERE token_hash = ? AND status = ?"
        )
        self._list: dict[tuple[bool, bool, bool], str] = {}
        self._convert = c
        self.row_to_hook = _hook_reader(sql.dialect.dt_from_db)

    def list(self, run_id: bool, status: bool, cursor: bool = False) -> str:
        """The :meth:`list_hooks` statement; its parameters: the run id, the status, the
        cursor's values (:meth:`cursor_params`), limit and offset (those given)."""
        sql = self._list.get((run_id, status, cursor))
        if sql is None:
            where = [c for wanted, c in ((run_id, "run_id = ?"), (status, "status = ?")) if wanted]
            if cursor and self.dialect.row_values:
                where.append("(created_at, token_hash) < (?, ?)")
            elif cursor:  # as Statements.query does for MySQL: a key part to seek to first
                where.append(
                    "created_at <= ? AND (created_at < ? OR (created_at = ? AND token_hash < ?))"
                )
            filters = f" WHERE {' AND '.join(where)}" if where else ""
            sql = self._list[(run_id, status, cursor)] = self._convert(
                f"{self.select}{filters} ORDER BY created_at DESC, token_hash DESC LIMIT ? OFFSET ?"
            )
        return sql

    def cursor_params(self, cursor: str) -> tuple[Any, ...]:
        """The bound values of a :func:`~pyworkflow.storage.base.hook_cursor`."""
        micros, token_hash = parse_cursor(cursor)
        created = self.dialect.dt_to_db(from_micros(micros))
        if self.dialect.row_values:
            return (created, token_hash)
        return (created, created, created, token_hash)

    def hook_row(self, hook: HookRecord) -> tuple[Any, ...]:
        dt = self.dialect.dt_to_db
        return (
            hook.token_hash,
            hook.run_id,
            hook.hook_id,
            hook.name,
            hook.token,
            HookStatus(hook.status).value,
            dt(hook.created_at),
            None if hook.expires_at is None else dt(hook.expires_at),
            None if hook.received_at is None else dt(hook.received_at),
            hook.payload,
            hook.schema,
        )


def _hook_reader(dt: Callable[[Any], datetime]) -> Callable[[Sequence[Any]], HookRecord]:
    def read(row: Sequence[Any]) -> HookRecord:
        return HookRecord(
            token_hash=row[0],
            run_id=row[1],
            hook_id=row[2],
            name=row[3],
            token=row[4],
            status=_HOOK_STATUSES[row[5]],
            created_at=dt(row[6]),
            expires_at=None if row[7] is None else dt(row[7]),
            received_at=None if row[8] is None else dt(row[8]),
            payload=row[9],
            schema=row[10],
        )

    return read


class SQLHookBackend(SQLStorageBackend):
    """:class:`~pyworkflow.storage._sql.SQLStorageBackend` plus cancellation requests and
    hooks. Connection loss: everything but :meth:`update_hook` is retried once (each is
    idempotent, or resolves a repeat through the unique index); a delivery whose
    connection died is reported as a :class:`StorageError`, never guessed, because a
    retry could not tell its own earlier success from another deliverer's."""

    _hook_sql: HookStatements | None = None

    @property
    def hook_sql(self) -> HookStatements:
        # Rebuilt when the backend rebuilds its statements (MySQL does on connect).
        hook_sql = self._hook_sql
        if hook_sql is None or hook_sql.dialect is not self.sql.dialect:
            hook_sql = self._hook_sql = HookStatements(self.sql)
        return hook_sql

    async def request_cancellation(self, run_id: str, reason: str | None, now: datetime) -> bool:
        sql = self.hook_sql
        params = (sql.dialect.dt_to_db(now), reason, run_id, *_TERMINAL)

        async def request(conn: Conn) -> bool:
            if await conn.execute(sql.request_cancellation, params) == 1:
                return True
            # Nothing changed: already requested (True), or terminal / unknown (False).
            rows = await conn.fetch(sql.run_status, (run_id,))
            return bool(rows) and rows[0][0] not in _TERMINAL

        return await self._call(WRITE, request, idempotent=True)

    async def save_hook(self, hook: HookRecord) -> HookRecord:
        check_hook(hook, self.payload_limit)
        sql = self.hook_sql
        row = sql.hook_row(hook)

        async def insert(conn: Conn) -> None:
            await conn.execute(sql.insert, row)

        try:
            # A retry after a lost connection that had in fact committed meets its own
            # row in the unique index and returns it, as a replay would.
            await self._call(WRITE, insert, idempotent=True)
        except UniqueViolation as exc:
            existing = await self._fetch_hook(sql.get_by_run, (hook.run_id, hook.hook_id))
            if existing is not None:
                return existing
            raise StorageError(
                f"{self.label}: cannot store hook {hook.hook_id!r} of run {hook.run_id!r}: "
                "its token hash is already taken",
                constraint=exc.constraint,
            ) from exc
        return hook.copy()

    async def _fetch_hook(self, statement: str, params: Sequence[Any]) -> HookRecord | None:
        async def fetch(conn: Conn) -> HookRecord | None:
            rows = await conn.fetch(statement, params)
            return self.hook_sql.row_to_hook(rows[0]) if rows else None

        return await self._call(READ, fetch, idempotent=True)

    async def get_hook(self, token_hash: str) -> HookRecord | None:
        return await self._fetch_hook(self.hook_sql.get, (token_hash,))

    async def list_hooks(
        self,
        *,
        run_id: str | None = None,
        status: HookStatus | None = None,
        limit: int = 100,
        offset: int = 0,
        cursor: str | None = None,
    ) -> list[HookRecord]:
        sql = self.hook_sql
        params: list[Any] = []
        if run_id is not None:
            params.append(run_id)
        if status is not None:
            params.append(HookStatus(status).value)
        if cursor is not None:
            params += sql.cursor_params(cursor)
        statement = sql.list(run_id is not None, status is not None, cursor is not None)

        async def fetch(conn: Conn) -> list[HookRecord]:
            rows = await conn.fetch(statement, [*params, limit, offset])
            return [sql.row_to_hook(row) for row in rows]

        return await self._call(READ, fetch, idempotent=True)

    async def update_hook(
        self,
        token_hash: str,
        *,
        expected: HookStatus,
        status: HookStatus,
        payload: str | None = None,
        received_at: datetime | None = None,
    ) -> bool:
        check_hook_payload(token_hash, payload, self.payload_limit)
        sql = self.hook_sql
        received = None if received_at is None else sql.dialect.dt_to_db(received_at)
        params = (
            HookStatus(status).value,
            payload,
            received,
            token_hash,
            HookStatus(expected).value,
        )

        async def update(conn: Conn) -> int:
            return await conn.execute(sql.update, params)

        return await self._call(WRITE, update) == 1


__all__ = ["HOOK_COLUMNS", "SQLHookBackend", "HookStatements"]
