"""Runs' signal inboxes on the SQL backends (:meth:`send_signal`, :meth:`list_signals`).
Shared by SQLite, PostgreSQL and MySQL/MariaDB like :mod:`pyworkflow.storage._sql_workers`.

Each dialect's migrations create a ``signals`` table with the columns of
:data:`SIGNAL_COLUMNS`, keyed by ``(run_id, sequence)`` (so :meth:`list_signals` is one
primary-key range read in order), with a unique ``(run_id, signal_id)`` (a repeated send
finds its first row); ``sent_at`` is stored like the runs' timestamps.

A send is one transaction that first takes the run's row lock with an ``UPDATE`` of the
run (making a suspended run due: ``wake_at`` becomes ``now`` unless it is earlier), then
reads the run's status, the signal id and the highest sequence, and inserts. The row
lock serializes the run's senders with each other (sequences are given in commit order,
so a reader never finds a new one below what it has seen) and with the run's own writer,
whose fenced append updates the same row. SQLite's ``BEGIN IMMEDIATE`` serializes every
writer anyway. On MySQL/MariaDB the reads after the lock are locking reads, so no
snapshot older than the lock is read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from pyworkflow.core.exceptions import StorageError
from pyworkflow.storage._sql import READ, TX, Conn, ConnectionLost, Statements, UniqueViolation
from pyworkflow.storage._sql_dialect import Dialect
from pyworkflow.storage._sql_statements import SUSPENDED_VALUE, TERMINAL_VALUES
from pyworkflow.storage._sql_workers import SQLWorkerBackend
from pyworkflow.storage.payloads import check_signal
from pyworkflow.storage.schemas import SignalRecord

# Column order of every signal SELECT and INSERT.
SIGNAL_COLUMNS = ("run_id", "sequence", "signal_id", "name", "payload", "sent_at")

# Appended to the reads a send makes under the run's lock, per dialect: InnoDB's plain
# reads may come from a snapshot taken before the lock (REPEATABLE READ).
_LOCKING_READ: dict[str, str] = {"mysql": " FOR UPDATE"}


class SignalStatements:
    """The signal statements for one :class:`~pyworkflow.storage._sql.Statements`."""

    def __init__(self, sql: Statements) -> None:
        c, runs = sql.convert, sql.runs
        signals = self.signals = f"{sql.prefix}signals"
        self.dialect: Dialect = sql.dialect
        lock = _LOCKING_READ.get(sql.dialect.name, "")
        terminal = ", ".join("?" * len(TERMINAL_VALUES))
        # Takes the run's row lock whether or not wake_at changes.
        self.wake = c(
            f"UPDATE {runs} SET wake_at = CASE WHEN status = ? "
            "AND (wake_at IS NULL OR wake_at > ?) THEN ? ELSE wake_at END "
            f"WHERE run_id = ? AND status NOT IN ({terminal})"
        )
        self.run_status = c(f"SELECT status FROM {runs} WHERE run_id = ?{lock}")
        columns = ", ".join(SIGNAL_COLUMNS)
        select = f"SELECT {columns} FROM {signals}"
        self.get = c(f"{select} WHERE run_id = ? AND signal_id = ?")
        self.get_locked = c(f"{select} WHERE run_id = ? AND signal_id = ?{lock}")
        # One entry read backwards from the key (MAX() with FOR UPDATE would lock them all).
        self.last_sequence = c(
            f"SELECT sequence FROM {signals} WHERE run_id = ? ORDER BY sequence DESC LIMIT 1{lock}"
        )
        self.insert = c(
            f"INSERT INTO {signals} ({columns}) VALUES ({', '.join('?' * len(SIGNAL_COLUMNS))})"
        )
        self.list = c(f"{select} WHERE run_id = ? AND sequence > ? ORDER BY sequence LIMIT ?")
        self.row_to_signal = _signal_reader(sql.dialect.dt_from_db)

    def wake_params(self, run_id: str, now: datetime) -> tuple[Any, ...]:
        at = self.dialect.dt_to_db(now)
        return (SUSPENDED_VALUE, at, at, run_id, *TERMINAL_VALUES)

    def signal_row(self, signal: SignalRecord) -> tuple[Any, ...]:
        return (
            signal.run_id,
            signal.sequence,
            signal.signal_id,
            signal.name,
            signal.payload,
            self.dialect.dt_to_db(signal.sent_at),
        )


def _signal_reader(dt: Callable[[Any], datetime]) -> Callable[[Sequence[Any]], SignalRecord]:
    def read(row: Sequence[Any]) -> SignalRecord:
        return SignalRecord(
            run_id=row[0],
            sequence=int(row[1]),
            signal_id=row[2],
            name=row[3],
            payload=row[4],
            sent_at=dt(row[5]),
        )

    return read


class SQLSignalBackend(SQLWorkerBackend):
    """:class:`~pyworkflow.storage._sql_workers.SQLWorkerBackend` plus runs' signal
    inboxes (see the module docstring)."""

    _signal_sql: SignalStatements | None = None

    @property
    def signal_sql(self) -> SignalStatements:
        # Rebuilt when the backend rebuilds its statements (MySQL does on connect).
        signal_sql = self._signal_sql
        if signal_sql is None or signal_sql.dialect is not self.sql.dialect:
            signal_sql = self._signal_sql = SignalStatements(self.sql)
        return signal_sql

    async def send_signal(
        self, run_id: str, name: str, payload: str, *, signal_id: str, now: datetime
    ) -> SignalRecord | None:
        check_signal(run_id, name, payload, self.payload_limit)
        if not self.sql.dialect.storable(run_id):
            return None  # no stored run has this id
        send = partial(self._send, run_id, name, payload, signal_id, now)
        try:
            try:
                return await self._call(TX, send)
            except ConnectionLost:
                # The first attempt may have committed: its row answers for it (a retry
                # could find the run finished since, and wrongly answer None).
                existing = await self._get_signal(run_id, signal_id)
                if existing is not None:
                    return existing
                return await self._call(TX, send)
        except UniqueViolation as exc:
            # Not expected (senders serialize on the run's row); a duplicate id is still
            # a repeated send.
            existing = await self._get_signal(run_id, signal_id)
            if existing is not None:
                return existing
            raise StorageError(
                f"{self.label}: cannot store signal {signal_id!r} of run {run_id!r}: {exc}",
                constraint=exc.constraint,
            ) from exc

    async def _send(
        self, run_id: str, name: str, payload: str, signal_id: str, now: datetime, conn: Conn
    ) -> SignalRecord | None:
        sql = self.signal_sql  # read once connected, like every statement of a call
        # First the run's row lock (and the wake-up). The status read decides, not the
        # row count: MySQL counts changed rows unless the session asks for matched ones.
        await conn.execute(sql.wake, sql.wake_params(run_id, now))
        rows = await conn.fetch(sql.run_status, (run_id,))
        if not rows or rows[0][0] in TERMINAL_VALUES:
            return None
        rows = await conn.fetch(sql.get_locked, (run_id, signal_id))
        if rows:
            return sql.row_to_signal(rows[0])
        rows = await conn.fetch(sql.last_sequence, (run_id,))
        d = sql.dialect
        signal = SignalRecord(
            run_id=run_id,
            sequence=int(rows[0][0]) + 1 if rows else 1,
            name=name,
            payload=payload,
            signal_id=signal_id,
            sent_at=d.dt_from_db(d.dt_to_db(now)),  # as list_signals will read it
        )
        await conn.execute(sql.insert, sql.signal_row(signal))
        return signal

    async def _get_signal(self, run_id: str, signal_id: str) -> SignalRecord | None:
        async def fetch(conn: Conn) -> SignalRecord | None:
            sql = self.signal_sql
            rows = await conn.fetch(sql.get, (run_id, signal_id))
            return sql.row_to_signal(rows[0]) if rows else None

        return await self._call(READ, fetch, idempotent=True)

    async def list_signals(
        self, run_id: str, *, after_sequence: int = 0, limit: int = 1000
    ) -> list[SignalRecord]:
        if limit <= 0 or not self.sql.dialect.storable(run_id):
            return []

        async def fetch(conn: Conn) -> list[SignalRecord]:
            sql = self.signal_sql
            rows = await conn.fetch(sql.list, (run_id, after_sequence, limit))
            return [sql.row_to_signal(row) for row in rows]

        return await self._call(READ, fetch, idempotent=True)


__all__ = ["SIGNAL_COLUMNS", "SQLSignalBackend", "SignalStatements"]
