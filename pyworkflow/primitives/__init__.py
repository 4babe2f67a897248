"""Durable operations workflow code calls: sleep, hooks, children, cancellation,
continue_as_new, signals, and patched() for changing code under runs in flight."""

from pyworkflow.primitives.cancellation import shield
from pyworkflow.primitives.child_workflow import ChildWorkflowHandle, start_child_workflow
from pyworkflow.primitives.continue_as_new import continue_as_new
from pyworkflow.primitives.hooks import TypedHook, define_hook, hook
from pyworkflow.primitives.patching import patched
from pyworkflow.primitives.queries import set_query_handler
from pyworkflow.primitives.signals import define_signal, wait_for_signal
from pyworkflow.primitives.sleep import sleep

__all__ = [
    "ChildWorkflowHandle",
    "TypedHook",
    "continue_as_new",
    "define_hook",
    "define_signal",
    "hook",
    "patched",
    "set_query_handler",
    "shield",
    "sleep",
    "start_child_workflow",
    "wait_for_signal",
]
