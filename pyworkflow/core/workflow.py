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
from pyworkflow.core.queues import check_priority, validate_queue
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
    # Flow control (see pyworkflow.engine.flow): at most ``concurrency_limit`` runs per
    # ``concurrency_key(*args, **kwargs)`` executing at once; at most ``rate.count``
    # starts per ``rate.period`` seconds (``rate_limit`` as written); the broker priority
    # of the run's messages (0-9, higher first).
    concurrency_limit: int | None = None
    concurrency_key: Callable[..., Any] | None = None
    rate_limit: str | None = None
    rate: Rate | None = None
    priority: int | None = None


@dataclass(frozen=True, slots=True)
class Rate:
    """A start rate limit: at most ``count`` starts in any ``period`` seconds."""

    count: int
    period: float


_RATE_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_rate(value: str, owner: str) -> Rate:
    """``"100/m"`` (units s, m, h, d) or ``"5/30s"`` (any duration) as a :class:`Rate`.

    Raises:
        DefinitionError: the text is not such a rate (the message shows the forms).
    """
    count_text, sep, per = str(value).partition("/")
    problem = f"{owner}: invalid rate_limit {value!r}: write it as '100/m' or '5/30s'"
    if not sep or not count_text.strip().isdigit() or int(count_text) <= 0:
        raise DefinitionError(problem)
    per = per.strip()
    period = _RATE_UNITS.get(per)
    if period is None:
        try:
            period = parse_duration(per).total_seconds()
        except (ValueError, TypeError):
            raise DefinitionError(problem) from None
    if period <= 0:
        raise DefinitionError(problem)
    return Rate(int(count_text), period)


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
    concurrency_limit: int | None = None,
    concurrency_key: Callable[..., Any] | None = None,
    rate_limit: str | None = None,
    priority: int | None = None,
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
    concurrency_limit: int | None = None,
    concurrency_key: Callable[..., Any] | None = None,
    rate_limit: str | None = None,
    priority: int | None = None,
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
        concurrency_limit: at most this many runs execute at once (per
            ``concurrency_key``), across every process sharing the storage; the others
            wait ``pending`` in the order they asked. A sleeping or waiting run holds no
            slot; a crashed holder's slot frees when its lease expires.
        concurrency_key: ``fn(*args, **kwargs) -> str`` called with a run's arguments
            when it starts: runs with different keys have separate limits (one
            customer's runs do not hold up another's). Default: one limit for the
            workflow.
        rate_limit: at most this many starts per period, e.g. ``"100/m"`` or
            ``"5/30s"``; starts beyond it are delayed (the run waits ``pending``), never
            refused.
        priority: 0-9, higher first: the broker priority of this workflow's messages
            under the Celery runtime with ``celery_priorities`` on (see
            docs/flow-control.md).

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
        if concurrency_limit is not None and (
            isinstance(concurrency_limit, bool)
            or not isinstance(concurrency_limit, int)
            or concurrency_limit < 1
        ):
            raise DefinitionError(f"{owner}: concurrency_limit must be an int >= 1")
        if concurrency_key is not None and not callable(concurrency_key):
            raise DefinitionError(f"{owner}: concurrency_key must be a callable")
        if concurrency_key is not None and concurrency_limit is None:
            raise DefinitionError(f"{owner}: concurrency_key needs a concurrency_limit")
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
            concurrency_limit=concurrency_limit,
            concurrency_key=concurrency_key,
            rate_limit=rate_limit,
            rate=None if rate_limit is None else parse_rate(rate_limit, owner),
            priority=check_priority(priority, owner),
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
