"""Fold a run's event log into lookup tables the executor replays from.

One pass over the events (loaded in one query) builds everything replay needs; replay
is therefore linear in history length, and nothing is read from storage per step.

The operation order (what determinism is checked against) comes from one table,
:data:`~pyworkflow.engine.events.OPERATION_ID_FIELDS`: the first event of each operation
id among those types starts the operation. Handlers read only the fields they know
(payloads may carry more, from a newer version: see ``engine/events.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pyworkflow.engine.events import CANCEL_OP_ID, OPERATION_ID_FIELDS
from pyworkflow.storage.schemas import Event, EventType


@dataclass(slots=True)
class StepRecord:
    """What the log says about one step operation."""

    attempts: int = 0
    completed: bool = False
    result: Any = None  # encoded tree
    error: dict[str, Any] | None = None  # final failure (no more retries)
    retry_at: datetime | None = None
    # Set while an attempt dispatched to a step worker has no recorded outcome yet.
    in_flight: bool = False
    name: str = ""
    round: str | None = None  # the dispatch round (lease owner) of that attempt
    input: dict[str, Any] | None = None  # encoded {"args", "kwargs"} of a dispatched step
    queue: str | None = None  # the broker queue of that attempt (None: the default)


@dataclass(slots=True)
class SleepRecord:
    fire_at: datetime
    completed: bool = False
    duration: float | None = None  # seconds, as asked for (None: an older history)


@dataclass(slots=True)
class ChildRecord:
    """A child run this run started, and its outcome once the parent recorded it."""

    child_run_id: str
    policy: str = "terminate"
    outcome: str | None = None  # "completed" | "failed" | "cancelled"
    result: Any = None  # encoded tree
    error: str | None = None


@dataclass(slots=True)
class HookHistory:
    """A hook the run created, and what the run recorded about it since."""

    token_hash: str
    expires_at: datetime | None = None
    received: bool = False
    payload: Any = None  # JSON value as delivered
    expired: bool = False


@dataclass(slots=True)
class SignalHistory:
    """A signal the run received (moved from its inbox, or sent with its start)."""

    name: str
    payload: Any = None  # JSON value as sent
    taken: bool = False  # a wait consumed it


@dataclass(slots=True)
class SignalWait:
    """One ``wait_for_signal`` operation and how it ended, once it has."""

    timeout_at: datetime | None = None
    index: int | None = None  # the signal it consumed
    timed_out: bool = False


@dataclass(slots=True)
class History:
    """A run's recorded operations, keyed by operation id."""

    run_id: str
    op_order: list[str] = field(default_factory=list)
    op_sequences: list[int] = field(default_factory=list)
    steps: dict[str, StepRecord] = field(default_factory=dict)
    sleeps: dict[str, SleepRecord] = field(default_factory=dict)
    contexts: dict[str, Any] = field(default_factory=dict)
    children: dict[str, ChildRecord] = field(default_factory=dict)
    cancel_reason: str | None = None
    hooks: dict[str, HookHistory] = field(default_factory=dict)
    patches: set[str] = field(default_factory=set)  # patched() ids the run recorded
    signals: list[SignalHistory] = field(default_factory=list)
    signal_waits: dict[str, SignalWait] = field(default_factory=dict)
    inbox_sequence: int = 0  # the last inbox signal moved into the history
    # The concurrency key the run was started with (None: no limit, or started before
    # the workflow had one; see pyworkflow.engine.flow).
    concurrency_key: str | None = None
    log_count: int = 0
    last_sequence: int = 0
    _started: set[str] = field(default_factory=set)

    @classmethod
    def from_events(cls, run_id: str, events: Iterable[Event]) -> History:
        history = cls(run_id=run_id)
        for event in events:
            history.apply(event)
        return history

    def apply(self, event: Event) -> None:
        self.last_sequence = event.sequence
        id_field = OPERATION_ID_FIELDS.get(event.type)
        if id_field is not None:
            op_id = event.data.get(id_field, CANCEL_OP_ID)
            if op_id not in self._started:
                self._started.add(op_id)
                self.op_order.append(op_id)
                self.op_sequences.append(event.sequence)
        handler = _HANDLERS.get(event.type)
        if handler is not None:
            handler(self, event)

    def mark_interrupted(self) -> None:
        """The run was recovered after a crash: attempts dispatched before it are lost."""
        for record in self.steps.values():
            record.in_flight = False

    def open_hooks(self) -> list[tuple[str, HookHistory]]:
        """``(hook_id, hook)`` of hooks the run created and neither received nor saw
        expire."""
        return [(i, h) for i, h in self.hooks.items() if not (h.received or h.expired)]

    def receive_start_signals(self, signals: Any) -> None:
        """The signals sent with the start (``workflow.started``'s ``signals``), received
        before anything from the inbox."""
        for sent in signals if isinstance(signals, list) else ():
            if isinstance(sent, dict):
                name, payload = str(sent.get("name")), sent.get("payload")
                self.signals.append(SignalHistory(name=name, payload=payload))

    def next_signal(self, name: str) -> int | None:
        """Index of the earliest received signal ``name`` no wait has taken."""
        for index, signal in enumerate(self.signals):
            if signal.name == name and not signal.taken:
                return index
        return None

    def sequence_at(self, position: int) -> int | None:
        return self.op_sequences[position] if position < len(self.op_sequences) else None


