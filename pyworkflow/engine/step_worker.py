"""Execute one dispatched step attempt outside its workflow's execution (a step worker).

The workflow's execution recorded ``step.started`` with ``dispatched: true``, the step's
encoded arguments and the *round*: the lease owner the run was handed to while its
steps run. Here the body runs, its outcome is appended to the run's log, and the caller
learns whether the round is complete (then it resumes the workflow).

Guarantees:

* The body runs at least once; its outcome is recorded exactly once. Every append is
  fenced on the sequence number read just before it, after checking that no one
  recorded this attempt meanwhile (a redelivered duplicate loses and discards its work).
* Steps of one round run in parallel; their appends race only with each other, so a
  lost race is simply retried on top of the newer log.
* While the body runs the round's lease is renewed; if every worker of a round dies,
  the lease expires and the recovery sweep resumes the run, which dispatches the lost
  attempts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from pyworkflow.context.base import WorkflowContext, reset_context, set_context
from pyworkflow.context.step_context import restore_step_context
from pyworkflow.core.config import get_config
from pyworkflow.core.exceptions import HistoryCorruptedError, SequenceConflictError
from pyworkflow.core.registry import find_workflow, require_step
from pyworkflow.core.step import StepDefinition
from pyworkflow.engine import events, history_cache
from pyworkflow.engine.attempts import run_attempts
from pyworkflow.engine.context import DispatchedStep
from pyworkflow.engine.events import Draft
from pyworkflow.engine.owners import OwnerKind, new_owner, owner_kind
from pyworkflow.engine.replay import History, StepRecord
from pyworkflow.engine.runner import load_history
from pyworkflow.observability import lifecycle
from pyworkflow.serialization import decode
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.payloads import PayloadLimit
from pyworkflow.storage.schemas import Event, EventType, RunUpdate, WorkflowRun, utcnow
from pyworkflow.utils.clock import timer_now
from pyworkflow.utils.log import logger, user_logger


@dataclass(slots=True)
class StepTaskResult:
    """What a step task did, and whether its run should now be resumed."""

    executed: bool  # the body ran here (False: a stale or duplicate delivery)
    round_done: bool  # no step of the round is in flight any more: resume the run
    # Who holds the run while the message resuming it waits in the queue (the resuming
    # worker takes the lease from it); the ``take_over`` owner when this process holds
    # the run now and goes on with it (its log is in this process's history cache).
    resume_from: str | None = None
    continue_here: bool = False
    # The run's workflow and queue, as read when the task began: where messages for the
    # run go next (no second read of the run to route them).
    workflow_name: str | None = None
    queue: str | None = None


async def execute_dispatched_step(
    storage: StorageBackend,
    run_id: str,
    op_id: str,
    round_owner: str,
    *,
    lease_ttl: float,
    take_over: str | None = None,
    runs_here: Callable[[WorkflowRun], bool] | None = None,
) -> StepTaskResult:
    """Run the dispatched attempt of ``op_id`` and record its outcome (see module doc).

    ``take_over``: the lease owner of this process, when it can go on with the workflow
    itself. The write recording the round's last step then hands the run's lease to it
    (``continue_here``), so the run continues without a message, a lease write or a
    read of its log; otherwise that write hands the lease to a queued holder for the
    message that resumes the run elsewhere. One write per step completion either way.
    ``runs_here``: whether this process may execute the run at all (a routed run goes on
    only on a worker consuming its queue); ``None``: any run.
    """
    run = await storage.get_run(run_id)
    if take_over is not None and run is not None and runs_here is not None:
        take_over = take_over if runs_here(run) else None  # its queue's workers go on with it
    # Held by the round, or by whom the round's last outcome handed it to (that write
    # landed but its answer was lost: a retry of this task finds it so).
    holders = {round_owner, _queued_holder(round_owner), take_over}
    holder_now = run.lease_owner if run is not None else None
    if run is None or run.status.is_terminal or holder_now is None or holder_now not in holders:
        return StepTaskResult(executed=False, round_done=False)  # the round is over
    try:
        log, history = await load_history(storage, run)
    except HistoryCorruptedError as exc:
        # Not this task's to judge: the round's lease runs out and the run's next
        # execution parks it with the reason.
        logger.error("step {} of run {} not run: {}", op_id, run_id, exc)
        return StepTaskResult(executed=False, round_done=False)
    record = history.steps.get(op_id)
    if record is None or not record.in_flight or record.round != round_owner:
        # Already recorded (a duplicate delivery): only make sure the run goes on.
        if not _round_done(history, round_owner):
            return StepTaskResult(executed=False, round_done=False)
        return await _round_over(storage, run, log, history, take_over, False)
    definition = require_step(record.name)
    if take_over is not None and find_workflow(run.workflow_name) is None:
        take_over = None  # this process cannot go on with the run: a worker that can will
    heartbeat = asyncio.ensure_future(_renew(storage, run_id, round_owner, lease_ttl))
    try:
        drafts = await _attempts(definition, run, record, op_id, round_owner, storage.payload_limit)
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
    appended = await _append(
        storage, run, op_id, round_owner, record.attempts, log, history, drafts, take_over
    )
    if appended is _NotWritten.GONE:
        return StepTaskResult(executed=True, round_done=False)
    if not _round_done(history, round_owner):
        if appended is not _NotWritten.ELSEWHERE:  # for a sibling of the round that runs here next
            history_cache.remember(storage, run_id, log, history)
        return StepTaskResult(executed=True, round_done=False)
    if appended is _NotWritten.ELSEWHERE:  # a duplicate recorded it first: the run goes on
        return await _round_over(storage, run, log, history, take_over, True)
    if appended == take_over:
        history_cache.remember(storage, run_id, log, history)
        return _done(run, True, resume_from=take_over, continue_here=True)
    return _done(run, True, resume_from=appended)


def _done(
    run: WorkflowRun, executed: bool, *, resume_from: str, continue_here: bool = False
) -> StepTaskResult:
    """The result of a task that saw its round end."""
    return StepTaskResult(
        executed,
        round_done=True,
        resume_from=resume_from,
        continue_here=continue_here,
        workflow_name=run.workflow_name,
        queue=run.queue,
    )


async def _round_over(
    storage: StorageBackend,
    run: WorkflowRun,
    log: list[Event],
    history: History,
    take_over: str | None,
    executed: bool,
) -> StepTaskResult:
    """The round's last step is recorded (by a task whose own hand-over may not have
    happened, or not been confirmed): hand the run from its current holder (the round,
    or the holder that hand-over chose) to ``take_over`` or to a queued holder."""
    run_id, holder_now = run.run_id, run.lease_owner
    assert holder_now is not None  # checked by the caller
    now = utcnow()
    round_owner = holder_now if owner_kind(holder_now) is OwnerKind.ROUND else None
    holder, expires = _next_holder(round_owner or holder_now, take_over, now)
    if await storage.acquire_lease(run_id, holder, expires, now, steal_from=holder_now):
        if holder == take_over:
            history_cache.remember(storage, run_id, log, history)
        return _done(run, executed, resume_from=holder, continue_here=holder == take_over)
    return _done(run, executed, resume_from=holder_now)


def _next_holder(round_owner: str, take_over: str | None, now: datetime) -> tuple[str, datetime]:
    """Who holds the run once its round is over, and until when: ``take_over`` for a
    lease TTL, or a queued holder for as long as a message may wait in a busy queue (a
    workflow message that waits longer than a lease is then not mistaken for a dead
    worker, and one that is lost is sent again without counting as a recovery)."""
    if take_over is not None:
        return take_over, now + timedelta(seconds=get_config().lease_ttl)
    return _queued_holder(round_owner), now + timedelta(seconds=get_config().dispatch_timeout)


def _queued_holder(round_owner: str) -> str:
    """The queued holder a round hands its run to (one per round: a retried hand-over
    recognises its own)."""
    if owner_kind(round_owner) is not OwnerKind.ROUND:
        return round_owner  # already handed over
    return new_owner(OwnerKind.QUEUED, of=round_owner.removeprefix("round:"))


async def _attempts(
    definition: StepDefinition,
    run: WorkflowRun,
    record: StepRecord,
    op_id: str,
    round_owner: str,
    limit: PayloadLimit,
) -> list[Draft]:
    """Run attempts until one succeeds, fails for good, or must wait to be retried; the
    events to append (a wait: the run dispatches the next attempt at ``retry_at``)."""
    input_ = record.input or {}
    args = decode(input_.get("args") or [])
    kwargs = decode(input_.get("kwargs") or {})
    restore_step_context(_step_context(run))
    recorder = _DraftRecorder(
        op_id, definition.name, record.attempts, round_owner, input_, queue=definition.queue
    )
    token = set_context(_StepWorkerContext(run))
    try:
        await run_attempts(
            definition,
            lambda: definition.func(*args, **kwargs),
            op_id,
            record.attempts,
            recorder,
            limit=limit,  # an oversize result is the step's failure, not a refused append
        )
    finally:
        reset_context(token)
    return recorder.drafts


class _StepWorkerContext(WorkflowContext):
    """What a step body sees of its run on a step worker (``get_context().run_id``, ...),
    as it would inline. Only a step runs here, so the workflow operations are those of
    code inside a step: ``sleep()`` is ``asyncio.sleep``, a nested step runs in place."""

    durable = True

    def __init__(self, run: WorkflowRun) -> None:
        self.run_id = run.run_id
        self.workflow_name = run.workflow_name

    @property
    def is_replaying(self) -> bool:
        return False

    async def run_step(
        self,
        definition: StepDefinition,  # noqa: ARG002 - the body runs through ``call``
        call: Callable[[], Awaitable[Any]],
        args: tuple[Any, ...] = (),  # noqa: ARG002
        kwargs: dict[str, Any] | None = None,  # noqa: ARG002
    ) -> Any:
        return await call()

    async def sleep(
        self,
        wake_at: datetime,
        delay: timedelta,  # noqa: ARG002 - nothing is recorded here
        name: str | None,  # noqa: ARG002
        *,
        until: bool = False,  # noqa: ARG002
    ) -> None:
        await asyncio.sleep(max(0.0, (wake_at - timer_now()).total_seconds()))

    def log(self, level: str, message: str) -> None:
        # Not an event: replay counts the workflow's own log events, and this step's
        # body never runs on replay. The worker's log gets it, with the run's id.
        user_logger.log(level.upper(), "[run {}] {}", self.run_id, message)


class _DraftRecorder:
    """Collects a dispatched step's events; they are appended when the attempts end."""

    def __init__(
        self,
        step_id: str,
        name: str,
        first: int,
        round_owner: str,
        step_input: dict[str, Any],
        queue: str | None = None,
    ) -> None:
        self.step_id, self.name, self.first, self.queue = step_id, name, first, queue
        self.round_owner, self.step_input = round_owner, step_input
        self.drafts: list[Draft] = []

    def started(self, attempt: int) -> None:
        if attempt != self.first:  # the workflow recorded the first one when it dispatched
            data = events.step_started(
                self.step_id,
                self.name,
                attempt,
                round_owner=self.round_owner,
                step_input=self.step_input,
                queue=self.queue,
            )
            self.drafts.append((EventType.STEP_STARTED, data))

    def record(self, type_: EventType, data: dict[str, Any]) -> None:
        self.drafts.append((type_, data))


