"""Run a workflow function over its history and store the outcome.

``execute_run`` is the one place where a run's execution starts and ends: it replays
the history, lets the first unrecorded operation run live, and writes the final
``workflow.completed`` / ``workflow.failed`` / ``workflow.suspended`` event together with
the run's new status in one append.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pyworkflow.context.base import reset_context, set_context
from pyworkflow.context.step_context import restore_step_context
from pyworkflow.core.config import get_config
from pyworkflow.core.exceptions import (
    CancellationError,
    ContinueAsNewSignal,
    NonDeterminismError,
    RunAlreadyExistsError,
    RunNotFoundError,
    SerializationError,
    StorageUnavailableError,
    SuspensionSignal,
    WorkflowTimeoutError,
)
from pyworkflow.core.workflow import WorkflowDefinition
from pyworkflow.engine import events, history_cache
from pyworkflow.engine.context import (
    LIVE,
    TERMINATE_PREFIX,
    DispatchedStep,
    RunContext,
    RunOptions,
    close_out_drafts,
)
from pyworkflow.engine.log import (
    EventLimits,
    OwnershipLost,
    RunGone,
    RunLog,
    StorageFault,
    is_storage_fault,
)
from pyworkflow.engine.owners import OwnerKind, new_owner
from pyworkflow.engine.replay import History
from pyworkflow.engine.runs import RunRequest, build_run, derived_run_id
from pyworkflow.observability import lifecycle, tracing
from pyworkflow.serialization import encode, encode_error
from pyworkflow.storage.base import SIGNALS, StorageBackend
from pyworkflow.storage.schemas import Event, EventType, HookStatus, RunStatus, WorkflowRun, utcnow
from pyworkflow.utils.clock import timer_now
from pyworkflow.utils.log import logger


@dataclass(slots=True)
class Outcome:
    """How one execution ended."""

    status: RunStatus | None  # None: ownership lost, nothing more was written
    wake_at: datetime | None = None
    error: BaseException | None = None
    next_run_id: str | None = None  # the run a continue_as_new created
    parent_run_id: str | None = None  # set when a child run ended: wake its parent
    cancelled_children: list[str] = field(default_factory=list)  # wake them to clean up
    # Steps recorded as dispatched: the runtime sends them to step workers. The run stays
    # 'running', leased to ``round_owner`` (renewed by those workers) until they finish.
    dispatched: list[DispatchedStep] = field(default_factory=list)
    round_owner: str | None = None
    # The run's workflow and broker queue, where known (set by ``resume_run``): a runtime
    # sending the run's next message routes it without reading the run again.
    workflow_name: str | None = None
    queue: str | None = None
    # Flow control (engine.flow): runs whose turn for a concurrency slot came (resume
    # them), and, for a run whose start a rate limit delayed, when to resume it.
    handoff: list[str] = field(default_factory=list)
    queued_until: datetime | None = None


_RELEASED = {"lease_owner": None, "lease_expires_at": None}


async def execute_run(
    *,
    run: WorkflowRun,
    definition: WorkflowDefinition,
    history: History,
    storage: StorageBackend,
    limits: EventLimits,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    first_events: list[tuple[EventType, dict[str, Any]]] = (),  # type: ignore[assignment]
    first_changes: dict[str, Any] | None = None,
    on_child_created: Callable[[str], None] | None = None,
    dispatch_steps: bool = False,
    log: list[Event] | None = None,
    due_at: datetime | None = None,
) -> Outcome:
    """Execute ``run`` until it completes, fails or suspends; persist the outcome.

    The caller must hold the run's lease. ``first_events``/``first_changes`` are written
    with the first flush (e.g. ``workflow.resumed`` and ``status=running``). ``log`` is
    the run's stored log the history was built from: extended with what this execution
    writes, it is cached if the run suspends (a later resume here skips the read). With
    ``dispatch_steps``, live steps (except ``force_local`` ones) are not run here but
    returned in ``Outcome.dispatched`` for step workers. ``due_at``: the wake-up time
    that woke the run (reported as timer lateness once it resumes).
    """
    options = RunOptions(
        limits=limits,
        context_class=definition.context_class,
        nesting_depth=run.nesting_depth,
        max_nesting_depth=get_config().max_nesting_depth,
        on_child_created=on_child_created,
        round_owner=new_owner(OwnerKind.ROUND) if dispatch_steps else None,
        due_at=due_at,
    )
    ctx = RunContext(
        run_id=run.run_id,
        workflow_name=run.workflow_name,
        history=history,
        storage=storage,
        options=options,
        stored_log=log,
    )
    if run.cancel_requested_at is not None:
        ctx.request_cancel(run.cancel_reason)
    for type_, data in first_events:
        ctx.record(type_, data, force=True)
    ctx.set_changes(**(first_changes or {}))
    # The attempt's span, current before the body's task is created (which, and every
    # task of its own asyncio.gather, inherits it); its parent is the run's stored context.
    with tracing.workflow_span(run.run_id, run.workflow_name, run.trace_context) as span:
        LIVE[run.run_id] = ctx
        try:
            if ctx.cancel_requested and (run.cancel_reason or "").startswith(TERMINATE_PREFIX):
                outcome = await _cancelled(ctx, CancellationError(reason=run.cancel_reason))
            else:
                outcome = await _execute(ctx, run, definition, storage, args, kwargs)
        finally:
            if LIVE.get(run.run_id) is ctx:
                del LIVE[run.run_id]
        _raise_lost(run, ctx.run_log.failure or ctx.fatal)
        span.ended(outcome.status, outcome.error)
        try:
            await _after_end(ctx, storage, run, outcome)
        except Exception as exc:
            if not is_storage_fault(exc):
                raise
            logger.warning("run {} ended, but tidying up after it failed: {}", run.run_id, exc)
    return outcome


def _raise_lost(run: WorkflowRun, reason: BaseException | None) -> None:
    """Tell the runtime why an execution stopped without an outcome, where it must act."""
    if isinstance(reason, RunGone):  # deleted meanwhile: the runtime says so, once
        raise RunNotFoundError(f"run {run.run_id!r} no longer exists") from reason
    if isinstance(reason, StorageFault):  # the run continues from storage later
        raise StorageUnavailableError(str(reason)) from reason.__cause__


async def _after_end(
    ctx: RunContext, storage: StorageBackend, run: WorkflowRun, outcome: Outcome
) -> None:
    """What follows a stored outcome: children to close, hooks to dispose, the cache."""
    if outcome.status in _ENDED:
        outcome.parent_run_id = run.parent_run_id
    if outcome.status is not None:
        outcome.cancelled_children += ctx.children_to_wake
    # Suspended, or handed to step workers (one of which may be this process): the next
    # execution here starts from the log in memory.
    waits = outcome.status == RunStatus.SUSPENDED or outcome.round_owner is not None
    if waits and ctx.run_log.stored is not None:
        history_cache.remember(storage, run.run_id, ctx.run_log.stored)
    if outcome.status in _ENDED:
        outcome.cancelled_children[:0] = await _close_children(ctx, storage, run)
    if outcome.status is not None and outcome.status.is_terminal:
        await _dispose_hooks(ctx.history, storage)


async def _dispose_hooks(history: History, storage: StorageBackend) -> None:
    """Close the hooks an ended run never consumed (its log says ``hook.disposed``):
    later deliveries are refused."""
    for _, record in history.open_hooks():
        await storage.update_hook(
            record.token_hash, expected=HookStatus.PENDING, status=HookStatus.DISPOSED
        )


async def _close_children(ctx: RunContext, storage: StorageBackend, run: WorkflowRun) -> list[str]:
    """Apply each open child's parent_close_policy now that this run has ended."""
    closed = []
    for child in ctx.open_children():
        if child.policy == "abandon":
            continue
        prefix = TERMINATE_PREFIX if child.policy == "terminate" else ""
        reason = f"{prefix}parent run {run.run_id!r} ended"
        if await storage.request_cancellation(child.child_run_id, reason, utcnow()):
            closed.append(child.child_run_id)
    return closed


