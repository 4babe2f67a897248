"""The interface primitives use to reach the current run, and the ContextVars holding it.

Only this module reads the private ``_current`` ContextVar; everything else calls
:func:`current_context` / :func:`current_step_info` (or ``get_context``/``has_context``),
and only the engine installs a context (``set_context``/``reset_context``, and
``current_step.set`` around a step attempt).

``sleep()``, ``@step`` wrappers and logging call this small interface; the engine
implements it. Primitives therefore know nothing of storage, replay or runtimes (the
same split as a user-facing workflow API over its worker-side instance).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyworkflow.core.step import StepDefinition


@dataclass(frozen=True, slots=True)
class StepInfo:
    """Identity of the step attempt running in the current task (for logs and guards)."""

    step_id: str
    step_name: str
    attempt: int


class WorkflowContext(ABC):
    """What a running workflow exposes to the code it calls."""

    run_id: str
    workflow_name: str
    durable: bool
    storage: Any = None  # the run's StorageBackend (None for transient runs)
    shield_depth: int = 0  # > 0 inside ``async with shield():``

    @property
    @abstractmethod
    def is_replaying(self) -> bool:
        """True while recorded operations are being replayed from the log."""

    @abstractmethod
    async def run_step(
        self,
        definition: StepDefinition,
        call: Callable[[], Awaitable[Any]],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        """Run (or replay) one step call; ``call`` runs the user's body once.

        ``args``/``kwargs`` are what ``definition.func`` is called with: a runtime that
        executes steps elsewhere records them instead of calling ``call``."""

    @abstractmethod
    async def sleep(
        self, wake_at: datetime, delay: timedelta, name: str | None, *, until: bool = False
    ) -> None:
        """Durably wait until ``wake_at`` (``delay`` is the requested length, for records;
        ``until``: the code named the time, not a length)."""

    def patched(self, patch_id: str) -> bool:  # noqa: ARG002 - every id: the new path
        """Whether this run takes the new path of change ``patch_id`` (a run with no
        history to stay compatible with always does)."""
        return True

    @abstractmethod
    def log(self, level: str, message: str) -> None:
        """Record a ``log.<level>`` event once (never again on replay)."""

    async def set_step_context(self, value: Any) -> None:  # noqa: B027 - transient: no record
        """Durably record a new step context (a no-op where nothing is recorded)."""

    async def wait_hook(
        self,
        name: str,
        expires_in: float | None,
        on_created: Callable[[str], Awaitable[Any]] | None,
        schema: str | None,
    ) -> Any:
        """Durably wait for a hook payload (JSON value); raise HookExpiredError on expiry."""
        raise NotImplementedError("hooks need a durable run")

    def set_query_handler(self, name: str, handler: Callable[..., Any]) -> None:
        """Register the handler answering query ``name`` for this execution (kept in
        memory only: a query replays the run to register it again)."""
        vars(self).setdefault("query_handlers", {})[name] = handler

    async def wait_signal(self, name: str, seconds: float | None) -> Any:
        """Durably wait for the next signal ``name`` (its JSON payload); raise
        SignalTimeoutError once ``seconds`` pass without one."""
        raise NotImplementedError("signals need a durable run")

    async def start_child(
        self, definition: Any, args: tuple[Any, ...], kwargs: dict[str, Any], policy: str
    ) -> tuple[str, str]:
        """Create (or on replay find) a child run; return ``(operation id, child run id)``."""
        raise NotImplementedError("child workflows need a durable parent run")

    async def wait_child(self, op_id: str) -> Any:
        """Durably wait for the child started as ``op_id``; its result, or raise."""
        raise NotImplementedError("child workflows need a durable parent run")

    async def cancel_child(self, child_run_id: str, reason: str | None) -> bool:
        """Ask a child run to cancel; ``False`` if it already ended."""
        raise NotImplementedError("child workflows need a durable parent run")


_current: ContextVar[WorkflowContext | None] = ContextVar("pyworkflow_context", default=None)
current_step: ContextVar[StepInfo | None] = ContextVar("pyworkflow_step", default=None)


def current_context() -> WorkflowContext | None:
    """The context of the workflow run executing in this task, or ``None`` outside a run.

    Also set inside the run's steps (when they execute in the workflow's task); use
    :func:`current_step_info` to tell workflow code from step code.
    """
    return _current.get()


def current_step_info() -> StepInfo | None:
    """The step attempt executing in this task (id, name, attempt), or ``None`` outside
    a step."""
    return current_step.get()


def get_context() -> WorkflowContext:
    """The context of the workflow run executing in this task.

    Raises:
        RuntimeError: called outside a workflow (:func:`current_context` returns ``None``
            there instead).
    """
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("no workflow is running in this task (get_context outside a workflow)")
    return ctx


def has_context() -> bool:
    """True inside a workflow run."""
    return _current.get() is not None


def set_context(ctx: WorkflowContext | None) -> Token[WorkflowContext | None]:
    """Install ``ctx`` for the current task (the engine does this; returns a reset token)."""
    return _current.set(ctx)


def reset_context(token: Token[WorkflowContext | None]) -> None:
    _current.reset(token)
