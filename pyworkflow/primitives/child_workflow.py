"""Child workflows: a workflow starts another as a run of its own and (usually) waits.

The child's run id derives from the parent's operation id, so replaying the parent never
starts a child twice. Waiting is a durable suspension: the parent holds nothing while the
child runs, and the child's end wakes it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pyworkflow.context.base import current_context, current_step_info
from pyworkflow.core.exceptions import ChildWorkflowFailedError, RunNotFoundError
from pyworkflow.core.workflow import definition_of
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.queries import final_run
from pyworkflow.storage.schemas import RunStatus, WorkflowRun, utcnow

PARENT_CLOSE_POLICIES = ("terminate", "request_cancel", "abandon")


class ChildWorkflowHandle:
    """A started child run (``start_child_workflow(..., wait_for_completion=False)``)."""

    def __init__(
        self, child_run_id: str, op_id: str, parent_run_id: str, storage: StorageBackend
    ) -> None:
        self.child_run_id = child_run_id
        self._op_id = op_id
        self._parent_run_id = parent_run_id
        self._storage = storage

    def __repr__(self) -> str:
        return f"ChildWorkflowHandle(child_run_id={self.child_run_id!r})"

    async def _final(self) -> WorkflowRun:
        run = await final_run(self._storage, self.child_run_id)
        if run is None:
            raise RunNotFoundError(f"child run {self.child_run_id!r} not found")
        return run

    async def get_status(self) -> RunStatus:
        """The child's status (of the last run if it continued as new)."""
        return (await self._final()).status

    async def is_running(self) -> bool:
        return not (await self.get_status()).is_terminal

    async def is_terminal(self) -> bool:
        return (await self.get_status()).is_terminal

    async def cancel(self, reason: str | None = None) -> bool:
        """Ask the child to cancel (it sees ``CancellationError`` at its next durable
        operation, or is woken if it waits). ``False`` if it had ended without being
        asked (from the parent workflow, the same answer on every replay).

        From the parent workflow the child is woken when the parent's current execution
        ends (at once if it runs in this process); from elsewhere the request is picked
        up by the runtime's recovery pass within seconds; ``cancel_workflow(child_run_id)``
        wakes it at once.
        """
        ctx = current_context()
        if ctx is not None and ctx.run_id == self._parent_run_id and current_step_info() is None:
            return await ctx.cancel_child(self.child_run_id, reason)
        return await self._storage.request_cancellation(self.child_run_id, reason, utcnow())

    async def result(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109 - public API
        """The child's result. Inside the parent workflow this is a durable wait (the
        parent suspends); elsewhere it polls storage, up to ``timeout`` seconds.

        Raises:
            ChildWorkflowFailedError: the child failed or was cancelled.
            TimeoutError: ``timeout`` passed first (outside workflows only).
        """
        ctx = current_context()
        if ctx is not None and ctx.run_id == self._parent_run_id and current_step_info() is None:
            return await ctx.wait_child(self._op_id)
        async with asyncio.timeout(timeout):
            while True:
                run = await self._final()
                if run.status == RunStatus.COMPLETED:
                    return run.result
                if run.status.is_terminal:
                    raise ChildWorkflowFailedError(
                        f"child workflow run {run.run_id!r} ended {run.status.value}: {run.error}",
                        child_run_id=run.run_id,
                        status=run.status.value,
                        error=run.error,
                    )
                await asyncio.sleep(0.05)


async def start_child_workflow(
    workflow: Any,
    *args: Any,
    wait_for_completion: bool = True,
    parent_close_policy: str = "terminate",
    **kwargs: Any,
) -> Any:
    """Start ``workflow`` as a child of the running workflow.

    Returns the child's result (``wait_for_completion=True``) or a
    :class:`ChildWorkflowHandle`. The child records ``parent_run_id`` and runs as a run of
    its own (its own history, retries and timers).

    Raises:
        ChildWorkflowFailedError: the child failed or was cancelled (when waiting).
        MaxNestingDepthError: the child would exceed ``max_nesting_depth``.
        ValueError: unknown ``parent_close_policy``.
        RuntimeError: called outside a workflow or inside a step.
    """
    if parent_close_policy not in PARENT_CLOSE_POLICIES:
        raise ValueError(
            f"parent_close_policy must be one of {', '.join(PARENT_CLOSE_POLICIES)}, "
            f"not {parent_close_policy!r}"
        )
    ctx = current_context()
    if ctx is None or current_step_info() is not None:
        raise RuntimeError("start_child_workflow() can only be called in workflow code")
    definition = definition_of(workflow)
    if not ctx.durable:
        if not wait_for_completion:
            raise RuntimeError("a transient workflow can only run children it waits for")
        return await definition.func(*args, **kwargs)  # part of the transient parent
    op_id, child_run_id = await ctx.start_child(definition, args, kwargs, parent_close_policy)
    if wait_for_completion:
        return await ctx.wait_child(op_id)
    return ChildWorkflowHandle(child_run_id, op_id, ctx.run_id, ctx.storage)
