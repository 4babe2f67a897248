"""The compare-and-set save of a versioned record on the SQL backends, written once for
schedules (:mod:`~pyworkflow.storage._sql_schedules`) and flow-control gates
(:mod:`~pyworkflow.storage._sql_gates`).

A record's statements (:class:`VersionedStatements`) give two single statements: an
insert-if-absent that stores version 1, and the compare-and-set ``UPDATE ... WHERE <key>
= ? AND version = ?`` that stores ``expected_version + 1``. The row count (1 or 0) of
either is the outcome; a duplicate-key error (the plain ``INSERT`` of MySQL/MariaDB) is
a refusal too.

Connection loss: a save whose connection died is retried once; if the retry is refused,
the save counts as done only when the stored record is exactly the one it wrote (its own
first attempt landed), as ``create_run`` and ``append_events`` decide. A save that
landed and was overwritten by another writer before that check answers ``False``: the
caller re-reads the record and decides again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

from pyworkflow.storage._sql import WRITE, Conn, ConnectionLost, SQLStorageBackend, UniqueViolation
from pyworkflow.storage.schemas import VersionedRecord

R = TypeVar("R", bound=VersionedRecord)
R_contra = TypeVar("R_contra", bound=VersionedRecord, contravariant=True)


class VersionedStatements(Protocol[R_contra]):
    """The two writes of one kind of record, and their parameters."""

    insert: str  # insert-if-absent (or a plain INSERT, whose duplicate key refuses)
    update: str  # compare-and-set: only the row still at the expected version changes

    def insert_params(self, record: R_contra, version: int) -> tuple[Any, ...]: ...

    def update_params(
        self, record: R_contra, version: int, expected_version: int
    ) -> tuple[Any, ...]: ...


async def save_versioned(
    backend: SQLStorageBackend,
    statements: Callable[[], VersionedStatements[R]],
    record: R,
    expected_version: int | None,
    load: Callable[[], Awaitable[R | None]],
) -> bool:
    """Store ``record`` at the next version (see the module docstring); whether it did.

    Args:
        statements: the record's statements, read at each attempt (a backend rebuilds
            them when it reconnects).
        expected_version: the stored version to replace, ``None`` to insert.
        load: reads the stored record, to tell a landed first attempt from a conflict.

    On success ``record.version`` is the version stored.
    """
    version = 1 if expected_version is None else expected_version + 1
    write = partial(_write, backend, statements, record, version, expected_version)
    try:
        saved = await write()
    except ConnectionLost:
        # Refused: by our own first attempt (the stored record is exactly what it
        # wrote), or by another writer.
        saved = await write() or await _is_stored(record, version, load)
    if saved:
        record.version = version
    return saved


async def _write(
    backend: SQLStorageBackend,
    statements: Callable[[], VersionedStatements[R]],
    record: R,
    version: int,
    expected_version: int | None,
) -> bool:
    """One insert-if-absent or compare-and-set update; whether it wrote the row."""
    sql = statements()
    if expected_version is None:
        statement, params = sql.insert, sql.insert_params(record, version)
    else:
        statement, params = sql.update, sql.update_params(record, version, expected_version)
    try:
        return await backend._call(WRITE, partial(_execute, statement, params)) == 1
    except UniqueViolation:
        return False  # a plain INSERT (MySQL) met the existing record


async def _is_stored(record: R, version: int, load: Callable[[], Awaitable[R | None]]) -> bool:
    """Whether the stored record is exactly ``record`` at ``version``."""
    written = record.copy()
    written.version = version
    return await load() == written


async def _execute(sql: str, params: Sequence[Any], conn: Conn) -> int:
    return await conn.execute(sql, params)


__all__ = ["VersionedStatements", "save_versioned"]
