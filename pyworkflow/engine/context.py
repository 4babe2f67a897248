"""The engine's implementation of :class:`WorkflowContext` for durable runs.

A ``RunContext`` sits between workflow code and storage: it assigns operation ids,
answers recorded operations from the :class:`History`, runs live ones, buffers their
events and flushes them in one fenced append per step (the step's result is committed
before the workflow moves past it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pyworkflow.context.base import WorkflowContext, current_step_info
from pyworkflow.core.exceptions import (
    CancellationError,
    ChildWorkflowFailedError,
    EventLimitExceededError,
    HookExpiredError,
    MaxNestingDepthError,
    NonDeterminismError,
    RunAlreadyExistsError,
    SerializationError,
    SignalTimeoutError,
    SuspensionSignal,
)
from pyworkflow.core.step import StepDefinition
from pyworkflow.engine import events
from pyworkflow.engine.attempts import run_attempts
from pyworkflow.engine.events import CANCEL_OP_PREFIX
from pyworkflow.engine.log import (
    EventLimits,
    OwnershipLost,
    RunLog,
    StorageFault,
    check_storable,
    is_storage_fault,
)
from pyworkflow.engine.replay import ChildRecord, History, HookHistory, SignalHistory, SignalWait
from pyworkflow.engine.runs import RunRequest, build_run, derived_run_id
from pyworkflow.observability import lifecycle, tracing
from pyworkflow.primitives.hook_tokens import derive_token, token_to_hand_out
from pyworkflow.primitives.hook_tokens import hash_token as hash_token  # api.py imports it here
from pyworkflow.serialization import decode, decode_error, encode, encode_error
from pyworkflow.storage.base import HOOKS, SIGNALS, StorageBackend, require_capability
from pyworkflow.storage.queries import final_run
from pyworkflow.storage.schemas import Event, EventType, HookRecord, HookStatus, utcnow
from pyworkflow.utils.clock import timer_now

T = TypeVar("T")

# A parent waiting on a child is woken by the child's end; this poll only bounds the
# delay if that wake-up is lost (e.g. the child's process died right after finishing).
CHILD_POLL_SECONDS = 30.0


# A cancellation reason starting with this ends the run without running any more of its
# code (parent_close_policy="terminate").
TERMINATE_PREFIX = "terminated: "

# Signals read from a run's inbox per storage call.
_INBOX_PAGE = 1000

# Executions in flight in this process, so a cancellation request reaches them at once.
LIVE: dict[str, RunContext] = {}


def deliver_cancel(run_id: str, reason: str | None) -> bool:
    """Hand a cancellation to the run's execution if it is in flight in this process."""
    ctx = LIVE.get(run_id)
    if ctx is None or ctx.suspending or ctx.finished:
        return False  # too late for this execution to see it: the caller wakes the run
    ctx.request_cancel(reason)
    return True


@dataclass(frozen=True, slots=True)
class DispatchedStep:
    """A step attempt recorded as sent to a step worker (the runtime enqueues it)."""

    run_id: str
    op_id: str
    step_name: str
    attempt: int
    queue: str | None = None  # the step's broker queue (None: the default step queue)
    # The dispatching execution's span (stored form, see observability.tracing): the
    # step's span on the worker is its child.
    trace_context: str | None = None


