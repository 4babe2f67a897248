"""The step attempt loop: run attempts until one succeeds, fails for good, or must wait.

One loop for every place a step body runs: inline in a durable run
(:class:`~pyworkflow.engine.context.RunContext`), on a step worker
(:mod:`pyworkflow.engine.step_worker`), and in a transient run. The loop records what
happens through an :class:`AttemptRecorder` and returns a :class:`StepOutcome`; the caller
decides what that means (flush and return, raise, suspend until ``retry_at``, append).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pyworkflow.context.base import StepInfo, current_context, current_step
from pyworkflow.core.exceptions import (
    FatalError,
    PayloadTooLargeError,
    RetryableError,
    SerializationError,
    StepTimeoutError,
)
from pyworkflow.core.retry import retry_after_seconds, retry_delay_seconds
from pyworkflow.core.step import StepDefinition
from pyworkflow.engine import events
from pyworkflow.engine.log import check_storable
from pyworkflow.observability import lifecycle, tracing
from pyworkflow.serialization import encode, encode_error
from pyworkflow.storage.payloads import PayloadLimit
from pyworkflow.storage.schemas import EventType
from pyworkflow.utils.clock import timer_now
from pyworkflow.utils.log import logger


class AttemptRecorder(Protocol):
    """Where the loop records a step's events (a run's log, a worker's drafts, nowhere)."""

    def started(self, attempt: int) -> None:
        """Attempt ``attempt`` is about to run (record ``step.started`` if needed)."""

    def record(self, type_: EventType, data: dict[str, Any]) -> None:
        """Record an outcome event (failed, retrying, completed, cancelled)."""


class NoRecorder:
    """Records nothing (transient runs have no event log)."""

    def started(self, attempt: int) -> None:
        pass

    def record(self, type_: EventType, data: dict[str, Any]) -> None:
        pass


NO_RECORDER = NoRecorder()


@dataclass(slots=True)
class StepOutcome:
    """How the loop ended: ``error`` (final failure), ``retry_at`` (the next attempt must
    wait until then), or neither (success: ``result``, and ``encoded`` when durable)."""

    attempt: int
    result: Any = None
    encoded: Any = None
    error: Exception | None = None
    retry_at: datetime | None = None


async def run_attempts(
    definition: StepDefinition,
    call: Callable[[], Awaitable[Any]],
    step_id: str,
    attempt: int,
    recorder: AttemptRecorder,
    *,
    durable: bool = True,
    limit: PayloadLimit | None = None,
) -> StepOutcome:
    """Run attempts of one step call, starting with attempt number ``attempt``.

    A retry delay of 0 retries at once. A positive delay ends the loop with ``retry_at``
    when ``durable`` (the caller waits durably), else sleeps in memory and goes on.

    A durable result is encoded here, and checked against ``limit`` (what storage
    accepts) before its ``step.completed`` is recorded: a result storage would refuse is
    this attempt's failure, recorded like any exception the body raised. Found only when
    the log is flushed, it would be refused with every event buffered beside it (those of
    sibling steps under ``asyncio.gather``) and be nobody's step failure. A result that
    cannot be encoded fails the step for good; one over the limit
    (:class:`PayloadTooLargeError`) is retried per the step's policy, as the next attempt
    may return less.
    """
    name = definition.name
    while True:
        recorder.started(attempt)
        token = current_step.set(StepInfo(step_id, name, attempt))
        began = time.perf_counter()
        try:
            with tracing.step_span(step_id, name, attempt):
                result = await run_attempt(call, definition.timeout, name, attempt)
                completed = _completion(step_id, name, attempt, result, limit) if durable else None
        except asyncio.CancelledError:
            _ended(step_id, name, attempt, "cancelled", began)
            reason = "the attempt was cancelled while running"
            recorder.record(
                EventType.STEP_CANCELLED, events.step_cancelled(step_id, name, attempt, reason)
            )
            raise
        except Exception as exc:  # noqa: BLE001 - every user failure is recorded
            _ended(step_id, name, attempt, "failed", began)
            delay = retry_delay_for(definition, exc, attempt)
            retry_at = None if delay is None else timer_now() + timedelta(seconds=delay)
            _record_failure(recorder, step_id, name, attempt, exc, delay, retry_at)
            if delay is None or retry_at is None:
                return StepOutcome(attempt, error=exc)
            if not durable:  # no log to commit: said here (a durable run says it on commit)
                logger.warning(
                    "step {} attempt {} failed ({}); attempt {} in {}s",
                    name,
                    attempt,
                    exc,
                    attempt + 1,
                    delay,
                )
            attempt += 1
            if delay > 0:
                if durable:
                    return StepOutcome(attempt, retry_at=retry_at)
                await asyncio.sleep(delay)
            continue
        finally:
            current_step.reset(token)
        _ended(step_id, name, attempt, "completed", began)
        if completed is None:
            return StepOutcome(attempt, result=result)
        recorder.record(EventType.STEP_COMPLETED, completed)
        return StepOutcome(attempt, result=result, encoded=completed["result"])


