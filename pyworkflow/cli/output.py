"""How every command prints what it found: ``--output table`` (Rich, for people),
``json`` (a stable shape for scripts) or ``plain`` (tab-separated, for ``cut``/``awk``).

Commands hand over plain data (dicts of str/int/float/bool/None/datetime, lists of them)
and never print records themselves, so the three formats always agree.

The JSON shape is part of the interface: a list command prints one object
``{"<items>": [...], "next_cursor": ...}``; a show command prints the item's object.
Datetimes are ISO 8601 in UTC; keys are the column names, snake_case.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

FORMATS = ("table", "json", "plain")


def _scalar(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def to_json_data(value: Any) -> Any:
    """``value`` with datetimes and enums made JSON-ready (recursively)."""
    if isinstance(value, Mapping):
        return {str(k): to_json_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_data(v) for v in value]
    return _scalar(value)


def _cell(value: Any) -> str:
    value = _scalar(value)
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple | dict):
        return json.dumps(to_json_data(value), default=str)
    return str(value)


def _table_cell(value: Any) -> str:
    """:func:`_cell` for people: times as ``YYYY-MM-DD HH:MM:SS`` UTC (JSON and plain keep
    the full ISO 8601 value)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return _cell(value)


# Tables written to a pipe or file are as wide as this (a terminal's own width otherwise,
# or COLUMNS when set): a log or `| grep` should get whole cells, not 80-column wraps.
PIPE_WIDTH = 160


def console() -> Console:
    """Where tables go (stdout; no colours when it is not a terminal)."""
    out = Console(highlight=False, soft_wrap=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(highlight=False, soft_wrap=False, width=PIPE_WIDTH)
    return out


def emit_list(
    fmt: str,
    key: str,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    title: str | None = None,
    next_cursor: str | None = None,
) -> None:
    """Print ``rows`` (showing ``columns`` in table/plain; every field in JSON)."""
    if fmt == "json":
        click.echo(json.dumps({key: to_json_data(list(rows)), "next_cursor": next_cursor}))
        return
    if fmt == "plain":
        for row in rows:
            click.echo("\t".join(_cell(row.get(c)) for c in columns))
        return
    table = Table(title=title, show_lines=False)
    cells = [[_table_cell(row.get(c)) for c in columns] for row in rows]
    for i, column in enumerate(columns):
        if column == "id" or column.endswith(("_id", "_at")):
            # Ids are what people copy into the next command, times are read at a
            # glance: neither is cut or wrapped (other columns give way).
            widest = max((len(line[i]) for line in cells), default=0)
            table.add_column(column.replace("_", " "), no_wrap=True, min_width=widest)
        else:
            # fold, never "…": a value cut short cannot be copied into the next command
            table.add_column(column.replace("_", " "), overflow="fold")
    for line in cells:
        table.add_row(*(Text(cell) for cell in line))  # data, not Rich markup
    out = console()
    out.print(table)
    if not rows:
        out.print(f"no {key}")
    if next_cursor:
        out.print(f"more: --cursor {next_cursor}")


def emit_one(fmt: str, item: Mapping[str, Any], *, title: str | None = None) -> None:
    """Print one record: key/value lines (table, plain) or its JSON object."""
    if fmt == "json":
        click.echo(json.dumps(to_json_data(dict(item))))
        return
    if fmt == "plain":
        for key, value in item.items():
            click.echo(f"{key}\t{_cell(value)}")
        return
    table = Table(title=title, show_header=False, box=None)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in item.items():
        table.add_row(key.replace("_", " "), Text(_table_cell(value)))
    console().print(table)
