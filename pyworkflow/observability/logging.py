"""Setting up where pyworkflow's log lines go, with the run and step they are about.

Every record pyworkflow writes about a run carries ``run_id`` and ``workflow_name`` in
its ``extra``; inside a step also ``step_id``, ``step_name`` and ``attempt``. User code
gets the same through :func:`get_logger`, and records written with loguru's own
``logger`` inside a run get them in the sinks :func:`configure_logging` adds.

Nothing here runs at import: the application's sinks and records are its own. See
``pyworkflow.utils.log`` for the level pyworkflow logs at by default
(WARNING) and docs/logging.md for the lines each run writes.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from pyworkflow.observability.run_context import add_run_context, with_run_context
from pyworkflow.utils.log import level_number, set_log_level

if TYPE_CHECKING:
    from loguru import Logger, Record

_CONTEXT_KEYS = ("run_id", "workflow_name", "step_id", "step_name", "attempt")
# Sinks this module added: the next configure_logging replaces these, and only these.
_handler_ids: list[int] = []
# loguru's own stderr sink, present until someone removes it.
_LOGURU_DEFAULT_SINK = 0


def _with_context(record: Record) -> bool:
    # A sink filter, not a patcher: it fills in the context for this sink's records
    # only (a user's plain ``logger.info`` inside a step included).
    add_run_context(record)
    return True


def _text_format(show_context: bool) -> Any:
    def fmt(record: Record) -> str:
        base = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{line} - {message}"
        if show_context:
            parts = [f"{k}={{extra[{k}]}}" for k in _CONTEXT_KEYS if k in record["extra"]]
            if parts:
                base += " | " + " ".join(parts)
        return base + "\n{exception}"

    return fmt


def configure_logging(
    level: str = "INFO",
    log_file: str | None = None,
    json_logs: bool = False,
    show_context: bool = True,
    *,
    stderr: bool = True,
) -> None:
    """Write log lines from ``level`` up to stderr, and to ``log_file`` when given.

    Calling it again replaces the sinks it added before; sinks the application added
    itself stay. loguru's default stderr sink is removed (these sinks replace it), and
    pyworkflow's own records are let through from ``level`` up (see
    :func:`~pyworkflow.utils.log.set_log_level`).

    Args:
        level: minimum level (``"DEBUG"``, ``"INFO"``, ...).
        log_file: also write to this file (created with parent directories).
        json_logs: one JSON object per line (loguru's serialized form, ``extra`` included).
        show_context: append ``run_id``/``workflow_name``/``step_id``/``step_name``/
            ``attempt`` to text lines (JSON lines always carry them in ``extra``).
        stderr: also write to stderr.

    Raises:
        ValueError: ``level`` is not a log level.
    """
    number = level_number(level)
    for handler_id in (*_handler_ids, _LOGURU_DEFAULT_SINK):
        with contextlib.suppress(ValueError):  # removed already
            logger.remove(handler_id)
    _handler_ids.clear()
    set_log_level(number)
    fmt = _text_format(show_context)
    sinks: list[Any] = [sys.stderr] if stderr else []
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        sinks.append(log_file)
    # diagnose=False: loguru's tracebacks would show the values of local variables, which
    # can hold hook tokens, API tokens and payloads.
    for sink in sinks:
        shape: dict[str, Any] = {"serialize": True} if json_logs else {"format": fmt}
        _handler_ids.append(
            logger.add(sink, level=number, diagnose=False, filter=_with_context, **shape)
        )


class _ToStandardLogging(logging.Handler):
    """Hands a loguru record to the standard ``logging`` logger of the same name, with
    the run context as record attributes (``%(run_id)s`` in a format)."""

    def emit(self, record: logging.LogRecord) -> None:
        extra = getattr(record, "extra", {})
        for key, value in extra.items():
            if key not in record.__dict__:
                setattr(record, key, value)
        logging.getLogger(record.name).handle(record)


def forward_to_logging(level: str = "INFO") -> int:
    """Send pyworkflow's records from ``level`` up to the standard ``logging`` module,
    for applications whose logging is set up there: each goes to the logger named
    after its module (``pyworkflow.engine.executor``, ...: configure ``"pyworkflow"``),
    with ``run_id``, ``workflow_name``, ``step_id``, ``step_name`` and ``attempt`` as
    attributes of the ``LogRecord`` where known. Returns the loguru sink id.

    Raises:
        ValueError: ``level`` is not a log level.
    """
    number = level_number(level)
    set_log_level(number)
    return logger.add(
        _ToStandardLogging(),
        level=number,
        format="{message}",
        filter=lambda record: (
            (record["name"] or "").startswith("pyworkflow") and _with_context(record)
        ),
        diagnose=False,
    )


def get_logger(**bound: Any) -> Logger:
    """loguru's logger, optionally bound to extra fields; its records carry the current
    run and step (``run_id``, ``workflow_name``, ``step_id``, ``step_name``, ``attempt``)."""
    patched = with_run_context(logger)
    return patched.bind(**bound) if bound else patched