def _ended(step_id: str, name: str, attempt: int, status: str, began: float) -> None:
    if not lifecycle.observed():
        return  # nobody listens (no metrics): nothing to build
    ctx = current_context()
    run = lifecycle.RunRef(ctx.run_id, ctx.workflow_name) if ctx is not None else None
    if run is not None:
        seconds = time.perf_counter() - began
        lifecycle.step_attempt_ended(
            lifecycle.StepAttempt(run, step_id, name, attempt, status, seconds)
        )


def _completion(
    step_id: str, name: str, attempt: int, result: Any, limit: PayloadLimit | None
) -> dict[str, Any]:
    """The ``step.completed`` payload of ``result``.

    Raises:
        SerializationError: ``result`` cannot be encoded, or holds ``NaN``/``Infinity``.
        PayloadTooLargeError: the payload is over ``limit``.
    """
    what = f"result of step {name!r} ({step_id})"
    data = events.step_completed(step_id, name, attempt, encode(result, where=what))
    if limit is not None:
        check_storable(data, what, limit)
    return data


def _record_failure(
    recorder: AttemptRecorder,
    step_id: str,
    name: str,
    attempt: int,
    exc: Exception,
    delay: float | None,
    retry_at: datetime | None,
) -> None:
    """Record a failed attempt."""
    error = encode_error(exc)
    recorder.record(
        EventType.STEP_FAILED,
        events.step_failed(
            step_id, name, attempt, error, fatal=never_retried(exc), will_retry=delay is not None
        ),
    )
    if delay is not None and retry_at is not None:
        recorder.record(
            EventType.STEP_RETRYING,
            events.step_retrying(step_id, name, attempt + 1, retry_at, delay),
        )


async def run_attempt(
    call: Callable[[], Awaitable[Any]], limit: float | None, name: str, attempt: int
) -> Any:
    """One attempt of a step body, bounded by the step's ``timeout`` (``limit``)."""
    if limit is None:
        return await call()
    try:
        async with asyncio.timeout(limit) as scope:
            return await call()
    except TimeoutError:
        if scope.expired():
            raise StepTimeoutError(
                f"step {name!r} attempt {attempt} exceeded its timeout of {limit:g}s"
            ) from None
        raise


def never_retried(exc: Exception) -> bool:
    """Whether ``exc`` fails its step for good whatever the retry policy: a
    ``FatalError``, or a value that can never be stored (not encodable, ``NaN``). A
    :class:`PayloadTooLargeError` is retried: the next attempt may produce less."""
    if isinstance(exc, PayloadTooLargeError):
        return False
    return isinstance(exc, FatalError | SerializationError)


def retry_delay_for(definition: StepDefinition, exc: Exception, attempt: int) -> float | None:
    """Seconds until the next attempt, or None when the failure is final."""
    if never_retried(exc) or attempt > definition.max_retries:
        return None
    if isinstance(exc, RetryableError) and exc.retry_after is not None:
        try:
            return retry_after_seconds(exc.retry_after)
        except (ValueError, TypeError):
            logger.warning("ignoring invalid retry_after {!r}", exc.retry_after)
    return retry_delay_seconds(definition.retry_delay, attempt)
