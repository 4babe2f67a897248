"""Transient (``durable=False``) execution: no event log; retries and sleeps in memory.

The run is visible through ``get_workflow_run`` while this process lives, and is lost
with it: that is the trade transient mode makes for speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from pyworkflow.context.base import WorkflowContext, reset_context, set_context
from pyworkflow.core.exceptions import ContinueAsNewSignal
from pyworkflow.core.step import StepDefinition
from pyworkflow.engine.attempts import NO_RECORDER, run_attempts
from pyworkflow.observability import tracing
from pyworkflow.storage.schemas import RunStatus
from pyworkflow.utils.clock import timer_now
from pyworkflow.utils.log import user_logger


class TransientContext(WorkflowContext):
    """Runs steps with their retry policy and sleeps with ``asyncio.sleep``."""

    durable = False

    def __init__(self, run_id: str, workflow_name: str) -> None:
        self.run_id = run_id
        self.workflow_name = workflow_name
        self._counters: dict[str, int] = {}

    @property
    def is_replaying(self) -> bool:
        return False

    async def run_step(
        self,
        definition: StepDefinition,
        call: Callable[[], Awaitable[Any]],
        args: tuple[Any, ...] = (),  # noqa: ARG002 - runs here, through ``call``
        kwargs: dict[str, Any] | None = None,  # noqa: ARG002
    ) -> Any:
        count = self._counters.get(definition.name, 0) + 1
        self._counters[definition.name] = count
        step_id = f"step:{definition.name}#{count}"
        outcome = await run_attempts(definition, call, step_id, 1, NO_RECORDER, durable=False)
        if outcome.error is not None:
            raise outcome.error
        return outcome.result

    async def sleep(
        self,
        wake_at: datetime,
        delay: timedelta,  # noqa: ARG002 - nothing is recorded here
        name: str | None,  # noqa: ARG002
        *,
        until: bool = False,  # noqa: ARG002
    ) -> None:
        await asyncio.sleep(max(0.0, (wake_at - timer_now()).total_seconds()))

    def log(self, level: str, message: str) -> None:
        user_logger.log(level.upper(), message)


async def run_transient(
    ctx: TransientContext,
    func: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    trace_context: str | None = None,
) -> Any:
    """Run ``func`` with ``ctx`` installed, in a task of its own (isolated contextvars),
    in a ``workflow`` span whose parent is ``trace_context`` (the run's)."""

    async def body() -> Any:
        token = set_context(ctx)
        call_args, call_kwargs = args, kwargs
        try:
            while True:
                try:
                    return await func(*call_args, **call_kwargs)
                except ContinueAsNewSignal as signal:  # no history to shorten: loop
                    call_args, call_kwargs = signal.args_, signal.kwargs
        finally:
            reset_context(token)

    with tracing.workflow_span(ctx.run_id, ctx.workflow_name, trace_context) as span:
        try:
            result = await asyncio.ensure_future(body())
        except Exception as exc:
            span.ended(RunStatus.FAILED, exc)
            raise
        span.ended(RunStatus.COMPLETED)
        return result
