"""``@workflow``: deterministic orchestration code whose every durable operation is
recorded in the run's event log."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar, overload

from pyworkflow.core.exceptions import DefinitionError
from pyworkflow.core.queues import validate_queue
from pyworkflow.core.registry import register_workflow
from pyworkflow.utils.duration import parse_duration

P = ParamSpec("P")
R = TypeVar("R")

MAX_TAGS = 3


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    """A workflow's identity and options."""

    name: str
    func: Callable[..., Awaitable[Any]]
    durable: bool | None = None
    max_duration: str | None = None
    max_duration_seconds: float | None = None
    tags: tuple[str, ...] = ()
    recover_on_worker_loss: bool | None = None
    max_recovery_attempts: int | None = None
    context_class: type | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None  # None: the runtime's default workflow queue


def _validate_tags(
    tags: list[str] | tuple[str, ...] | None,
    owner: str,
    error: type[ValueError] = ValueError,
) -> tuple[str, ...]:
    # ``error``: DefinitionError for a decorator option, plain ValueError for start(tags=).
    if tags is None:
        return ()
    if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
        raise error(f"{owner}: tags must be a list of strings")
    if len(tags) > MAX_TAGS:
        raise error(f"{owner}: at most {MAX_TAGS} tags are allowed, got {len(tags)}")
    return tuple(tags)


def _duration_text(
    value: str | int | float | timedelta | None, owner: str
) -> tuple[str | None, float | None]:
    if value is None:
        return None, None
    try:
        seconds = parse_duration(value).total_seconds()
    except (ValueError, TypeError) as exc:
        raise DefinitionError(f"{owner}: invalid max_duration {value!r}: {exc}") from None
    if seconds <= 0:
        raise DefinitionError(f"{owner}: max_duration must be positive")
    return (value if isinstance(value, str) else f"{seconds}s"), seconds


@overload
def workflow(func: Callable[P, Awaitable[R]], /) -> Callable[P, Awaitable[R]]: ...


@overload
def workflow(
    func: None = None,
    /,
    *,
    name: str | None = None,
    durable: bool | None = None,
    max_duration: str | int | float | timedelta | None = None,
    tags: list[str] | None = None,
    recover_on_worker_loss: bool | None = None,
    max_recovery_attempts: int | None = None,
    context_class: type | None = None,
    queue: str | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]: ...


def workflow(
    func: Callable[P, Awaitable[R]] | None = None,
    /,
    *,
    name: str | None = None,
    durable: bool | None = None,
    max_duration: str | int | float | timedelta | None = None,
    tags: list[str] | None = None,
    recover_on_worker_loss: bool | None = None,
    max_recovery_attempts: int | None = None,
    context_class: type | None = None,
    queue: str | None = None,
) -> Any:
    """Register an ``async`` function as a workflow. Works as ``@workflow`` and ``@workflow()``.

    Args:
        name: unique workflow name (default: the function name); stored with each run.
        durable: ``False`` runs without an event log (retries and sleeps in memory);
            ``None`` uses the configured ``default_durable``.
        max_duration: limit for the whole run (e.g. ``"1h"``); past it the run fails with
            :class:`~pyworkflow.core.exceptions.WorkflowTimeoutError`.
        tags: up to 3 strings stored on every run.
        recover_on_worker_loss: resume runs whose process died mid-execution (default True).
        max_recovery_attempts: how many such recoveries before the run fails (default 3).
        context_class: the step-context model this workflow uses.
        queue: the broker queue of this workflow's messages under the Celery runtime
            (default ``pyworkflow.workflows``); stored with each run, so whoever sends
            them later (scheduler, CLI, webhook receiver) needs no code. Workers take it
            with ``-Q NAME`` / ``pyworkflow worker --queues NAME``.

    Calling the decorated function directly just runs its body; use ``start()`` to run
    it durably.

    Raises:
        TypeError: the decorated object is not an ``async def`` function.
        DefinitionError: an option is invalid (the message names it), or the name is
            already registered by another function.
    """

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@workflow needs an 'async def' function, got {fn!r}")
        wf_name = name or fn.__name__
        owner = f"workflow {wf_name!r}"
        text, seconds = _duration_text(max_duration, owner)
        if max_recovery_attempts is not None and max_recovery_attempts < 0:
            raise DefinitionError(f"{owner}: max_recovery_attempts must be >= 0")
        wf_queue = validate_queue(queue, owner, DefinitionError)
        definition = WorkflowDefinition(
            name=wf_name,
            func=fn,
            durable=durable,
            max_duration=text,
            max_duration_seconds=seconds,
            tags=_validate_tags(tags, owner, DefinitionError),
            recover_on_worker_loss=recover_on_worker_loss,
            max_recovery_attempts=max_recovery_attempts,
            context_class=context_class,
            queue=wf_queue,
        )
        register_workflow(definition)

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return await fn(*args, **kwargs)

        wrapper.__workflow__ = definition  # type: ignore[attr-defined]
        return wrapper

    if func is not None:
        return decorate(func)
    return decorate


def definition_of(target: Any) -> WorkflowDefinition:
    """The :class:`WorkflowDefinition` behind a decorated function or a registered name.

    Raises:
        WorkflowNotFoundError: ``target`` is a name nobody registered.
        TypeError: ``target`` is a function that is not decorated with ``@workflow``.
    """
    from pyworkflow.core.registry import require_workflow

    if isinstance(target, str):
        return require_workflow(target)
    definition = getattr(target, "__workflow__", None)
    if isinstance(definition, WorkflowDefinition):
        return definition
    raise TypeError(
        f"{getattr(target, '__name__', target)!r} is not a workflow: decorate it with @workflow"
    )