@dataclass(frozen=True, slots=True)
class Compensation:
    """A completed step call to undo: ``undo`` is its ``compensate=`` step."""

    position: int
    undo: StepDefinition
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    result: Any


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How one execution behaves, fixed when it starts.

    Attributes:
        limits: the run's event-count limits.
        context_class: the ``StepContext`` subclass the workflow declared, if any.
        nesting_depth: how deep this run sits under parent runs (0: a top-level run).
        max_nesting_depth: the deepest a child of this run may sit.
        on_child_created: called with a child's run id once the child is stored.
        round_owner: set when live steps are dispatched to step workers rather than run
            here: the lease owner of this execution's dispatch round.
        due_at: the wake-up time that woke this execution (a sleep, a retry delay), for
            the timer lateness reported when it resumes.
        replay_only: verify the code against the history and do nothing live (see
            :mod:`pyworkflow.engine.verify`): the first live action raises
            :class:`ReplayStop` instead.
        strict: with ``replay_only``, a recorded sleep whose duration (or target time)
            the code changed is a :class:`ReplayMismatch`.
    """

    limits: EventLimits
    context_class: type | None = None
    nesting_depth: int = 0
    max_nesting_depth: int = 3
    on_child_created: Callable[[str], None] | None = None
    round_owner: str | None = None
    due_at: datetime | None = None
    replay_only: bool = False
    strict: bool = False


class ReplayStop(BaseException):  # noqa: N818 - a signal, not an error
    """A replay-only execution reached what the live run would do next: the history
    has been replayed as far as it goes. (A ``BaseException``: workflow code's ``except
    Exception`` never swallows it.)"""


class ReplayMismatch(BaseException):  # noqa: N818 - a signal, not an error
    """A strict replay found a recorded operation the code changed (not its id: what it
    asks for, such as a sleep's duration)."""

    def __init__(self, position: int, op_id: str, message: str) -> None:
        super().__init__(message)
        self.position = position
        self.op_id = op_id


class RunContext(WorkflowContext):
    """Drives one execution of a durable run over its history."""

    durable = True

    def __init__(
        self,
        *,
        run_id: str,
        workflow_name: str,
        history: History,
        storage: StorageBackend,
        options: RunOptions,
        stored_log: list[Event] | None = None,
    ) -> None:
        self.run_id = run_id
        self.workflow_name = workflow_name
        self.options = options
        self._history = history
        self._storage = storage
        self.storage = storage
        # The run's whole stored log is kept in step with every flush (None: not tracked).
        self.run_log = RunLog(
            run_id,
            storage,
            last_sequence=history.last_sequence,
            limits=options.limits,
            stored=stored_log,
            workflow_name=workflow_name,
            due_at=options.due_at,
        )
        self._counters: dict[str, int] = {}
        self._position = 0
        self._log_index = 0
        self.wake_times: list[datetime] = []
        self.suspend_reasons: list[str] = []
        self.suspending = False
        self.inflight: set[asyncio.Task[Any]] = set()
        self.fatal: BaseException | None = None
        self.children_to_wake: list[str] = []  # cancelled here, not live in this process
        self.cancel_requested = False
        self.cancel_reason: str | None = None
        self.cancel_delivered = False
        self.finished = False  # the workflow function has returned or raised
        self.shield_depth = 0
        # Distributed execution: live steps are recorded and handed to step workers under
        # one lease owner per execution (the "round"); see DispatchedStep.
        self.dispatched: list[DispatchedStep] = []
        self.waiting_rounds: set[str] = set()  # rounds of in-flight steps replay waits on
        self._holding: set[asyncio.Task[Any]] = set()  # tasks waiting on a dispatched step
        self._holding_scheduled = False
        # patched() ids that answered False: this run took their old path (verify says
        # how many runs still do, to tell when a patch can be retired).
        self.old_paths: set[str] = set()
        # Query handlers the code registered (set_query_handler), by name.
        self.query_handlers: dict[str, Callable[..., Any]] = {}
        # Completed calls of steps with compensate=, to undo if the run fails or is cancelled.
        self.compensations: list[Compensation] = []
        # A wait_for_signal is among what this execution suspends on: once the
        # suspension is stored, the inbox is read once more (see executor._suspend).
        self.awaits_signal = False

    # -- bookkeeping ------------------------------------------------------------------

    @property
    def is_replaying(self) -> bool:
        return self._position < len(self._history.op_order)

    @property
    def history(self) -> History:
        """What this execution replays from (operations it records are added to it)."""
        return self._history

    @property
    def unconsumed_operation(self) -> str | None:
        """The first recorded operation the code has not asked for (None if all were)."""
        order = self._history.op_order
        return order[self._position] if self._position < len(order) else None

    @property
    def position(self) -> int:
        return self._position

    def record(self, type_: EventType, data: dict[str, Any], *, force: bool = False) -> None:
        """Buffer an event in the run's log; it is written by the next :meth:`flush`."""
        try:
            self.run_log.record(type_, data, force=force)
        except EventLimitExceededError as err:
            self.fatal = self.fatal or err
            raise

    def set_changes(self, **changes: Any) -> None:
        """Projection changes to write with the next flush."""
        self.run_log.set_changes(**changes)

    async def flush(self, **changes: Any) -> None:
        """Write buffered events and projection changes in one fenced append."""
        try:
            await self.run_log.flush(**changes)
        except OwnershipLost as lost:
            self.fatal = lost
            raise

    async def io(self, call: Awaitable[T]) -> T:
        """Await a storage call of this execution: a storage failure stops the execution
        (:class:`StorageFault`, which workflow code cannot catch) instead of reaching
        workflow code as if its own operation had failed."""
        try:
            return await call
        except Exception as exc:
            if not is_storage_fault(exc):
                raise
            self.fatal = fault = StorageFault(f"storage failed during run {self.run_id!r}: {exc}")
            raise fault from exc

    def _cancel_point(self) -> None:
        """Deliver a cancellation here if the history says it was delivered at this point,
        or (past the recorded history) if one was requested and no shield() is active."""
        order = self._history.op_order
        position = self._position
        if position < len(order):
            if not order[position].startswith(CANCEL_OP_PREFIX):
                return  # the recorded operation here happened before any cancellation
            self._position = position + 1
            self.cancel_delivered = True
            raise CancellationError(reason=self._history.cancel_reason)
        if not self.cancel_requested or self.cancel_delivered or self.shield_depth:
            return
        self.cancel_delivered = True
        self._position = position + 1
        self.record(
            EventType.CANCELLATION_REQUESTED, events.cancellation_requested(self.cancel_reason)
        )
        raise CancellationError(reason=self.cancel_reason)

    def open_children(self) -> list[ChildRecord]:
        """Children started by this run whose outcome the run never recorded."""
        return [c for c in self._history.children.values() if c.outcome is None]

    def mark_finished(self) -> None:
        """The workflow function has returned or raised."""
        self.finished = True

    def stop_new_operations(self) -> None:
        """The execution is ending: operations started from now on are left for later."""
        self.suspending = True

    def request_cancel(self, reason: str | None) -> None:
        """A cancellation request reached this live execution (same process or heartbeat)."""
        self.cancel_requested, self.cancel_reason = True, reason

    def _next_op(self, kind: str, name: str) -> str:
        self._cancel_point()
        key = f"{kind}:{name}"
        count = self._counters.get(key, 0) + 1
        self._counters[key] = count
        op_id = f"{key}#{count}"
        position = self._position
        self._position = position + 1
        order = self._history.op_order
        if position < len(order):
            if order[position] != op_id:
                err = NonDeterminismError(
                    self.run_id,
                    position,
                    order[position],
                    op_id,
                    self._history.sequence_at(position),
                )
                self.fatal = self.fatal or err
                raise err
        elif self.options.replay_only:
            raise ReplayStop(op_id)  # the history ends here: the rest is live
        return op_id

    def _suspend(self, wake_at: datetime | None, reason: str) -> SuspensionSignal:
        self._cancel_point()  # a run about to wait is cancelled instead, unless shielded
        if wake_at is not None:
            self.wake_times.append(wake_at)
        self.suspend_reasons.append(reason)
        self.suspending = True
        return SuspensionSignal(reason, wake_at)

    def _guard(self) -> None:
        # Once the run is suspending, sibling tasks (asyncio.gather) must not start new
        # operations: they are recorded when the run resumes.
        if self.suspending or (self._holding and asyncio.current_task() in self._holding):
            raise SuspensionSignal("run is suspending")
        if self.fatal is not None:
            raise self.fatal

    # -- operations -------------------------------------------------------------------

    async def run_step(
        self,
        definition: StepDefinition,
        call: Callable[[], Awaitable[Any]],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if definition.compensation is None:
            return await self._run_step(definition, call, args, kwargs)
        # Its place in the operation order (what the next _next_op assigns): compensations
        # run newest first by that place, which replays the same whatever order parallel
        # steps finished in.
        position = self._position
        result = await self._run_step(definition, call, args, kwargs)
        self.compensations.append(
            Compensation(position, definition.compensation, args, dict(kwargs or {}), result)
        )
        return result

    async def _run_step(
        self,
        definition: StepDefinition,
        call: Callable[[], Awaitable[Any]],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        self._guard()
        op_id = self._next_op("step", definition.name)
        record = self._history.steps.get(op_id)
        attempt = 0
        if record is not None:
            if record.completed:
                return decode(record.result)
            if record.error is not None:
                raise decode_error(record.error)
            attempt = record.attempts
            if record.in_flight:
                raise self._wait_dispatched(op_id, record.round)
            if record.retry_at is not None:
                if record.retry_at > timer_now():
                    raise self._suspend(record.retry_at, f"retry of {op_id}")
                record.retry_at = None  # the retry is due: it runs now, nothing waits
        if self.options.replay_only:
            raise ReplayStop(op_id)  # an attempt the history does not settle: live work
        if self.options.round_owner is not None and not definition.force_local:
            raise self._dispatch(definition, op_id, attempt + 1, args, kwargs or {})
        task = asyncio.current_task()
        if task is not None:
            self.inflight.add(task)
        try:
            return await self._attempts(definition, call, op_id, attempt)
        finally:
            if task is not None:
                self.inflight.discard(task)

    def _dispatch(
        self,
        definition: StepDefinition,
        op_id: str,
        attempt: int,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> SuspensionSignal:
        """Record the step attempt as sent to a step worker; the execution then waits.

        ``suspending`` is left unset on purpose: sibling branches of an
        ``asyncio.gather`` still start (and dispatch) their steps in this execution, so
        parallel steps run in parallel on the workers.

        Arguments that cannot be stored with the attempt (not encodable, over the payload
        limit) fail the step for good, recorded as its failure: its operation id stays
        taken, so a replay finds the failure where the code asks for the step again.
        """
        where = f"arguments of step {definition.name!r} ({op_id})"
        try:
            step_input = {
                "args": encode(list(args), where=where),
                "kwargs": encode(kwargs, where=where),
            }
            data = events.step_started(
                op_id,
                definition.name,
                attempt,
                round_owner=self.options.round_owner,
                step_input=step_input,
                queue=definition.queue,
            )
            check_storable(data, where, self._storage.payload_limit)
        except SerializationError as exc:
            name = definition.name
            self.record(EventType.STEP_STARTED, events.step_started(op_id, name, attempt))
            failed = events.step_failed(
                op_id, name, attempt, encode_error(exc), fatal=True, will_retry=False
            )
            self.record(EventType.STEP_FAILED, failed)
            raise
        self.record(EventType.STEP_STARTED, data)
        self.dispatched.append(
            DispatchedStep(
                self.run_id,
                op_id,
                definition.name,
                attempt,
                definition.queue,
                tracing.current_trace_context(),
            )
        )
        return self._hold(f"step {op_id} dispatched")

    def _wait_dispatched(self, op_id: str, round_owner: str | None) -> SuspensionSignal:
        if round_owner is not None:
            self.waiting_rounds.add(round_owner)
        return self._hold(f"step {op_id} running on a worker")

    def _hold(self, reason: str) -> SuspensionSignal:
        """Wait for a step running elsewhere. The waiting task starts nothing more (its
        ``finally`` blocks included); other tasks may until the next loop iteration, when
        the whole run starts suspending: siblings started by the same ``gather`` have run
        their first operation by then, tasks resumed by this one's failure have not."""
        task = asyncio.current_task()
        if task is not None:
            self._holding.add(task)
        if not self._holding_scheduled:
            self._holding_scheduled = True
            asyncio.get_running_loop().call_soon(self._start_suspending)
        self.suspend_reasons.append(reason)
        return SuspensionSignal(reason, None)

    def _start_suspending(self) -> None:
        self.suspending = True

    async def _attempts(
        self,
        definition: StepDefinition,
        call: Callable[[], Awaitable[Any]],
        op_id: str,
        attempt: int,
    ) -> Any:
        outcome = await run_attempts(
            definition,
            call,
            op_id,
            attempt + 1,
            _LogRecorder(self, op_id, definition.name),
            limit=self._storage.payload_limit,
        )
        if outcome.retry_at is not None:
            raise self._suspend(outcome.retry_at, f"retry of {op_id}")
        await self.flush()  # the step's outcome is stored before the workflow goes on
        if outcome.error is not None:
            raise outcome.error
        return outcome.result

    async def sleep(
        self, wake_at: datetime, delay: timedelta, name: str | None, *, until: bool = False
    ) -> None:
        self._guard()
        op_id = self._next_op("sleep", name or "sleep")
        record = self._history.sleeps.get(op_id)
        if record is not None and self.options.strict:
            self._check_sleep(op_id, record, wake_at, delay, until)
        if record is None:
            fire_at = wake_at
            self.record(
                EventType.SLEEP_STARTED,
                events.sleep_started(op_id, name, fire_at, delay.total_seconds()),
            )
        elif record.completed:
            return
        else:
            fire_at = record.fire_at
        if timer_now() >= fire_at:
            self.record(EventType.SLEEP_COMPLETED, events.sleep_completed(op_id))
            return
        raise self._suspend(fire_at, f"sleep {op_id}")

    def _check_sleep(
        self, op_id: str, record: Any, wake_at: datetime, delay: timedelta, until: bool
    ) -> None:
        """Strict replay: the code sleeps as long as (or until the time) it did."""
        if until:
            changed = record.fire_at != wake_at
            was, now = record.fire_at.isoformat(), wake_at.isoformat()
        else:
            recorded = record.duration
            if recorded is None:
                return  # recorded before sleeps stored their length: nothing to compare
            changed = abs(recorded - delay.total_seconds()) > 1e-3
            was, now = f"{recorded:g}s", f"{delay.total_seconds():g}s"
        if changed:
            raise ReplayMismatch(
                self._position - 1, op_id, f"{op_id} slept {was}, the code now sleeps {now}"
            )

    def patched(self, patch_id: str) -> bool:
        """Whether this run takes the new path of the change named ``patch_id`` (see
        :func:`pyworkflow.patched`): yes once recorded; no for a run that replays past
        the point without having recorded it (it ran before the change), and from then
        on for the rest of the run; else yes, and recorded now."""
        if patch_id in self._history.patches:
            return True
        if patch_id in self.old_paths or self.is_replaying:
            self.old_paths.add(patch_id)
            return False
        self._history.patches.add(patch_id)
        self.record(EventType.PATCH_APPLIED, events.patch_applied(patch_id))
        return True

    async def set_step_context(self, value: Any) -> None:
        self._guard()
        expected = self.options.context_class
        if expected is not None and not isinstance(value, expected):
            raise TypeError(
                f"workflow {self.workflow_name!r} declares context_class "
                f"{expected.__name__}, got {type(value).__name__}"
            )
        op_id = self._next_op("step_context", "set")
        if op_id in self._history.contexts:
            return  # recorded: replay restores the same value the code computes again
        where = f"step context of workflow {self.workflow_name!r}"
        encoded = encode(value, where=where)
        data = events.step_context_set(op_id, encoded)
        try:
            check_storable(data, where, self._storage.payload_limit)
        except SerializationError as exc:
            # Refused here, not by the next flush (with the events of whatever operation
            # flushes next). It fails the run: the operation has its id but no event, so
            # code that caught it and went on could not be replayed.
            self.fatal = self.fatal or exc
            raise
        self.record(EventType.STEP_CONTEXT_SET, data)
        self.set_changes(context_payload=json.dumps(encoded))

    # -- hooks -------------------------------------------------------------------------

    async def wait_hook(
        self,
        name: str,
        expires_in: float | None,
        on_created: Callable[[str], Awaitable[Any]] | None,
        schema: str | None,
    ) -> Any:
        self._guard()
        require_capability(self._storage, HOOKS)  # a clear error, before anything is recorded
        op_id = self._next_op("hook", name)
        record = self._history.hooks.get(op_id)
        if record is None:
            record = await self._create_hook(op_id, name, expires_in, on_created, schema)
        if record.received:
            return record.payload
        if record.expired:
            raise HookExpiredError(f"hook {name!r} ({op_id}) expired before a payload arrived")
        stored = await self.io(self._storage.get_hook(record.token_hash))
        now = timer_now()
        if stored is not None and stored.status == HookStatus.PENDING:
            if record.expires_at is not None and record.expires_at <= now:
                expire = self._storage.update_hook(
                    record.token_hash, expected=HookStatus.PENDING, status=HookStatus.EXPIRED
                )
                if await self.io(expire):
                    self.record(EventType.HOOK_EXPIRED, events.hook_expired(op_id))
                    record.expired = True
                    raise HookExpiredError(
                        f"hook {name!r} ({op_id}) expired before a payload arrived"
                    )
                stored = await self.io(
                    self._storage.get_hook(record.token_hash)
                )  # delivered meanwhile
            else:
                raise self._suspend(record.expires_at, f"hook {op_id}")
        if stored is None or stored.status != HookStatus.RECEIVED:
            raise HookExpiredError(f"hook {name!r} ({op_id}) is no longer open")
        record.received, record.payload = True, json.loads(stored.payload or "null")
        self.record(EventType.HOOK_RECEIVED, events.hook_received(op_id, record.payload))
        return record.payload

    async def _create_hook(
        self,
        op_id: str,
        name: str,
        expires_in: float | None,
        on_created: Callable[[str], Awaitable[Any]] | None,
        schema: str | None,
    ) -> HookHistory:
        # Derived from the hook's identity under the secret key: a replay hands out the same
        # token, and only its hash is stored (in the hook record and the log).
        token = derive_token(self.run_id, op_id)
        expires_at = None if expires_in is None else timer_now() + timedelta(seconds=expires_in)
        new_hook = HookRecord(
            token_hash=hash_token(token),
            run_id=self.run_id,
            hook_id=op_id,
            name=name,
            expires_at=expires_at,
            schema=schema,
        )
        # After a crash before hook.created was recorded: the same hook as before.
        hook = await self.io(self._storage.save_hook(new_hook))
        token = token_to_hand_out(hook, token)
        if on_created is not None:
            await on_created(token)
        self.record(
            EventType.HOOK_CREATED,
            events.hook_created(op_id, name, hook.token_hash, token[:8] + "...", hook.expires_at),
        )
        await self.flush()
        record = HookHistory(token_hash=hook.token_hash, expires_at=hook.expires_at)
        self._history.hooks[op_id] = record
        return record

    # -- signals -----------------------------------------------------------------------

    async def wait_signal(self, name: str, seconds: float | None) -> Any:
        self._guard()
        require_capability(self._storage, SIGNALS)  # a clear error, before anything is recorded
        op_id = self._next_op("signal", name)
        history = self._history
        wait = history.signal_waits.get(op_id)
        if wait is not None and wait.index is not None:
            return history.signals[wait.index].payload
        if wait is not None and wait.timed_out:
            raise SignalTimeoutError(f"no signal {name!r} came within the timeout ({op_id})")
        if self.options.replay_only:
            raise ReplayStop(op_id)  # what the live run does next: read the inbox
        await self.pull_signals()
        index = history.next_signal(name)
        if index is not None:
            if wait is None:
                wait = history.signal_waits[op_id] = SignalWait()
            wait.index = index
            history.signals[index].taken = True
            self.record(EventType.SIGNAL_CONSUMED, events.signal_consumed(op_id, name, index))
            return history.signals[index].payload
        if wait is None:
            timeout_at = None if seconds is None else timer_now() + timedelta(seconds=seconds)
            wait = history.signal_waits[op_id] = SignalWait(timeout_at=timeout_at)
            self.record(EventType.SIGNAL_WAITING, events.signal_waiting(op_id, name, timeout_at))
        if wait.timeout_at is not None and timer_now() >= wait.timeout_at:
            wait.timed_out = True
            self.record(EventType.SIGNAL_TIMED_OUT, events.signal_timed_out(op_id, name))
            raise SignalTimeoutError(f"no signal {name!r} came within the timeout ({op_id})")
        self.awaits_signal = True
        raise self._suspend(wait.timeout_at, f"signal {op_id}")

    async def pull_signals(self) -> None:
        """Move what the run's inbox received since the history's last signal into the
        history (``signal.received``, in inbox order)."""
        history = self._history
        while True:
            page = await self.io(
                self._storage.list_signals(
                    self.run_id, after_sequence=history.inbox_sequence, limit=_INBOX_PAGE
                )
            )
            for sent in page:
                payload = json.loads(sent.payload)
                index = len(history.signals)
                history.signals.append(SignalHistory(name=sent.name, payload=payload))
                history.inbox_sequence = sent.sequence
                data = events.signal_received(
                    index, sent.name, payload, sent.signal_id, sent.sequence, sent.sent_at
                )
                self.record(EventType.SIGNAL_RECEIVED, data)
            if len(page) < _INBOX_PAGE:
                return

    async def inbox_has_news(self) -> bool:
        """Whether the inbox holds a signal the history has not received yet."""
        after = self._history.inbox_sequence
        news = await self.io(self._storage.list_signals(self.run_id, after_sequence=after, limit=1))
        return bool(news)

    # -- child workflows --------------------------------------------------------------

    async def start_child(
        self,
        definition: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        policy: str,
    ) -> tuple[str, str]:
        self._guard()
        op_id = self._next_op("child", definition.name)
        record = self._history.children.get(op_id)
        if record is not None:
            return op_id, record.child_run_id
        depth = self.options.nesting_depth + 1
        if depth > self.options.max_nesting_depth:
            raise MaxNestingDepthError(
                f"starting child {definition.name!r} would nest {depth} levels deep; "
                f"the limit is max_nesting_depth={self.options.max_nesting_depth}"
            )
        # The child's id derives from this operation, so a crash between creating the child
        # and recording it here cannot start the child twice.
        request = RunRequest(
            definition=definition,
            args=args,
            kwargs=kwargs,
            run_id=derived_run_id(self.run_id, op_id),
            parent_run_id=self.run_id,
            nesting_depth=depth,
        )
        child, started = build_run(request, owner=None, lease_ttl=0)
        with contextlib.suppress(RunAlreadyExistsError):  # created before a crash
            await self.io(self._storage.create_run(child, [started]))
            lifecycle.events_committed(child.run_id, child.workflow_name, [started])
        self.record(
            EventType.CHILD_WORKFLOW_STARTED,
            events.child_started(op_id, child.run_id, definition.name, policy),
        )
        self._history.children[op_id] = ChildRecord(child_run_id=child.run_id, policy=policy)
        await self.flush()
        if self.options.on_child_created is not None:
            self.options.on_child_created(child.run_id)
        return op_id, child.run_id

    async def wait_child(self, op_id: str) -> Any:
        self._guard()
        record = self._history.children[op_id]
        if record.outcome is None:
            child = await self.io(final_run(self._storage, record.child_run_id))
            if child is None or not child.status.is_terminal:
                # Woken by the child when it ends; the poll is only a safety net.
                retry = timer_now() + timedelta(seconds=CHILD_POLL_SECONDS)
                raise self._suspend(retry, f"waiting for child {op_id}")
            self._record_child_outcome(op_id, record, child)
        if record.outcome == "completed":
            return decode(record.result)
        raise ChildWorkflowFailedError(
            f"child workflow run {record.child_run_id!r} ended {record.outcome}: {record.error}",
            child_run_id=record.child_run_id,
            status=record.outcome,
            error=record.error,
        )

    async def cancel_child(self, child_run_id: str, reason: str | None) -> bool:
        # Not an operation of the history: a replay asks again (a second request changes
        # nothing). The answer replays the same: once the child has ended, whether it was
        # asked to cancel no longer changes.
        if not await self.io(self._storage.request_cancellation(child_run_id, reason, utcnow())):
            child = await self.io(self._storage.get_run(child_run_id))
            return child is not None and child.cancel_requested_at is not None
        if not deliver_cancel(child_run_id, reason):
            self.children_to_wake.append(child_run_id)  # woken when this execution ends
        return True

    def _record_child_outcome(self, op_id: str, record: ChildRecord, child: Any) -> None:
        status = child.status.value
        outcome = status if status in ("completed", "failed", "cancelled") else "failed"
        record.outcome = outcome
        if outcome == "completed":
            result = json.loads(child.result_payload) if child.result_payload else None
            record.result = result
            data = events.child_outcome(op_id, record.child_run_id, result=result)
        else:
            record.error = child.error or outcome
            data = events.child_outcome(op_id, record.child_run_id, error=record.error)
        self.record(events.CHILD_OUTCOME_TYPES[outcome], data)

    def record_close_out(self, reason: str) -> None:
        """Record what the run leaves open as it ends (see :func:`close_out_drafts`)."""
        for type_, data in close_out_drafts(self._history, self.dispatched, reason):
            self.record(type_, data, force=True)

    def log(self, level: str, message: str) -> None:
        type_ = events.LOG_EVENT_TYPES.get(level, EventType.LOG_INFO)
        step = current_step_info()
        if step is not None:
            # A step body runs live only: its messages are recorded as they come, and
            # not counted with the workflow's own (which replay runs again).
            self.record(type_, events.log_message(message, step_id=step.step_id))
            return
        index = self._log_index
        self._log_index += 1
        if index >= self._history.log_count:
            self.record(type_, events.log_message(message))


def close_out_drafts(
    history: History, dispatched: list[DispatchedStep], reason: str
) -> list[events.Draft]:
    """What a run leaves open as it ends, written with its final event: ``hook.disposed``
    for hooks it never consumed, ``step.cancelled`` for step attempts still out on a step
    worker (``dispatched``: sent by this execution) or waiting to be retried."""
    drafts: list[events.Draft] = [
        (EventType.HOOK_DISPOSED, events.hook_disposed(hook_id, reason))
        for hook_id, _ in history.open_hooks()
    ]
    abandoned = [  # an attempt out on a worker, or the next one, waiting for its retry
        (step_id, r.name, r.attempts if r.in_flight else r.attempts + 1)
        for step_id, r in history.steps.items()
        if not r.completed and r.error is None and (r.in_flight or r.retry_at is not None)
    ]
    abandoned += [(d.op_id, d.step_name, d.attempt) for d in dispatched]
    for step_id, name, attempt in abandoned:
        drafts.append(
            (EventType.STEP_CANCELLED, events.step_cancelled(step_id, name, attempt, reason))
        )
    return drafts


class _LogRecorder:
    """Records a live step's attempts in the run's log (see engine/attempts.py)."""

    __slots__ = ("ctx", "step_id", "name")

    def __init__(self, ctx: RunContext, step_id: str, name: str) -> None:
        self.ctx, self.step_id, self.name = ctx, step_id, name

    def started(self, attempt: int) -> None:
        self.ctx.record(
            EventType.STEP_STARTED, events.step_started(self.step_id, self.name, attempt)
        )

    def record(self, type_: EventType, data: dict[str, Any]) -> None:
        # A cancelled attempt is always written: the limit must not mask the cancellation.
        self.ctx.record(type_, data, force=type_ is EventType.STEP_CANCELLED)
