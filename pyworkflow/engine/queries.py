"""Answering queries: a run's current state, read by replaying its history.

``set_query_handler(name, fn)`` in workflow code registers ``fn`` on the execution's
context. To answer ``query_workflow(run_id, name, *args)``, a process with the workflow's
code replays the run's history in a replay-only context (see
:mod:`pyworkflow.engine.verify`: recorded operations return their outcomes, nothing
executes and nothing is written, the first live action stops the replay), then calls the
handler the replay registered: its closure sees the workflow's variables as they are at
the end of the recorded history.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from pyworkflow.core.exceptions import (
    CancellationError,
    ContinueAsNewSignal,
    QueryFailedError,
    QueryNotFoundError,
    RunNotFoundError,
    SuspensionSignal,
    WorkflowNotFoundError,
)
from pyworkflow.core.registry import find_workflow
from pyworkflow.engine.context import ReplayStop
from pyworkflow.engine.replay import History
from pyworkflow.engine.verify import replay_context, run_body
from pyworkflow.storage.base import StorageBackend


async def answer_query(storage: StorageBackend, run_id: str, name: str, args: list[Any]) -> Any:
    """The JSON value the run's handler ``name`` returns for ``args``, answered here.

    Raises:
        RunNotFoundError: no such run.
        WorkflowNotFoundError: its workflow is not registered in this process.
        QueryNotFoundError: the replayed run registered no handler ``name``.
        QueryFailedError: the replay or the handler failed (the message says how), or the
            answer is not a JSON value.
    """
    run = await storage.get_run(run_id)
    if run is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    definition = find_workflow(run.workflow_name)
    if definition is None:
        raise WorkflowNotFoundError(
            f"workflow {run.workflow_name!r} is not registered in this process"
        )
    events = await storage.get_events(run_id)
    ctx = replay_context(run, History.from_events(run_id, events), definition)
    try:
        await run_body(ctx, definition.func, run.input_args, run.input_kwargs)
    except (ReplayStop, SuspensionSignal, ContinueAsNewSignal, CancellationError):
        pass  # the end of what the history settles: the state to answer from
    except Exception:  # noqa: BLE001 - the run failed there too, or the code changed
        if ctx.fatal is not None:
            raise QueryFailedError(
                f"run {run_id!r} cannot be replayed by this code: {ctx.fatal}"
            ) from None
    handler = ctx.query_handlers.get(name)
    if handler is None:
        known = ", ".join(sorted(ctx.query_handlers)) or "none"
        raise QueryNotFoundError(
            f"run {run_id!r} ({run.workflow_name}) has no query {name!r} (it has: {known})"
        )
    try:
        answer = handler(*args)
        if inspect.isawaitable(answer):
            answer = await answer
    except Exception as exc:  # noqa: BLE001 - the handler's own error, said to the caller
        raise QueryFailedError(
            f"query {name!r} of run {run_id!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    try:
        return json.loads(json.dumps(answer, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise QueryFailedError(
            f"query {name!r} of run {run_id!r} answered a value that is not JSON: {exc}"
        ) from None


__all__ = ["answer_query"]
