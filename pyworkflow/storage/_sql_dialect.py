"""What the shared SQL logic asks of one server and its driver.

The SQLite, PostgreSQL and MySQL/MariaDB backends share their statements and the whole
storage contract (:mod:`pyworkflow.storage._sql`); what differs per server is a
:class:`Dialect` (placeholder style, datetime storage, DDL migrations, error
classification, what the server's SQL can do) and a driver adapter implementing
:class:`Conn`. This module holds those hooks, the call modes a backend's ``_call`` runs
in, the driver errors the shared logic reasons about, and the value conversions every
dialect uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from pyworkflow.core.exceptions import StorageError, StorageUnavailableError
from pyworkflow.serialization import compact_json

Mode = Literal["read", "write", "tx"]
#: One or more statements that need no transaction (each is atomic on its own).
READ: Mode = "read"
WRITE: Mode = "write"
#: Several statements that must commit together.
TX: Mode = "tx"

# -- conversions ---------------------------------------------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(value: datetime) -> int:
    """Exact epoch microseconds of an aware datetime (any zone maps to its instant)."""
    return (value - EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def dumps(value: Any) -> str:
    return compact_json(value)


def _never(exc: BaseException) -> bool:  # noqa: ARG001 - the default classifier
    return False


# -- errors --------------------------------------------------------------------------------


class UniqueViolation(StorageError):
    """A driver's unique-constraint error, with the constraint it names (when it does)."""

    def __init__(self, message: str, constraint: str) -> None:
        super().__init__(message, constraint=constraint)
        self.constraint = constraint


class ConnectionLost(StorageUnavailableError):
    """The server connection dropped during a call: whether a write landed is unknown."""


# -- dialects ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one SQL server does differently; everything else is shared.

    Attributes:
        name: label used in error messages.
        paramstyle: ``qmark`` (``?``), ``numeric`` (``$1``) or ``format`` (``%s``).
            Statements are written with ``?`` and converted once.
        dt_to_db / dt_from_db: datetime <-> stored value (never called with ``None``).
        migrations: DDL per schema version; ``{p}`` is the table prefix (schema) and
            other ``{names}`` come from ``ddl_defaults`` or the backend's ``ddl_vars``.
        ddl_defaults: values of the migrations' ``{names}`` unless the backend overrides.
        unique_violation: the constraint a driver error violated, or ``None`` if the
            error is not a unique violation.
        connection_lost: whether a driver error means the connection died.
        transient: whether a driver error means the server rolled the call back for a
            passing reason (deadlock, serialization failure): repeating it is safe.
        missing_table: whether a driver error means ``schema_version`` does not exist.
        bool_to_db: how a boolean column is bound.
        row_values: the planner turns ``(a, b) < (?, ?)`` into an index range (else the
            cursor condition is spelled out with ``OR``).
        update_returning: ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING``
            works, so a due-run claim is one statement.
        lock_clause: appended to the claim's row selection (``FOR UPDATE SKIP LOCKED``).
        array_params: a list binds as an array (``= ANY(?)``) instead of ``IN (...)``.
        tiebreak: orders due runs with equal ``wake_at``.
        stale_order: orders :meth:`list_stale_runs`.
        cancel_flag: a generated 0/1 column equal to ``cancel_requested_at IS NOT NULL``,
            for servers without partial indexes: the ``cancel_requested`` filter then
            compares it to a bound value, an equality an index can seek and order by
            (``None``: the filter tests ``cancel_requested_at IS [NOT] NULL``, which a
            partial index answers).
    """

    name: str
    paramstyle: Literal["qmark", "numeric", "format"]
    dt_to_db: Callable[[datetime], Any]
    dt_from_db: Callable[[Any], datetime]
    migrations: tuple[tuple[str, ...], ...]
    unique_violation: Callable[[BaseException], str | None]
    connection_lost: Callable[[BaseException], bool] = _never
    transient: Callable[[BaseException], bool] = _never
    missing_table: Callable[[BaseException], bool] = _never
    bool_to_db: Callable[[bool], Any] = int
    row_values: bool = True
    update_returning: bool = True
    lock_clause: str = ""
    array_params: bool = False
    tiebreak: str = "run_id"
    stale_order: str = "created_at, run_id"
    cancel_flag: str | None = None
    ddl_defaults: Mapping[str, str] = field(default_factory=dict)


def convert_placeholders(sql: str, paramstyle: str) -> str:
    """Rewrite the ``?`` placeholders of ``sql`` (statements here contain no other ``?``)."""
    if paramstyle == "qmark":
        return sql
    if paramstyle == "format":
        return sql.replace("?", "%s")
    head, *rest = sql.split("?")
    return head + "".join(f"${n}{part}" for n, part in enumerate(rest, 1))


# -- drivers -------------------------------------------------------------------------------


class Conn(Protocol):
    """The three things the shared logic asks of a driver connection."""

    async def fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
        """Run a statement and return every row."""

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        """Run a statement; the number of rows it matched."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run a statement once per row of parameters."""


__all__ = [
    "EPOCH",
    "READ",
    "TX",
    "WRITE",
    "Conn",
    "ConnectionLost",
    "Dialect",
    "Mode",
    "UniqueViolation",
    "convert_placeholders",
    "dumps",
    "from_micros",
    "to_micros",
]
