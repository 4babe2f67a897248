"""Durable operations workflow code calls: sleep, hooks, children, cancellation,
continue_as_new, and patched() for changing code under runs in flight."""

from pyworkflow.primitives.cancellation import shield
from pyworkflow.primitives.child_workflow import ChildWorkflowHandle, start_child_workflow
from pyworkflow.primitives.continue_as_new import continue_as_new
from pyworkflow.primitives.hooks import TypedHook, define_hook, hook
from pyworkflow.primitives.patching import patched
from pyworkflow.primitives.sleep import sleep

__all__ = [
    "ChildWorkflowHandle",
    "TypedHook",
    "continue_as_new",
    "define_hook",
    "hook",
    "patched",
    "shield",
    "sleep",
    "start_child_workflow",
]
