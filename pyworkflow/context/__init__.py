"""The per-run context carried by ``contextvars``: how primitives find the current run."""

from pyworkflow.context.base import (
    StepInfo,
    WorkflowContext,
    current_context,
    current_step,
    current_step_info,
    get_context,
    has_context,
    set_context,
)

__all__ = [
    "StepInfo",
    "WorkflowContext",
    "current_context",
    "current_step",
    "current_step_info",
    "get_context",
    "has_context",
    "set_context",
]
