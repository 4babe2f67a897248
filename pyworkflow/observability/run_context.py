"""The run and step a log record is about, as fields of its ``extra``.

``run_id`` and ``workflow_name`` inside a run; inside a step also ``step_id``,
``step_name`` and ``attempt``. Installed on pyworkflow's own logger
(:mod:`pyworkflow.utils.log`) when this module is imported (``import pyworkflow``
does), and used by :func:`~pyworkflow.observability.logging.get_logger` and the sinks
``configure_logging`` adds; never as a global loguru patcher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loguru import logger as _loguru

from pyworkflow.context.base import current_context, current_step_info
from pyworkflow.utils.log import add_record_patcher

if TYPE_CHECKING:
    from loguru import Logger, Record


def add_run_context(record: Record) -> None:
    """Fill ``record["extra"]`` with the current run and step (fields already bound on
    the record win)."""
    extra = record["extra"]
    ctx = current_context()
    if ctx is not None:
        extra.setdefault("run_id", ctx.run_id)
        extra.setdefault("workflow_name", ctx.workflow_name)
    info = current_step_info()
    if info is not None:
        extra.setdefault("step_id", info.step_id)
        extra.setdefault("step_name", info.step_name)
        extra.setdefault("attempt", info.attempt)


def with_run_context(base: Logger = _loguru) -> Logger:
    """``base`` with a patcher of its own that adds the run and step context."""
    return base.patch(add_run_context)


add_record_patcher(add_run_context)
