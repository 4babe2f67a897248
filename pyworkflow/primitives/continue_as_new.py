"""``continue_as_new()``: end this run and start a fresh one with a short history.

Long-running loops (polling, agent loops, subscriptions) would otherwise grow one event
log forever. The new run is linked both ways (``continued_from_run_id`` /
``continued_to_run_id``); :func:`pyworkflow.get_workflow_chain` walks the links.
"""

from __future__ import annotations

from typing import Any, NoReturn

from pyworkflow.context.base import current_context, current_step_info
from pyworkflow.core.exceptions import ContinueAsNewSignal


def continue_as_new(*args: Any, **kwargs: Any) -> NoReturn:
    """End the current run as ``continued_as_new`` and start the same workflow again with
    ``args``/``kwargs``. Works called plainly or awaited (it raises either way).

    Raises:
        RuntimeError: called outside a workflow, or inside a step.
    """
    if current_context() is None:
        raise RuntimeError("continue_as_new() can only be called inside a workflow")
    if current_step_info() is not None:
        raise RuntimeError("continue_as_new() cannot be called inside a step")
    raise ContinueAsNewSignal(args, kwargs)
