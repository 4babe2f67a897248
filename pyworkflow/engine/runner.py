"""A run's lifecycle on top of storage: create it, execute it, resume or recover it.

Runtimes decide *where* this happens (in-process, on a Celery worker); what happens is
defined here once. Every execution holds the run's lease; every write is fenced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from pyworkflow.core.config import get_config
from pyworkflow.core.exceptions import (
    HistoryCorruptedError,
    RunAlreadyExistsError,
    SequenceConflictError,
    SerializationError,
    StorageUnavailableError,
    WorkflowAlreadyRunningError,
    WorkflowError,
)
from pyworkflow.core.registry import require_workflow
from pyworkflow.core.workflow import WorkflowDefinition
from pyworkflow.engine import flow, history_cache
from pyworkflow.engine.context import LIVE
from pyworkflow.engine.events import workflow_interrupted, workflow_resumed
from pyworkflow.engine.executor import Outcome, execute_run, fail_unstarted
from pyworkflow.engine.log import EventLimits, is_storage_fault
from pyworkflow.engine.owners import owner_is_dead, process_owner
from pyworkflow.engine.recovery import backoff_delay, never_executed
from pyworkflow.engine.replay import History
from pyworkflow.engine.runs import RunRequest
from pyworkflow.observability import lifecycle
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import (
    Event,
    EventType,
    RunStatus,
    RunUpdate,
    WorkflowRun,
    utcnow,
)
from pyworkflow.utils.clock import timer_now
from pyworkflow.utils.log import logger

# Kept under their earlier names for callers of this module.
new_owner_id = process_owner
__all__ = ["never_executed", "new_owner_id", "owner_is_dead", "resume_run", "execute_new"]


async def connect(storage: StorageBackend) -> None:
    """Connect ``storage`` for a public entry point.

    Raises:
        StorageUnavailableError: storage cannot be reached (nothing was written).
    """
    try:
        await storage.connect()
    except Exception as exc:
        if not is_storage_fault(exc):
            raise
        raise StorageUnavailableError(f"storage cannot be reached: {exc}") from exc


async def store_new_run(
    storage: StorageBackend, run: WorkflowRun, started: Event, idempotency_key: str | None
) -> WorkflowRun:
    """Store a new run with its first event and return what storage holds (another run,
    when ``idempotency_key`` was taken first).

    A storage fault does not leave the caller guessing: when the write may or may not
    have landed (the connection dropped during the commit), the same create is sent
    again. Storage's answer to it is definite, also while the first write is still in
    flight on a stalled connection (the second waits on the first's row lock): stored
    now, or "exists" because the first landed. A read would not do: it can say "not
    found" before a stalled commit lands.

    Raises:
        StorageUnavailableError: storage did not answer within about a second and a half
            (with an idempotency key a retry of ``start()`` is always safe).
    """
    try:
        if idempotency_key is not None:
            existing = await storage.get_run_by_idempotency_key(idempotency_key)
            if existing is not None:
                return existing
        return _created(await storage.create_run(run, [started]), run, started)
    except Exception as exc:
        if not is_storage_fault(exc):
            raise
        failure = exc
    for attempt in range(1, 4):
        await asyncio.sleep(backoff_delay(attempt))
        try:
            try:
                return _created(await storage.create_run(run, [started]), run, started)
            except RunAlreadyExistsError:
                found = await storage.get_run(run.run_id)
                if found is not None and found.workflow_name == run.workflow_name:
                    return _created(found, run, started)  # the first write landed
                raise
        except Exception as exc:
            if not is_storage_fault(exc):
                raise
            failure = exc
    raise StorageUnavailableError(
        f"storing a run of workflow {run.workflow_name!r} failed and storage did not answer "
        f"whether it was stored ({failure}); retry start() with an idempotency_key to be safe"
    ) from failure


def _created(stored: WorkflowRun, run: WorkflowRun, started: Event) -> WorkflowRun:
    if stored.run_id == run.run_id:  # not another run holding the idempotency key
        lifecycle.events_committed(run.run_id, run.workflow_name, [started])
    return stored


async def keep_leases(
    storage: StorageBackend, run_ids: list[str], owner: str, lease_ttl: float
) -> None:
    """Renew the leases of runs executing in this process, and pass on cancellations
    requested from other processes (how those reach a run that never waits)."""
    await storage.renew_leases(run_ids, owner, utcnow() + timedelta(seconds=lease_ttl))
    for run_id in run_ids:
        ctx = LIVE.get(run_id)
        if ctx is not None and not ctx.cancel_requested:
            run = await storage.get_run(run_id)
            if run is not None and run.cancel_requested_at is not None:
                ctx.request_cancel(run.cancel_reason)


def event_limits() -> EventLimits:
    cfg = get_config()
    return EventLimits(cfg.event_soft_limit, cfg.event_hard_limit, cfg.event_warning_interval)


async def execute_new(
    storage: StorageBackend,
    run: WorkflowRun,
    request: RunRequest,
    on_child_created: Callable[[str], None] | None = None,
    log: list[Event] | None = None,
) -> Outcome:
    """Execute a run this process just created (it holds the lease; no replay needed).
    ``log``: the events it was created with, if the caller has them (see execute_run)."""
    history = History(run_id=run.run_id, last_sequence=run.last_sequence)
    history.receive_start_signals(request.signals)
    return await _admitted(
        storage,
        run,
        request.definition,
        None,
        request.args,
        request.kwargs,
        lambda: execute_run(
            on_child_created=on_child_created,
            run=run,
            definition=request.definition,
            history=history,
            storage=storage,
            limits=event_limits(),
            args=request.args,
            kwargs=request.kwargs,
            log=log,
        ),
    )


async def resume_run(
    storage: StorageBackend,
    run_id: str,
    *,
    owner: str,
    lease_ttl: float,
    recovery: bool = False,
    steal_from: str | None = None,
    raise_if_busy: bool = False,
    force: bool = False,
    on_child_created: Callable[[str], None] | None = None,
    dispatch_steps: bool = False,
    lease_held: bool = False,
) -> Outcome | None:
    """Take the run's lease, replay its history and continue it.

    Returns ``None`` when there is nothing to do here: the run is terminal, unknown, held
    by another live process (unless ``raise_if_busy``), or its code is not registered in
    this process. A suspended run whose wake-up time has not come stays suspended,
    unless ``force`` (something it waits for happened, e.g. its child run ended).
    ``lease_held``: ``owner`` took the lease in a write of its own just before (a step
    worker that recorded its round's last step goes on with the run in one write).
    """
    if lease_held:
        run = await storage.get_run(run_id)
        if run is None or run.status.is_terminal or run.lease_owner != owner:
            return None  # taken from us meanwhile (e.g. by a recovery sweep)
        definition = require_workflow(run.workflow_name)
        now = utcnow()
    else:
        run = await storage.get_run(run_id)
        if run is None or run.status.is_terminal:
            return None
        definition = require_workflow(run.workflow_name)
        now = utcnow()
        if steal_from is None and flow.is_flow_queued(run.lease_owner):
            steal_from = run.lease_owner  # waiting at a gate: whoever takes it asks again
        if not await storage.acquire_lease(
            run_id, owner, now + timedelta(seconds=lease_ttl), now, steal_from=steal_from
        ):
            if raise_if_busy:
                raise WorkflowAlreadyRunningError(f"run {run_id!r} is being executed elsewhere")
            return None
        run = await storage.get_run(run_id)  # re-read under the lease
        if run is None or run.status.is_terminal:
            await storage.release_lease(run_id, owner)
            return None
    early = run.wake_at is not None and run.wake_at > timer_now()  # (now: for leases)
    if run.status == RunStatus.SUSPENDED and early and not (recovery or force):
        # resume() before the due time does not end a sleep early.
        await storage.release_lease(run_id, owner)
        return Outcome(
            status=RunStatus.SUSPENDED,
            wake_at=run.wake_at,
            workflow_name=run.workflow_name,
            queue=run.queue,
        )
    try:
        events, history = await load_history(storage, run)
        args, kwargs = _arguments(run)
    except HistoryCorruptedError as exc:
        return await _park(storage, run, exc)
    first: list[tuple[EventType, dict[str, Any]]] = []
    changes: dict[str, Any] = {"status": RunStatus.RUNNING, "wake_at": None}
    if is_parked(run):
        changes["error"] = None  # resumed by an operator: the history reads fine now
    if recovery:
        attempt = run.recovery_attempts + 1
        reason = "the process executing this run stopped (worker lost)"
        first.append((EventType.WORKFLOW_INTERRUPTED, workflow_interrupted(reason, attempt)))
        changes["recovery_attempts"] = attempt
        if not run.recover_on_worker_loss or attempt > run.max_recovery_attempts:
            return await _fail_unrecoverable(storage, run, history, first, changes)
        history.mark_interrupted()  # step attempts dispatched before the crash are lost
    if not (run.status == RunStatus.PENDING and run.last_sequence <= 1):
        first.append((EventType.WORKFLOW_RESUMED, workflow_resumed()))  # (a queued run starts)
    woken = run.status == RunStatus.SUSPENDED and run.wake_at is not None and not early
    outcome = await _admitted(
        storage,
        run,
        definition,
        history.concurrency_key,
        args,
        kwargs,
        lambda: execute_run(
            run=run,
            definition=definition,
            history=history,
            storage=storage,
            due_at=run.wake_at if woken else None,
            limits=event_limits(),
            args=args,
            kwargs=kwargs,
            first_events=first,
            first_changes=changes,
            on_child_created=on_child_created,
            dispatch_steps=dispatch_steps,
            log=events,
        ),
        interrupted=[e for e in first if e[0] == EventType.WORKFLOW_INTERRUPTED],
        changes=changes,
    )
    outcome.workflow_name, outcome.queue = run.workflow_name, run.queue
    return outcome


async def _admitted(
    storage: StorageBackend,
    run: WorkflowRun,
    definition: WorkflowDefinition,
    history_key: str | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    execute: Callable[[], Awaitable[Outcome]],
    *,
    interrupted: Sequence[tuple[EventType, dict[str, Any]]] = (),
    changes: dict[str, Any] | None = None,
) -> Outcome:
    """Execute the run if its workflow's flow control lets it in now (engine.flow),
    else store it as waiting; either way give back its concurrency slot once it stops
    executing (suspended or ended) and pass on whose turn came."""
    admission = await flow.admit(storage, run, definition, history_key, args, kwargs, utcnow())
    if not admission.admitted:
        outcome = await _wait_at_gate(storage, run, admission, interrupted, changes or {})
        outcome.handoff += admission.handoff
        if outcome.status == RunStatus.PENDING and admission.waits_at is not None:
            outcome.handoff += await flow.recheck(storage, admission.waits_at, run.run_id, utcnow())
        return outcome
    outcome = await execute()
    outcome.handoff += admission.handoff
    if admission.gate is not None and outcome.status not in _STILL_EXECUTING:
        outcome.handoff += await flow.release(storage, admission.gate, run.run_id, utcnow())
    return outcome


# An execution that ends like this keeps its slot: its steps run on step workers (a
# dispatch round), or ownership was lost to another execution of the run (its slot).
_STILL_EXECUTING = (RunStatus.RUNNING, RunStatus.PENDING, None)


async def _wait_at_gate(
    storage: StorageBackend,
    run: WorkflowRun,
    admission: flow.Admission,
    interrupted: Sequence[tuple[EventType, dict[str, Any]]],
    changes: dict[str, Any],
) -> Outcome:
    """Store ``run`` as waiting at its gate: ``pending``, leased to the gate's queue
    owner until it is to be looked at again (a rate-limited start: its start time; a
    concurrency wait: the recheck interval, unless a holder hands it the slot first).
    A recovery's ``workflow.interrupted`` is recorded now (the crash happened, whatever
    the wait), so the in-flight steps it lost are known when the run goes on."""
    now = utcnow()
    if admission.queued_until is not None:
        owner, until = flow.QUEUED_RATE, admission.queued_until
    else:
        owner = flow.QUEUED_LIMIT
        until = now + timedelta(seconds=get_config().queue_recheck_interval)
    fields: dict[str, Any] = {
        "status": RunStatus.PENDING,
        "wake_at": admission.rated_at,
        "lease_owner": owner,
        "lease_expires_at": until,
        "updated_at": now,
    }
    events = []
    if interrupted:
        fields["recovery_attempts"] = changes.get("recovery_attempts", run.recovery_attempts)
        events = [
            Event(
                run_id=run.run_id,
                type=type_,
                data=data,
                sequence=run.last_sequence + 1 + i,
                timestamp=now,
            )
            for i, (type_, data) in enumerate(interrupted)
        ]
    try:
        await storage.append_events(
            run.run_id, events, expected_last_sequence=run.last_sequence, update=RunUpdate(fields)
        )
    except SequenceConflictError:
        return Outcome(status=None)  # another writer got there first: theirs now
    if events:
        lifecycle.events_committed(run.run_id, run.workflow_name, events)
    logger.debug(
        "run {} waits ({}) until {}",
        run.run_id,
        "rate limit" if admission.queued_until else "concurrency slot",
        until,
    )
    return Outcome(
        status=RunStatus.PENDING,
        queued_until=admission.queued_until,
        workflow_name=run.workflow_name,
        queue=run.queue,
    )


async def load_history(storage: StorageBackend, run: WorkflowRun) -> tuple[list[Event], History]:
    """The run's log and its fold: from this process's cache when it suspended here
    (completed with any newer events), else read from storage. Verified: the sequences
    run gap-free up to the run's last one, and every event folds.

    Raises:
        HistoryCorruptedError: the stored log cannot be replayed as it is.
    """
    cached = history_cache.take(storage, run.run_id)
    if cached is not None:
        last = cached.events[-1].sequence
        if last == run.last_sequence:
            return cached.events, cached.history
        if last < run.last_sequence:
            newer = await storage.get_events(run.run_id, after_sequence=last)
            _check_sequences(run, newer, first=last + 1)
            _fold(run.run_id, cached.history, newer)
            return cached.events + newer, cached.history
    events = await storage.get_events(run.run_id)
    _check_sequences(run, events, first=1)
    history = History(run_id=run.run_id)
    _fold(run.run_id, history, events)
    return events, history


def _arguments(run: WorkflowRun) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The run's decoded arguments (e.g. a pickle stored by an earlier version while
    ``allow_pickle`` is off cannot be: the run is parked until the setting allows it)."""
    try:
        return run.input_args, run.input_kwargs
    except SerializationError as exc:
        raise HistoryCorruptedError(run.run_id, 1, f"its arguments cannot be read: {exc}") from exc


def _check_sequences(run: WorkflowRun, events: list[Event], first: int) -> None:
    """Events are read in order and unique per sequence, so the ends and the count tell
    whether any is missing; only then is the gap looked for (for the message). A log
    longer than the run's record is not corrupt: a late writer appended meanwhile (the
    first fenced write of this execution finds out)."""
    if not events:
        if run.last_sequence < first:
            return
    elif (
        events[0].sequence == first
        and events[-1].sequence == first + len(events) - 1
        and events[-1].sequence >= run.last_sequence
    ):
        return
    expected = first
    for event in events:
        if event.sequence != expected:
            break
        expected += 1
    raise HistoryCorruptedError(
        run.run_id, expected, f"event {expected} is missing (the run's last is {run.last_sequence})"
    )


def _fold(run_id: str, history: History, events: list[Event]) -> None:
    try:
        for event in events:
            history.apply(event)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        reason = f"{event.type.value} event cannot be replayed ({type(exc).__name__}: {exc})"
        raise HistoryCorruptedError(run_id, event.sequence, reason) from exc


PARKED_PREFIX = "HistoryCorruptedError: "


def is_parked(run: WorkflowRun) -> bool:
    """A run set aside because its history cannot be replayed (see :func:`_park`)."""
    return run.status == RunStatus.SUSPENDED and (run.error or "").startswith(PARKED_PREFIX)


async def _park(storage: StorageBackend, run: WorkflowRun, error: HistoryCorruptedError) -> Outcome:
    """Set a run whose history cannot be replayed aside, not failed: suspended with no
    wake-up time and the reason in its error, so no timer or recovery takes it again;
    ``resume()`` tries again (after a repair, or with the code that knows a newer event)."""
    logger.error("run {} parked: {}", run.run_id, error)
    update = RunUpdate(
        {
            "status": RunStatus.SUSPENDED,
            "wake_at": None,
            "error": f"{PARKED_PREFIX}{error}",
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": utcnow(),
        }
    )
    try:
        await storage.append_events(
            run.run_id, [], expected_last_sequence=run.last_sequence, update=update
        )
    except SequenceConflictError:
        return Outcome(status=None)  # someone else wrote meanwhile: theirs to deal with
    return Outcome(status=RunStatus.SUSPENDED, error=error)


async def _fail_unrecoverable(
    storage: StorageBackend,
    run: WorkflowRun,
    history: History,
    first: list[tuple[EventType, dict[str, Any]]],
    changes: dict[str, Any],
) -> Outcome:
    if not run.recover_on_worker_loss:
        reason = "its process stopped and recover_on_worker_loss is disabled"
    else:
        reason = f"it exceeded max_recovery_attempts ({run.max_recovery_attempts})"
    error = WorkflowError(f"run {run.run_id!r} cannot be recovered: {reason}")
    return await fail_unstarted(storage, run, history, event_limits(), first, changes, error)
