"""Loguru-based logging whose records carry the current run and step.

Every record emitted inside a run gets ``run_id`` and ``workflow_name`` in its
``extra``; inside a step also ``step_id`` and ``step_name``. The values come from the
same ContextVars the engine sets, so user code logging through ``get_logger()`` (or
loguru's ``logger`` directly) gets them too.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from pyworkflow.context.base import current_context, current_step_info

if TYPE_CHECKING:
    from loguru import Logger, Record

_CONTEXT_KEYS = ("run_id", "workflow_name", "step_id", "step_name")
_handler_ids: list[int] = []


def _add_context(record: Record) -> None:
    extra = record["extra"]
    ctx = current_context()
    if ctx is not None:
        extra.setdefault("run_id", ctx.run_id)
        extra.setdefault("workflow_name", ctx.workflow_name)
    info = current_step_info()
    if info is not None:
        extra.setdefault("step_id", info.step_id)
        extra.setdefault("step_name", info.step_name)


logger.configure(patcher=_add_context)


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
) -> None:
    """Replace PyWorkflow's log sinks: stderr, plus ``log_file`` when given.

    Args:
        level: minimum level (``"DEBUG"``, ``"INFO"``, ...).
        log_file: also write to this file (created with parent directories).
        json_logs: one JSON object per line (loguru's serialized form, ``extra`` included).
        show_context: append ``run_id``/``workflow_name``/``step_id``/``step_name`` to
            text lines (JSON lines always carry them in ``extra``).
    """
    logger.remove()
    _handler_ids.clear()
    fmt = _text_format(show_context)
    sinks: list[Any] = [sys.stderr]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        sinks.append(log_file)
    # diagnose=False: loguru's tracebacks would show the values of local variables, which
    # can hold hook tokens, API tokens and payloads.
    for sink in sinks:
        shape: dict[str, Any] = {"serialize": True} if json_logs else {"format": fmt}
        _handler_ids.append(logger.add(sink, level=level.upper(), diagnose=False, **shape))


def get_logger(**bound: Any) -> Logger:
    """Loguru's logger, optionally bound to extra fields; run context is added automatically."""
    return logger.bind(**bound) if bound else logger
