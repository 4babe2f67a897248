"""Querying runs: ``query_workflow(run_id, name, *args)`` reads a run's state while it runs.

The answer comes from a process with the workflow's code, which replays the run's
history (running no step, writing nothing; see :mod:`pyworkflow.engine.queries`): this
process when the workflow is registered here, else, under the Celery runtime, a worker,
asked over the broker with a reply queue of its own (no result backend needed).
"""

from __future__ import annotations

import asyncio
from typing import Any

from pyworkflow.core.config import discover_workflows, get_config, get_storage, resolve_storage
from pyworkflow.core.exceptions import RunNotFoundError, WorkflowNotFoundError
from pyworkflow.core.registry import find_workflow
from pyworkflow.engine.queries import answer_query
from pyworkflow.primitives.queries import check_query_name
from pyworkflow.runtime import get_runtime
from pyworkflow.storage.base import StorageBackend


async def query_workflow(
    run_id: str,
    name: str,
    *args: Any,
    timeout: float = 10.0,  # noqa: ASYNC109 - part of the public API
    storage: StorageBackend | str | None = None,
) -> Any:
    """The answer of the run's query handler ``name`` (``set_query_handler``) to ``args``
    (JSON values), from the run's state at the end of its recorded history.

    Raises:
        RunNotFoundError: no such run.
        QueryNotFoundError: the run registers no handler ``name``.
        QueryFailedError: the handler raised, answered something that is not JSON, or the
            code here cannot replay the run.
        WorkflowNotFoundError: no process can answer: the workflow is not registered
            here and the runtime has no workers to ask (the local runtime).
        TimeoutError: no answer within ``timeout`` seconds (a worker was asked and did
            not reply: none consumes the run's queue, or all are busy).
        ValueError: ``name`` is not a valid query name.
    """
    check_query_name(name)
    backend = get_storage() if storage is None else resolve_storage(storage)
    await backend.connect()
    run = await backend.get_run(run_id)
    if run is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    if find_workflow(run.workflow_name) is None:
        discover_workflows()
    if find_workflow(run.workflow_name) is not None:
        try:
            async with asyncio.timeout(timeout):
                return await answer_query(backend, run_id, name, list(args))
        except TimeoutError:
            raise TimeoutError(f"query {name!r} of run {run_id!r} took over {timeout:g}s") from None
    runtime = get_runtime(get_config().default_runtime)
    ask = getattr(runtime, "query", None)
    if ask is None:
        raise WorkflowNotFoundError(
            f"workflow {run.workflow_name!r} is not registered in this process, and "
            "the local runtime has no workers to ask: import its module here "
            "(--module / configure(modules=[...])) to answer queries"
        )
    return await ask(run, name, list(args), timeout)  # bounded by the timeout itself


__all__ = ["query_workflow"]
