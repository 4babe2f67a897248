"""Durable operations workflow code awaits: sleep, continue_as_new (hooks, cancellation
and children later)."""

from pyworkflow.primitives.cancellation import shield
from pyworkflow.primitives.child_workflow import ChildWorkflowHandle, start_child_workflow
from pyworkflow.primitives.continue_as_new import continue_as_new
from pyworkflow.primitives.hooks import TypedHook, define_hook, hook
from pyworkflow.primitives.sleep import sleep

__all__ = [
    "ChildWorkflowHandle",
    "TypedHook",
    "continue_as_new",
    "define_hook",
    "hook",
    "shield",
    "sleep",
    "start_child_workflow",
]
