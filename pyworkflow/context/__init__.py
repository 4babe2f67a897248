"""The per-run context carried by ``contextvars``: how primitives find the current run."""

from pyworkflow.context.base import (
    StepInfo,
    WorkflowContext,
    current_step,
    get_context,
    has_context,
    set_context,
)

__all__ = [
    "StepInfo",
    "WorkflowContext",
    "current_step",
    "get_context",
    "has_context",
    "set_context",
]
