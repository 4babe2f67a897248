"""``set_query_handler``: let callers read a run's state while it runs.

::

    @workflow()
    async def cart() -> list[str]:
        items: list[str] = []
        set_query_handler("items", lambda: list(items))
        while True:
            ...

``query_workflow(run_id, "items")`` answers from the run's replayed state: a process with
the workflow's code replays the history (running no step, writing nothing) and calls the
handler. A handler must only read: it may run many times, in any process, and what it
changes is never recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyworkflow.context.base import current_context, current_step_info
from pyworkflow.utils.names import check_name


def check_query_name(name: object) -> str:
    """``name`` if it is a valid query name.

    Raises:
        ValueError: it is not 1-100 letters, digits, ``_ . : -``.
    """
    return check_name(name, "query name")


def set_query_handler(name: str, handler: Callable[..., Any]) -> None:
    """Answer query ``name`` with ``handler(*args)`` (a function or coroutine function
    returning a JSON value). Registering a name again replaces its handler. Not recorded:
    call it in workflow code on every execution path that should answer (typically at
    the top of the workflow).

    Raises:
        ValueError: ``name`` is not a valid name.
        TypeError: ``handler`` is not callable.
        RuntimeError: called outside a workflow or inside a step.
    """
    check_query_name(name)
    if not callable(handler):
        raise TypeError(f"set_query_handler({name!r}) needs a callable, not {handler!r}")
    ctx = current_context()
    if ctx is None or current_step_info() is not None:
        raise RuntimeError("set_query_handler() can only be called in workflow code")
    ctx.set_query_handler(name, handler)


__all__ = ["check_query_name", "set_query_handler"]
