"""``@step`` and the class form :class:`Step`: isolated, retryable units of work.

Inside a workflow a step call goes through the current run's context, which records it
in the event log (or returns its recorded outcome on replay). Outside any workflow a step
is an ordinary coroutine function.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, ParamSpec, TypeVar, overload

from pyworkflow.context.base import current_context, current_step_info
from pyworkflow.core.exceptions import DefinitionError
from pyworkflow.core.queues import check_priority, validate_queue
from pyworkflow.core.registry import register_step
from pyworkflow.core.retry import RetryDelay, validate_retry_delay
from pyworkflow.utils.duration import duration_seconds

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class StepDefinition:
    """A step's identity and policy, shared by every call of it."""

    name: str
    func: Callable[..., Awaitable[Any]]
    max_retries: int = 3
    retry_delay: RetryDelay = "exponential"
    timeout: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    force_local: bool = False
    queue: str | None = None  # None: the runtime's default step queue
    # What undoes a completed call (``compensate=``), called as ``undo(result, *args,
    # **kwargs)`` when the run fails or is cancelled: a step of its own.
    compensation: StepDefinition | None = None
    priority: int | None = None  # broker priority of its messages (0-9, higher first)


def _compensation(undo: Any, of: StepDefinition) -> StepDefinition:
    """The step that runs ``undo`` for ``of``: ``undo``'s own when it is a ``@step``
    (dispatched like any step), else one named ``<step>.compensate`` with ``of``'s retry
    policy, run in the workflow's process (workers look steps up by name; this one is
    no registered step)."""
    own = getattr(undo, "__step__", None)
    if isinstance(own, StepDefinition):
        return own
    if not inspect.iscoroutinefunction(undo):
        raise DefinitionError(
            f"step {of.name!r}: compensate= needs an 'async def' function or a @step, got {undo!r}"
        )
    return StepDefinition(
        name=f"{of.name}.compensate",
        func=undo,
        max_retries=of.max_retries,
        retry_delay=of.retry_delay,
        timeout=of.timeout,
        force_local=True,
    )


def _make_definition(
    func: Callable[..., Awaitable[Any]],
    *,
    name: str | None,
    max_retries: int,
    retry_delay: RetryDelay,
    timeout: str | int | float | timedelta | None,
    metadata: dict[str, Any] | None,
    force_local: bool,
    queue: str | None = None,
    compensate: Callable[..., Awaitable[Any]] | None = None,
    priority: int | None = None,
) -> StepDefinition:
    step_name: str = name or getattr(func, "__name__", None) or type(func).__name__
    owner = f"step {step_name!r}"
    if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
        raise DefinitionError(f"{owner}: max_retries must be an integer >= 0")
    try:
        validate_retry_delay(retry_delay)
        seconds = None if timeout is None else duration_seconds(timeout)
    except ValueError as exc:  # a TypeError (value of an unsupported type) stays one
        raise DefinitionError(f"{owner}: {exc}") from None
    if seconds is not None and seconds <= 0:
        raise DefinitionError(f"{owner}: timeout must be positive")
    step_queue = validate_queue(queue, owner, DefinitionError)
    if step_queue is not None and force_local:
        raise DefinitionError(
            f"{owner}: queue={step_queue!r} and force_local=True contradict each other "
            "(force_local runs the step in the workflow's process)"
        )
    definition = StepDefinition(
        name=step_name,
        func=func,
        max_retries=max_retries,
        retry_delay=retry_delay,
        timeout=seconds,
        metadata=dict(metadata or {}),
        force_local=force_local,
        queue=step_queue,
        priority=check_priority(priority, owner),
    )
    if compensate is None:
        return definition
    return dataclasses.replace(definition, compensation=_compensation(compensate, definition))


async def call_step(
    definition: StepDefinition,
    body: Callable[[], Awaitable[Any]],
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
) -> Any:
    """Run one call of a step: durably inside a workflow, plainly outside (or when nested
    inside another step, where it is part of the outer step's attempt)."""
    ctx = current_context()
    if ctx is None or current_step_info() is not None:
        return await body()
    return await ctx.run_step(definition, body, args, kwargs)


@overload
def step(func: Callable[P, Awaitable[R]], /) -> Callable[P, Awaitable[R]]: ...


@overload
def step(
    func: None = None,
    /,
    *,
    name: str | None = None,
    max_retries: int = 3,
    retry_delay: RetryDelay = "exponential",
    timeout: str | int | float | timedelta | None = None,
    metadata: dict[str, Any] | None = None,
    force_local: bool = False,
    queue: str | None = None,
    compensate: Callable[..., Awaitable[Any]] | None = None,
    priority: int | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]: ...


