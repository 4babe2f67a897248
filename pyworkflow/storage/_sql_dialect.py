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

import re
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


#: The escape character of :func:`like_prefix` patterns (bound with ``ESCAPE ?``).
LIKE_ESCAPE = "\\"
_LIKE_SPECIAL = re.compile(r"([%_\\])")
_MAX_CHAR = chr(0x10FFFF)


def like_prefix(prefix: str) -> str:
    """The ``LIKE`` pattern of the strings that start with ``prefix`` (its ``%``, ``_``
    and escape characters escaped with :data:`LIKE_ESCAPE`)."""
    return _LIKE_SPECIAL.sub(r"\\\1", prefix) + "%"


def prefix_successor(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix``, in code point
    order (UTF-8 byte order), or ``None`` when there is none (the prefix is all
    U+10FFFF): ``s.startswith(prefix)`` iff ``prefix <= s < prefix_successor(prefix)``.
    """
    head = prefix.rstrip(_MAX_CHAR)
    if not head:
        return None
    following = ord(head[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates are not text; no stored id holds one
        following = 0xE000
    return head[:-1] + chr(following)


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
        prefix_like: the run id column's collation pads with spaces (MySQL's
            ``utf8mb4_bin``: ``'a'`` equals ``'a '`` and sorts above ``'a\\tb'``), so no
            key range is exact: the run id prefix filter is then a byte-wise ``LIKE`` on
            ``CAST(run_id AS BINARY)``, checked row by row. Otherwise it is the key range
            ``run_id >= prefix AND run_id < successor`` (:func:`prefix_successor`), exact
            under a byte-order (code point) collation and seekable even in a generic
            prepared plan. (A plain ``LIKE 'prefix%'`` is neither: PostgreSQL cannot seek
            a bound pattern in a generic plan, SQLite's ``LIKE`` ignores ASCII case, and
            MariaDB's range for it stops below U+10000, losing ids with emoji after the
            prefix.)
        prefix_probe: for a planner without statistics on key ranges (SQLite, built
            without stat4), which reads a prefix's ids from the primary key even when
            nearly every id matches (and then sorts them all): the run id prefix filter
            first counts the matching ids from the key, stopping at this many, and when
            it reaches the limit the query walks the ``created_at`` order and filters
            instead (it then reads at most ``(offset + limit) * runs / prefix_probe``
            entries). ``0``: the planner chooses by itself.
        text_nul: a text column can hold the NUL character (PostgreSQL's cannot).
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
    prefix_like: bool = False
    prefix_probe: int = 0
    text_nul: bool = True
    cancel_flag: str | None = None
    ddl_defaults: Mapping[str, str] = field(default_factory=dict)

    def storable(self, text: str) -> bool:
        """Whether a text column of this server can hold ``text``."""
        if not self.text_nul and "\x00" in text:
            return False
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate
            return False
        return True


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
    "LIKE_ESCAPE",
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
    "like_prefix",
    "prefix_successor",
    "to_micros",
]
