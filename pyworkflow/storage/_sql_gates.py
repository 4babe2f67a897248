"""Flow-control gates on the SQL backends (:meth:`get_gate`, :meth:`save_gate`). Shared
by SQLite, PostgreSQL and MySQL/MariaDB like :mod:`pyworkflow.storage._sql_schedules`,
and saved as a schedule is, by :mod:`pyworkflow.storage._sql_versioned` (one insert or
compare-and-set update; what a lost connection means).

Each dialect's migrations create a ``gates`` table with the columns of
:data:`GATE_COLUMNS`, keyed by ``gate_key`` (so every statement here is a primary-key
lookup); ``updated_at`` is stored like the runs' timestamps, ``data`` is the record's
opaque JSON text, stored verbatim. Keys compare exactly (case and trailing spaces
matter): a byte-order collation on PostgreSQL (``"C"``) and the binary table collation
on MySQL/MariaDB.

Writes are single statements, atomic on their own:

* insert: an insert-if-absent whose row count tells whether it stored the row
  (``ON CONFLICT (gate_key) DO NOTHING`` on SQLite and PostgreSQL: unlike SQLite's
  ``INSERT OR IGNORE`` it ignores only the key conflict). MySQL/MariaDB uses a plain
  ``INSERT`` and reads a duplicate-key error as "exists": its ``INSERT IGNORE`` would
  also turn strict-mode errors into warnings and silently store a truncated key.
* update: the compare-and-set ``UPDATE ... WHERE gate_key = ? AND version = ?``; the
  matched row count (1 or 0) is the outcome. Of two writers holding one version, the
  second waits on the first's row lock, then matches nothing. This is what makes a
  limit hold across processes: only one of them writes the next version.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from pyworkflow.storage._sql import READ, Conn, Dialect, Statements
from pyworkflow.storage._sql_signals import SQLSignalBackend
from pyworkflow.storage._sql_versioned import save_versioned
from pyworkflow.storage.payloads import check_gate
from pyworkflow.storage.schemas import GateRecord

# Column order of every gate SELECT and INSERT.
GATE_COLUMNS = ("gate_key", "version", "data", "updated_at")

# Insert-if-absent tail per dialect. Any other dialect (MySQL) uses a plain INSERT, whose
# duplicate-key error save_gate reads as "exists". (SQLite has ON CONFLICT since 3.24.)
_IF_ABSENT = " ON CONFLICT (gate_key) DO NOTHING"
_INSERT_TAIL: dict[str, str] = {"sqlite": _IF_ABSENT, "postgres": _IF_ABSENT}


class GateStatements:
    """The gate statements for one :class:`~pyworkflow.storage._sql.Statements`."""

    def __init__(self, sql: Statements) -> None:
        c = sql.convert
        gates = self.gates = f"{sql.prefix}gates"
        self.dialect: Dialect = sql.dialect
        columns = ", ".join(GATE_COLUMNS)
        tail = _INSERT_TAIL.get(sql.dialect.name, "")
        self.insert = c(
            f"INSERT INTO {gates} ({columns}) VALUES ({', '.join('?' * len(GATE_COLUMNS))}){tail}"
        )
        # Compare-and-set: only the row still at the expected version changes.
        self.update = c(
            f"UPDATE {gates} SET version = ?, data = ?, updated_at = ? "
            "WHERE gate_key = ? AND version = ?"
        )
        self.get = c(f"SELECT {columns} FROM {gates} WHERE gate_key = ?")
        self.row_to_gate = _gate_reader(sql.dialect.dt_from_db)

    def insert_params(self, gate: GateRecord, version: int) -> tuple[Any, ...]:
        """The insert's values (:data:`GATE_COLUMNS` order), storing ``version``."""
        return (gate.key, version, gate.data, self.dialect.dt_to_db(gate.updated_at))

    def update_params(
        self, gate: GateRecord, version: int, expected_version: int
    ) -> tuple[Any, ...]:
        """The compare-and-set's values: the new ones, then the key and the version the
        stored row must still have."""
        updated_at = self.dialect.dt_to_db(gate.updated_at)
        return (version, gate.data, updated_at, gate.key, expected_version)


def _gate_reader(dt: Callable[[Any], datetime]) -> Callable[[Sequence[Any]], GateRecord]:
    def read(row: Sequence[Any]) -> GateRecord:
        return GateRecord(key=row[0], version=int(row[1]), data=row[2], updated_at=dt(row[3]))

    return read


class SQLGateBackend(SQLSignalBackend):
    """:class:`~pyworkflow.storage._sql_signals.SQLSignalBackend` plus flow-control
    gates (see the module docstring).

    Connection loss: a read is retried. A save is
    :func:`~pyworkflow.storage._sql_versioned.save_versioned`, like :meth:`save_schedule`:
    retried once, and if the retry is refused it counts as done only when the stored gate
    is exactly the one it wrote (its own first attempt landed). A save that landed and
    was overwritten by another process before that check answers ``False``: the caller
    then re-reads the gate and decides again, which a limit tolerates (it never lets two
    writers both believe they won).
    """

    _gate_sql: GateStatements | None = None

    @property
    def gate_sql(self) -> GateStatements:
        # Rebuilt when the backend rebuilds its statements (MySQL does on connect).
        gate_sql = self._gate_sql
        if gate_sql is None or gate_sql.dialect is not self.sql.dialect:
            gate_sql = self._gate_sql = GateStatements(self.sql)
        return gate_sql

    async def get_gate(self, key: str) -> GateRecord | None:
        if not self.sql.dialect.storable(key):
            return None  # binding it would fail; no stored key holds it

        async def fetch(conn: Conn) -> GateRecord | None:
            sql = self.gate_sql  # read once connected, like every statement of a call
            rows = await conn.fetch(sql.get, (key,))
            return sql.row_to_gate(rows[0]) if rows else None

        return await self._call(READ, fetch, idempotent=True)

    async def save_gate(self, gate: GateRecord, *, expected_version: int | None) -> bool:
        check_gate(gate, self.payload_limit)
        load = partial(self.get_gate, gate.key)
        return await save_versioned(self, lambda: self.gate_sql, gate, expected_version, load)


__all__ = ["GATE_COLUMNS", "GateStatements", "SQLGateBackend"]