def _step(history: History, event: Event) -> StepRecord:
    op_id = event.data["step_id"]
    record = history.steps.get(op_id)
    if record is None:
        record = history.steps[op_id] = StepRecord()
    return record


def _on_step_started(history: History, event: Event) -> None:
    record = _step(history, event)
    record.attempts = max(record.attempts, int(event.data.get("attempt", 1)))
    record.name = event.data.get("step_name", "")
    record.in_flight = bool(event.data.get("dispatched"))
    if record.in_flight:
        record.round, record.input = event.data.get("round"), event.data.get("input")
        queue = event.data.get("queue")
        record.queue = queue if isinstance(queue, str) else None


def _on_step_completed(history: History, event: Event) -> None:
    record = _step(history, event)
    record.completed = True
    record.in_flight = False
    record.result = event.data.get("result")
    record.retry_at = None


def _on_step_failed(history: History, event: Event) -> None:
    record = _step(history, event)
    record.in_flight = False
    if not event.data.get("will_retry"):
        record.error = event.data.get("error") or {}


def _on_step_retrying(history: History, event: Event) -> None:
    _step(history, event).retry_at = datetime.fromisoformat(event.data["retry_at"])


def _on_step_cancelled(history: History, event: Event) -> None:
    # The attempt is over without an outcome: nothing is out or waiting any more; a later
    # execution that asks for the step runs a new attempt.
    record = _step(history, event)
    record.in_flight = False
    record.retry_at = None


def _on_sleep_started(history: History, event: Event) -> None:
    op_id = event.data["sleep_id"]
    duration = event.data.get("duration_seconds")
    history.sleeps[op_id] = SleepRecord(
        fire_at=datetime.fromisoformat(event.data["fire_at"]),
        duration=float(duration) if isinstance(duration, int | float) else None,
    )


def _on_sleep_completed(history: History, event: Event) -> None:
    record = history.sleeps.get(event.data["sleep_id"])
    if record is not None:
        record.completed = True


def _on_step_context(history: History, event: Event) -> None:
    op_id = event.data["op_id"]
    history.contexts[op_id] = event.data.get("context")


def _on_child_started(history: History, event: Event) -> None:
    op_id = event.data["child_id"]
    history.children[op_id] = ChildRecord(
        child_run_id=event.data["child_run_id"],
        policy=event.data.get("parent_close_policy", "terminate"),
    )


def _on_child_outcome(history: History, event: Event) -> None:
    record = history.children.get(event.data["child_id"])
    if record is not None:
        record.outcome = event.type.value.rsplit(".", 1)[1]
        record.result = event.data.get("result")
        record.error = event.data.get("error")


def _on_cancellation(history: History, event: Event) -> None:
    history.cancel_reason = event.data.get("reason")


def _on_hook_created(history: History, event: Event) -> None:
    op_id = event.data["hook_id"]
    expires = event.data.get("expires_at")
    history.hooks[op_id] = HookHistory(
        token_hash=event.data["token_hash"],
        expires_at=datetime.fromisoformat(expires) if expires else None,
    )