def step(
    func: Callable[P, Awaitable[R]] | None = None,
    /,
    *,
    name: str | None = None,
    max_retries: int = 3,
    retry_delay: RetryDelay = "exponential",
    timeout: str | int | float | timedelta | None = None,
    metadata: dict[str, Any] | None = None,
    force_local: bool = False,
    queue: str | None = None,
    compensate: Callable[..., Awaitable[Any]] | None = None,
    priority: int | None = None,
) -> Any:
    """Make an ``async`` function a durable step. Works as ``@step`` and ``@step(...)``.

    Args:
        name: unique step name (default: the function name).
        max_retries: retries after the first attempt.
        retry_delay: ``"exponential"`` (1, 2, 4, ... s, capped at 300), ``"fixed"`` (60 s),
            a duration (``"5s"``, seconds, ``timedelta``) or a list of seconds per attempt.
        timeout: limit for one attempt (seconds or a duration string); exceeding it raises
            :class:`~pyworkflow.core.exceptions.StepTimeoutError`, which is retried.
        metadata: free-form data kept on the definition.
        force_local: always run in the workflow's process (matters on distributed runtimes).
        queue: the broker queue this step's attempts are dispatched to under the Celery
            runtime (default ``pyworkflow.steps``), e.g. ``"gpu"`` for workers started
            with ``-Q gpu``. Ignored where steps run inline.
        compensate: what undoes a completed call (a saga): if the run later fails or is
            cancelled, ``await compensate(result, *args, **kwargs)`` runs durably for each
            completed call, newest first, retried with this step's policy (an ``async
            def``, run in the workflow's process, or a ``@step`` of its own).
        priority: 0-9, higher first: the broker priority of this step's messages under
            the Celery runtime with ``celery_priorities`` on (see docs/flow-control.md).

    Raises:
        TypeError: the decorated object is not an ``async def`` function.
        DefinitionError: an option is invalid (the message names it), or the name is
            already registered by another function.
    """

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@step needs an 'async def' function, got {fn!r}")
        definition = _make_definition(
            fn,
            name=name,
            max_retries=max_retries,
            retry_delay=retry_delay,
            timeout=timeout,
            metadata=metadata,
            force_local=force_local,
            queue=queue,
            compensate=compensate,
            priority=priority,
        )
        register_step(definition)

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            result: R = await call_step(definition, lambda: fn(*args, **kwargs), args, kwargs)
            return result

        wrapper.__step__ = definition  # type: ignore[attr-defined]
        return wrapper

    if func is not None:
        return decorate(func)
    return decorate


class Step:
    """Class form of a step: subclass, set options as class attributes, implement
    ``async def execute(self, ...)``, then call an instance: ``await MyStep()(x)``.

    Class attributes: ``name`` (default: class name), ``max_retries``, ``retry_delay``,
    ``timeout``, ``metadata``, ``force_local``, ``queue``, ``priority``, ``compensate``
    (an ``async`` function, or a ``@step``).
    """

    name: ClassVar[str | None] = None
    max_retries: ClassVar[int] = 3
    retry_delay: ClassVar[RetryDelay] = "exponential"
    timeout: ClassVar[str | int | float | timedelta | None] = None
    metadata: ClassVar[dict[str, Any] | None] = None
    force_local: ClassVar[bool] = False
    queue: ClassVar[str | None] = None
    priority: ClassVar[int | None] = None
    compensate: ClassVar[Callable[..., Awaitable[Any]] | None] = None
    __step__: ClassVar[StepDefinition]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not inspect.iscoroutinefunction(cls.__dict__.get("execute", cls.execute)):
            raise TypeError(f"{cls.__name__}.execute must be an 'async def' method")
        cls.__step__ = _make_definition(
            cls.execute,
            name=cls.name or cls.__name__,
            max_retries=cls.max_retries,
            retry_delay=cls.retry_delay,
            timeout=cls.timeout,
            metadata=cls.metadata,
            force_local=cls.force_local,
            queue=cls.queue,
            compensate=cls.compensate,
            priority=cls.priority,
        )
        register_step(cls.__step__)

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # The instance travels with the arguments: a worker calls execute(self, *args).
        return await call_step(
            type(self).__step__, lambda: self.execute(*args, **kwargs), (self, *args), kwargs
        )