def _step_context(run: WorkflowRun) -> Any:
    """The step context the workflow had set when it dispatched the step."""
    return None if run.context_payload is None else decode(json.loads(run.context_payload))


class _NotWritten(Enum):
    """What :func:`_append` returns when it wrote nothing."""

    ELSEWHERE = "another task recorded the attempt"
    GONE = "the run left the round"


async def _append(
    storage: StorageBackend,
    run: WorkflowRun,
    op_id: str,
    round_owner: str,
    attempt: int,
    log: list[Event],
    history: History,
    drafts: list[Draft],
    take_over: str | None,
) -> str | _NotWritten:
    """Append the attempt's events, fenced on the log as read before the body ran (an
    append that lost a race with a sibling reads what it missed and tries again on top).
    The same write sets who holds the run next: the round while siblings are in flight,
    else :func:`_next_holder`. Returns that holder, or why nothing was written."""
    run_id = run.run_id
    while True:
        # Are all siblings of the round recorded, once this attempt is? (Its own events
        # end the attempt: a result, a final failure, or a failure waiting for a retry.)
        last = not any(
            r.in_flight and r.round == round_owner
            for other, r in history.steps.items()
            if other != op_id
        )
        now = utcnow()
        if last:
            holder, expires = _next_holder(round_owner, take_over, now)
        else:  # siblings may still wait in the queue: the queue allowance again
            holder, expires = round_owner, now + timedelta(seconds=get_config().dispatch_timeout)
        seq = history.last_sequence
        events = [
            Event(run_id=run_id, type=type_, data=data, sequence=seq + i)
            for i, (type_, data) in enumerate(drafts, start=1)
        ]
        update = {"updated_at": now, "lease_owner": holder, "lease_expires_at": expires}
        try:
            await storage.append_events(
                run_id, events, expected_last_sequence=seq, update=RunUpdate(update)
            )
        except SequenceConflictError:
            # Someone wrote meanwhile: a sibling's outcome (try again on top of it), or
            # the run moved on without this round (drop the outcome).
            newer = await storage.get_events(run_id, after_sequence=seq)
            for event in newer:
                history.apply(event)
            log.extend(newer)
            now_stored = await storage.get_run(run_id)
            if (
                now_stored is None
                or now_stored.status.is_terminal
                or now_stored.lease_owner != round_owner
            ):
                logger.info("step {} of run {} finished after its round ended", op_id, run_id)
                return _NotWritten.GONE
            record = history.steps.get(op_id)
            if record is None or not record.in_flight or record.attempts != attempt:
                logger.info("step {} of run {} was recorded by another worker", op_id, run_id)
                return _NotWritten.ELSEWHERE
            continue
        for event in events:
            history.apply(event)
        log.extend(events)
        lifecycle.events_committed(run_id, run.workflow_name, events)
        return holder


