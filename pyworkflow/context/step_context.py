"""Step context: values the workflow sets and its steps read (tenant, user, trace ids).

Subclass :class:`StepContext` (a frozen Pydantic model), declare it with
``@workflow(context_class=MyCtx)``, call ``await set_step_context(MyCtx(...))`` in the
workflow, and read it in steps with ``get_step_context()``. Each set is recorded in the
event log (``step_context.set``) and stored on the run, so replay and remote workers see
the same values. Inside a step the context is read-only.
"""

from __future__ import annotations

from contextvars import ContextVar

from pydantic import BaseModel, ConfigDict

from pyworkflow.context.base import current_context, current_step_info


class StepContext(BaseModel):
    """Base class for step-context models (immutable once created)."""

    model_config = ConfigDict(frozen=True)


_step_context: ContextVar[StepContext | None] = ContextVar("pyworkflow_step_context", default=None)


def get_step_context() -> StepContext:
    """The step context set by the running workflow.

    Raises:
        RuntimeError: no step context has been set in this run.
    """
    value = _step_context.get()
    if value is None:
        raise RuntimeError("no step context is set: call 'await set_step_context(...)' first")
    return value


def has_step_context() -> bool:
    """True when the running workflow has set a step context."""
    return _step_context.get() is not None


async def set_step_context(value: StepContext) -> None:
    """Set the context steps of this run will read (durably recorded).

    Raises:
        RuntimeError: called inside a step (the context is read-only there).
        TypeError: ``value`` is not a :class:`StepContext`, or not the workflow's
            declared ``context_class``.
    """
    if current_step_info() is not None:
        raise RuntimeError("the step context is read-only inside steps")
    if not isinstance(value, StepContext):
        raise TypeError(f"step context must be a StepContext model, not {type(value).__name__}")
    ctx = current_context()
    if ctx is not None:
        await ctx.set_step_context(value)
    _step_context.set(value)


def restore_step_context(value: StepContext | None) -> None:
    """Install a stored context (the engine does this for steps run outside the workflow
    task, e.g. on a remote worker)."""
    _step_context.set(value)
