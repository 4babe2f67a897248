"""The versioned-migration runner of the shared SQL storage.

Each dialect lists its DDL per schema version (never editing a released entry, only
appending); ``schema_version(version)`` records how many of them ran.
"""

from __future__ import annotations

from pyworkflow.core.exceptions import StorageError
from pyworkflow.storage._sql_dialect import Conn
from pyworkflow.storage._sql_statements import Statements


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


__all__ = ["apply_migrations", "read_schema_version"]