_ENDED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


async def _execute(
    ctx: RunContext,
    run: WorkflowRun,
    definition: WorkflowDefinition,
    storage: StorageBackend,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Outcome:
    if run.deadline_at is not None and timer_now() >= run.deadline_at:
        return await fail_run(ctx, _timeout_error(run))
    try:
        try:
            result = await _drive(ctx, definition, args, kwargs, run.deadline_at)
        finally:
            ctx.mark_finished()
    except OwnershipLost:
        return Outcome(status=None)
    except SuspensionSignal:
        return await _suspend(ctx, run.deadline_at)
    except ContinueAsNewSignal as signal:
        return await _continue_as_new(ctx, run, definition, storage, signal)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure ends the run
        error = _primary_error(ctx, exc, run)
        # Only a failure of the workflow itself is undone: not an engine problem (the
        # code changed, the history is full) nor this execution losing storage.
        if (
            ctx.compensations
            and isinstance(error, Exception)
            and ctx.fatal is None
            and ctx.run_log.failure is None
        ):
            try:
                await _compensate(ctx)
            except OwnershipLost:
                return Outcome(status=None)
            except SuspensionSignal:  # a compensation waits for its retry, or a worker
                return await _suspend(ctx, None)
        if isinstance(error, CancellationError) and ctx.cancel_delivered:
            return await _cancelled(ctx, error)
        return await fail_run(ctx, error)
    return await _complete(ctx, result, run)


async def _compensate(ctx: RunContext) -> None:
    """Undo the run's completed compensable steps, newest first, each as a durable step
    of its own (recorded, retried with its policy, replayed like any step). Shielded: a
    cancellation arriving now does not stop them. A compensation that fails for good is
    logged and the others still run; the run then ends with its own error."""

    async def undo_all() -> None:
        token = set_context(ctx)
        ctx.shield_depth += 1
        try:
            for done in sorted(ctx.compensations, key=lambda c: c.position, reverse=True):
                undo = done.undo

                def call(undo: Any = undo, done: Any = done) -> Awaitable[Any]:
                    running: Awaitable[Any] = undo.func(done.result, *done.args, **done.kwargs)
                    return running

                try:
                    await ctx.run_step(undo, call, (done.result, *done.args), done.kwargs)
                except (SuspensionSignal, OwnershipLost):
                    raise
                except Exception as exc:  # noqa: BLE001 - the next compensation still runs
                    if ctx.fatal is not None:
                        raise
                    logger.warning(
                        "run {}: compensation {} failed for good: {}", ctx.run_id, undo.name, exc
                    )
        finally:
            ctx.shield_depth -= 1
            reset_context(token)

    ctx.finished = False  # it runs code again: a cancellation reaches it as a request
    try:
        await asyncio.ensure_future(undo_all())
    finally:
        ctx.mark_finished()


async def _drive(
    ctx: RunContext,
    definition: WorkflowDefinition,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    deadline: datetime | None,
) -> Any:
    async def body() -> Any:
        # A task of its own gives the run an isolated copy of the contextvars, which
        # child tasks (asyncio.gather) inherit.
        token = set_context(ctx)
        restore_step_context(None)  # only this run's own set_step_context calls count
        try:
            return await definition.func(*args, **kwargs)
        finally:
            reset_context(token)

    task = asyncio.ensure_future(body())
    timeout = None if deadline is None else max(0.0, (deadline - timer_now()).total_seconds())
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise WorkflowTimeoutError(
            f"workflow {definition.name!r} exceeded its max_duration {definition.max_duration}"
        )
    return task.result()


def _primary_error(ctx: RunContext, exc: BaseException, run: WorkflowRun) -> BaseException:
    # An engine-detected problem wins over whatever the user code turned it into.
    if ctx.fatal is not None and not isinstance(ctx.fatal, OwnershipLost):
        return ctx.fatal
    if isinstance(exc, WorkflowTimeoutError) and run.max_duration:
        return _timeout_error(run)
    return exc


def _timeout_error(run: WorkflowRun) -> WorkflowTimeoutError:
    return WorkflowTimeoutError(
        f"workflow {run.workflow_name!r} exceeded its max_duration {run.max_duration}"
    )


async def _settle(ctx: RunContext) -> None:
    """Let steps already running in sibling tasks finish (their results get recorded
    before the run's own suspended/completed/failed event), and start no new ones."""
    ctx.stop_new_operations()
    await asyncio.sleep(0)
    while ctx.inflight:
        await asyncio.wait(set(ctx.inflight))
        await asyncio.sleep(0)


async def _suspend(ctx: RunContext, deadline: datetime | None) -> Outcome:
    await _settle(ctx)
    if isinstance(ctx.fatal, OwnershipLost):
        return Outcome(status=None)
    if ctx.dispatched or ctx.waiting_rounds:
        return await _hand_to_step_workers(ctx)
    # Wake at the earliest timer, or at the max_duration deadline if that comes first
    # (the resumed run then fails with WorkflowTimeoutError).
    timers = ctx.wake_times + ([deadline] if deadline is not None else [])
    wake_at = min(timers) if timers else None
    reason = ctx.suspend_reasons[0] if ctx.suspend_reasons else "waiting"
    if deadline is not None and wake_at == deadline:
        reason = "max_duration deadline"
    ctx.record(EventType.WORKFLOW_SUSPENDED, events.workflow_suspended(reason, wake_at), force=True)
    try:
        await ctx.flush(status=RunStatus.SUSPENDED, wake_at=wake_at, **_RELEASED)
        if ctx.awaits_signal and await ctx.inbox_has_news():
            # Sent before the suspension was stored, the signal could not wake the run
            # (a sender wakes only a suspended run): the run is due now instead.
            wake_at = timer_now()
            await ctx.flush(wake_at=wake_at)
    except OwnershipLost:
        return Outcome(status=None)
    return Outcome(status=RunStatus.SUSPENDED, wake_at=wake_at)


async def _hand_to_step_workers(ctx: RunContext) -> Outcome:
    """Store the dispatched steps with the run still 'running', its lease handed to the
    round: the step workers renew it, the last one to finish resumes the run, and if
    they all die the lease expires and the recovery sweep takes over."""
    owner = ctx.options.round_owner if ctx.dispatched else sorted(ctx.waiting_rounds)[0]
    # Long enough for the step messages to wait in a busy queue; a step worker that
    # starts shortens it to the lease TTL and renews it while the body runs.
    expires = utcnow() + timedelta(seconds=get_config().dispatch_timeout)
    try:
        await ctx.flush(
            status=RunStatus.RUNNING, wake_at=None, lease_owner=owner, lease_expires_at=expires
        )
    except OwnershipLost:
        return Outcome(status=None)
    return Outcome(status=RunStatus.RUNNING, dispatched=list(ctx.dispatched), round_owner=owner)


async def _complete(ctx: RunContext, result: Any, run: WorkflowRun) -> Outcome:
    await _settle(ctx)  # steps the code started but never awaited still finish first
    if ctx.fatal is not None:
        return await fail_run(ctx, ctx.fatal)
    if ctx.dispatched or ctx.waiting_rounds:
        return await _hand_to_step_workers(ctx)  # ... wherever they run
    leftover = ctx.unconsumed_operation
    if leftover is not None:
        return await fail_run(ctx, NonDeterminismError(run.run_id, ctx.position, leftover, None))
    try:
        encoded = encode(result, where=f"result of workflow {run.workflow_name!r}")
    except SerializationError as exc:
        return await fail_run(ctx, exc)
    ctx.record_close_out("the run completed")
    ctx.record(EventType.WORKFLOW_COMPLETED, events.workflow_completed(encoded), force=True)
    try:
        await ctx.flush(
            status=RunStatus.COMPLETED,
            result_payload=json.dumps(encoded),
            completed_at=utcnow(),
            wake_at=None,
            **_RELEASED,
        )
    except OwnershipLost:
        return Outcome(status=None)
    except SerializationError as exc:  # the storage refused the result (e.g. too large)
        return await fail_run(ctx, exc)
    return Outcome(status=RunStatus.COMPLETED)


async def _continue_as_new(
    ctx: RunContext,
    run: WorkflowRun,
    definition: WorkflowDefinition,
    storage: StorageBackend,
    signal: ContinueAsNewSignal,
) -> Outcome:
    await _settle(ctx)
    if ctx.fatal is not None:
        return await fail_run(ctx, ctx.fatal)
    request = RunRequest(
        definition=definition,
        args=signal.args_,
        kwargs=signal.kwargs,
        run_id=derived_run_id(run.run_id, "continue_as_new"),
        tags=list(run.tags),
        parent_run_id=run.parent_run_id,
        nesting_depth=run.nesting_depth,
        continued_from_run_id=run.run_id,
        queue=run.queue,  # the chain stays on its queue (set at start, maybe by name)
    )
    try:
        new_run, started = build_run(request, owner=None, lease_ttl=0)
    except SerializationError as exc:
        return await fail_run(ctx, exc)
    try:
        with contextlib.suppress(RunAlreadyExistsError):  # created before a crash: adopt it
            await ctx.io(storage.create_run(new_run, [started]))
            lifecycle.events_committed(new_run.run_id, new_run.workflow_name, [started])
    except OwnershipLost:
        return Outcome(status=None)
    try:
        await _carry_signals(ctx, storage, new_run.run_id)
    except OwnershipLost:
        return Outcome(status=None)
    ctx.record_close_out("the run continued as a new run")
    ctx.record(
        EventType.WORKFLOW_CONTINUED_AS_NEW,
        events.workflow_continued_as_new(new_run.run_id),
        force=True,
    )
    try:
        await ctx.flush(
            status=RunStatus.CONTINUED_AS_NEW,
            continued_to_run_id=new_run.run_id,
            completed_at=utcnow(),
            wake_at=None,
            **_RELEASED,
        )
    except OwnershipLost:
        return Outcome(status=None)
    try:  # sent after the carry and before the run ended: carried too
        await _carry_signals(ctx, storage, new_run.run_id, inbox_only=True)
    except Exception as exc:  # noqa: BLE001 - the run has ended; say what may be left
        logger.warning(
            "run {} continued as {}; signals sent in that instant may be left in its inbox: {}",
            run.run_id,
            new_run.run_id,
            exc,
        )
    return Outcome(status=RunStatus.CONTINUED_AS_NEW, next_run_id=new_run.run_id)


async def _carry_signals(
    ctx: RunContext, storage: StorageBackend, new_run_id: str, *, inbox_only: bool = False
) -> None:
    """Send the signals this run received and never took on to the run continuing it,
    in order, each under an id derived from where it was (a repeat after a crash stores
    nothing twice): a loop that continues as new loses no message."""
    if SIGNALS not in storage.capabilities:
        return
    history = ctx.history
    if inbox_only:
        after = history.inbox_sequence
        pending = await storage.list_signals(ctx.run_id, after_sequence=after)
        carried = [(s.name, s.payload, f"carried.{ctx.run_id}.s{s.sequence}") for s in pending]
    else:
        await ctx.pull_signals()
        carried = [
            (s.name, json.dumps(s.payload), f"carried.{ctx.run_id}.{index}")
            for index, s in enumerate(history.signals)
            if not s.taken
        ]
    for name, payload, signal_id in carried:
        send = storage.send_signal(new_run_id, name, payload, signal_id=signal_id, now=utcnow())
        # Before the run ends, a failure stops this execution (it is retried); after, the
        # caller reports it: the run's outcome is already stored.
        await (send if inbox_only else ctx.io(send))


async def _cancelled(ctx: RunContext, error: CancellationError) -> Outcome:
    await _settle(ctx)
    if isinstance(ctx.fatal, OwnershipLost):
        return Outcome(status=None)
    ctx.record_close_out("the run was cancelled")
    ctx.record(
        EventType.WORKFLOW_CANCELLED,
        events.workflow_cancelled(error.reason, str(error)),
        force=True,
    )
    try:
        await ctx.flush(
            status=RunStatus.CANCELLED,
            error=f"CancellationError: {error.reason or error}",
            completed_at=utcnow(),
            wake_at=None,
            **_RELEASED,
        )
    except OwnershipLost:
        return Outcome(status=None)
    return Outcome(status=RunStatus.CANCELLED, error=error)


async def fail_run(ctx: RunContext, error: BaseException) -> Outcome:
    """Record ``workflow.failed`` for ``error`` and store the run ``failed``."""
    if isinstance(error, OwnershipLost):
        return Outcome(status=None)
    await _settle(ctx)
    if isinstance(ctx.fatal, OwnershipLost):
        return Outcome(status=None)
    ctx.record_close_out("the run failed")
    return await _store_failure(ctx.run_log, error)


async def fail_unstarted(
    storage: StorageBackend,
    run: WorkflowRun,
    history: History,
    limits: EventLimits,
    first: list[events.Draft],
    changes: dict[str, Any],
    error: BaseException,
) -> Outcome:
    """Fail a run without executing its code (e.g. it may not be recovered again):
    ``first`` events, what it leaves open, and ``workflow.failed``, in one append."""
    log = RunLog(
        run.run_id,
        storage,
        last_sequence=history.last_sequence,
        limits=limits,
        workflow_name=run.workflow_name,
    )
    for type_, data in [*first, *close_out_drafts(history, [], "the run failed")]:
        log.record(type_, data, force=True)
    outcome = await _store_failure(log, error, **changes)
    if outcome.status is not None:
        await _dispose_hooks(history, storage)
        outcome.parent_run_id = run.parent_run_id
    return outcome


async def _store_failure(log: RunLog, error: BaseException, **changes: Any) -> Outcome:
    try:
        return await _write_failure(log, error, changes)
    except SerializationError as refused:
        # The error itself cannot be stored (a huge message): store why instead, as an
        # error that was never raised (no traceback to carry).
        substitute = SerializationError(
            f"the run failed with an error too large to store: {refused}"
        )
        return await _write_failure(log, substitute, changes)


async def _write_failure(log: RunLog, error: BaseException, changes: dict[str, Any]) -> Outcome:
    encoded = encode_error(error)
    # The run's error field and the log line carry the message as stored (its size capped).
    message = f"{type(error).__name__}: {encoded['message']}"
    log.record(EventType.WORKFLOW_FAILED, events.workflow_failed(encoded), force=True)
    final = {"status": RunStatus.FAILED, "error": message, "completed_at": utcnow()}
    try:
        await log.flush(**{**changes, **final, "wake_at": None, **_RELEASED})
    except OwnershipLost:
        return Outcome(status=None)
    return Outcome(status=RunStatus.FAILED, error=error)