async def steps_in_flight(
    storage: StorageBackend, run_id: str
) -> tuple[str, list[DispatchedStep]] | None:
    """The round holding ``run_id`` and its attempts no step worker recorded yet (None:
    no round holds it): what to send again when the messages of a dispatch may never
    have left (the dispatching execution's storage call failed after its write landed)."""
    run = await storage.get_run(run_id)
    owner = run.lease_owner if run is not None else None
    if run is None or run.status.is_terminal or owner is None:
        return None
    if owner_kind(owner) is not OwnerKind.ROUND:
        return None
    history = History.from_events(run_id, await storage.get_events(run_id))
    # The dispatching execution's span is gone: the steps' spans join the run's trace.
    steps = [
        DispatchedStep(run_id, op_id, record.name, record.attempts, record.queue, run.trace_context)
        for op_id, record in history.steps.items()
        if record.in_flight and record.round == owner
    ]
    return owner, steps


def _round_done(history: History, round_owner: str) -> bool:
    return not any(r.in_flight and r.round == round_owner for r in history.steps.values())


async def _renew(storage: StorageBackend, run_id: str, owner: str, lease_ttl: float) -> None:
    """Keep the round's lease alive while the body runs. The first renewal, a second in
    (a short step writes nothing but its outcome), shortens the queue allowance to the
    TTL, so a dead worker is noticed within one TTL; before that the worker registry
    notices (this process lists the run in its beats)."""
    await asyncio.sleep(min(1.0, lease_ttl / 3))
    while True:
        try:
            await storage.renew_leases([run_id], owner, utcnow() + timedelta(seconds=lease_ttl))
        except Exception:  # noqa: BLE001 - retried at the next beat
            logger.exception("renewing the lease of run {} failed", run_id)
        await asyncio.sleep(lease_ttl / 3)