def _on_hook_received(history: History, event: Event) -> None:
    record = history.hooks.get(event.data["hook_id"])
    if record is not None:
        record.received, record.payload = True, event.data.get("payload")


def _on_hook_expired(history: History, event: Event) -> None:
    record = history.hooks.get(event.data["hook_id"])
    if record is not None:
        record.expired = True


def _on_interrupted(history: History, event: Event) -> None:  # noqa: ARG001
    history.mark_interrupted()


def _on_patch(history: History, event: Event) -> None:
    patch_id = event.data.get("patch_id")
    if isinstance(patch_id, str):
        history.patches.add(patch_id)


def _on_workflow_started(history: History, event: Event) -> None:
    key = event.data.get("concurrency_key")
    history.concurrency_key = key if isinstance(key, str) else None
    signals = event.data.get("signals")
    for sent in signals if isinstance(signals, list) else ():
        history.signals.append(
            SignalHistory(name=str(sent.get("name")), payload=sent.get("payload"))
        )


def _on_signal_received(history: History, event: Event) -> None:
    history.signals.append(
        SignalHistory(name=str(event.data.get("name")), payload=event.data.get("payload"))
    )
    sequence = event.data.get("sequence")
    if isinstance(sequence, int):
        history.inbox_sequence = max(history.inbox_sequence, sequence)


def _signal_wait(history: History, event: Event) -> SignalWait:
    op_id = event.data["wait_id"]
    wait = history.signal_waits.get(op_id)
    if wait is None:
        wait = history.signal_waits[op_id] = SignalWait()
    return wait


def _on_signal_waiting(history: History, event: Event) -> None:
    timeout_at = event.data.get("timeout_at")
    _signal_wait(history, event).timeout_at = (
        datetime.fromisoformat(timeout_at) if timeout_at else None
    )


def _on_signal_consumed(history: History, event: Event) -> None:
    index = int(event.data["index"])
    _signal_wait(history, event).index = index
    if 0 <= index < len(history.signals):
        history.signals[index].taken = True


def _on_signal_timed_out(history: History, event: Event) -> None:
    _signal_wait(history, event).timed_out = True


def _on_log(history: History, event: Event) -> None:
    if "step_id" not in event.data:  # the workflow's own messages, which replay repeats
        history.log_count += 1


_HANDLERS = {
    EventType.STEP_STARTED: _on_step_started,
    EventType.STEP_COMPLETED: _on_step_completed,
    EventType.STEP_FAILED: _on_step_failed,
    EventType.STEP_RETRYING: _on_step_retrying,
    EventType.STEP_CANCELLED: _on_step_cancelled,
    EventType.SLEEP_STARTED: _on_sleep_started,
    EventType.SLEEP_COMPLETED: _on_sleep_completed,
    EventType.STEP_CONTEXT_SET: _on_step_context,
    EventType.CHILD_WORKFLOW_STARTED: _on_child_started,
    EventType.CANCELLATION_REQUESTED: _on_cancellation,
    EventType.HOOK_CREATED: _on_hook_created,
    EventType.HOOK_RECEIVED: _on_hook_received,
    EventType.HOOK_EXPIRED: _on_hook_expired,
    EventType.CHILD_WORKFLOW_COMPLETED: _on_child_outcome,
    EventType.CHILD_WORKFLOW_FAILED: _on_child_outcome,
    EventType.CHILD_WORKFLOW_CANCELLED: _on_child_outcome,
    EventType.WORKFLOW_INTERRUPTED: _on_interrupted,
    EventType.PATCH_APPLIED: _on_patch,
    EventType.WORKFLOW_STARTED: _on_workflow_started,
    EventType.SIGNAL_RECEIVED: _on_signal_received,
    EventType.SIGNAL_WAITING: _on_signal_waiting,
    EventType.SIGNAL_CONSUMED: _on_signal_consumed,
    EventType.SIGNAL_TIMED_OUT: _on_signal_timed_out,
    EventType.LOG_DEBUG: _on_log,
    EventType.LOG_INFO: _on_log,
    EventType.LOG_WARNING: _on_log,
    EventType.LOG_ERROR: _on_log,
}
