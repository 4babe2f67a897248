"""Every event payload the engine writes, built in one place, and how replay reads them.

Each builder returns the ``data`` of one event type. Every payload carries the format
version ``"v"`` (:data:`FORMAT_VERSION`). Readers use only the fields they know and
ignore the rest, and treat a missing ``"v"`` as version 0 (events written before the
field existed), so workers of neighbouring versions can replay each other's histories
during a deploy. A field is only ever added, never renamed or given a new meaning; a
change a reader must understand bumps the version.

Data fields (all JSON-native; ``result``/``args`` are encoded by
:mod:`pyworkflow.serialization`, ``error`` by ``encode_error``)::

    workflow.started      workflow_name, args, kwargs, tags (+ schedule_id, scheduled_time;
                          + retry_of for a run retry_workflow started; + queue when routed;
                          + signals: [{name, payload}] sent with the start)
    workflow.resumed      (none)
    workflow.suspended    reason, wake_at (ISO-8601 or null)
    workflow.interrupted  reason, recovery_attempt
    workflow.completed    result
    workflow.failed       error, error_type
    workflow.cancelled    reason, error
    workflow.continued_as_new  new_run_id
    step.started          step_id, step_name, attempt (+ dispatched, round, input, queue)
    step.completed        step_id, step_name, attempt, result
    step.failed           step_id, step_name, attempt, error, will_retry, fatal
    step.retrying         step_id, step_name, attempt (the next one), retry_at, delay_seconds
    step.cancelled        step_id, step_name, attempt, reason
    sleep.started         sleep_id, name, fire_at, duration_seconds
    sleep.completed       sleep_id
    step_context.set      op_id, context (the encoded StepContext model)
    cancellation.requested     op_id, reason (where the workflow saw CancellationError)
    hook.created               hook_id, name, token_hash, token_hint, expires_at
    hook.received              hook_id, payload (JSON as delivered and validated)
    hook.expired               hook_id
    hook.disposed              hook_id, reason (the run ended with the hook still open)
    child_workflow.started     child_id, child_run_id, workflow_name, parent_close_policy
    child_workflow.completed   child_id, child_run_id, result
    child_workflow.failed      child_id, child_run_id, error
    child_workflow.cancelled   child_id, child_run_id, error
    signal.received       index, name, payload, signal_id, sequence (in the inbox), sent_at
    signal.waiting        wait_id, name, timeout_at (ISO-8601 or null)
    signal.consumed       wait_id, name, index (of the signal.received it took)
    signal.timed_out      wait_id, name
    log.<level>           message (+ step_id when a step body wrote it)
    schedule.triggered    schedule_id, tick, run_id, at    (in the schedule's history)
    schedule.skipped      schedule_id, tick, reason, at    (in the schedule's history)

``step_id``/``sleep_id``/... are operation ids ``kind:name#n`` (``n`` = 1 for the first
call of that name in the run), assigned in the order the code starts the operations.

``step.cancelled`` is written when a live step attempt is cancelled (a ``max_duration``
deadline, a caller's ``asyncio.timeout`` around the step), and when a run ends while an
attempt of one of its steps is still out on a step worker or waiting to be retried.
``signal.received`` moves a signal from the run's inbox into its history (in inbox
order; not an operation, like ``patch.applied``); signals sent with the start are
received from ``workflow.started`` before any of those, indexes counting on from them.
A wait (``wait_for_signal``) is an operation: it starts with ``signal.consumed`` when a
signal was there, else with ``signal.waiting``. ``hook.disposed`` is written when a run
ends with a hook it never consumed: later deliveries to that hook are refused. Schedules
have no run log of their own; their ``schedule.triggered`` / ``schedule.skipped``
entries live in the schedule's bounded history (``Schedule.recent``), and the started
run's ``workflow.started`` names the schedule and tick.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pyworkflow.serialization.errors import truncate_text
from pyworkflow.storage.schemas import Event, EventType

FORMAT_VERSION = 1
VERSION_FIELD = "v"

# The field naming the operation of each event that starts a durable operation. The
# order in which these appear is the run's "operation order" that replay checks for
# determinism (a step's later attempts repeat its step.started: only the first counts).
OPERATION_ID_FIELDS: dict[EventType, str] = {
    EventType.STEP_STARTED: "step_id",
    EventType.SLEEP_STARTED: "sleep_id",
    EventType.STEP_CONTEXT_SET: "op_id",
    EventType.CHILD_WORKFLOW_STARTED: "child_id",
    EventType.CANCELLATION_REQUESTED: "op_id",
    EventType.HOOK_CREATED: "hook_id",
    EventType.SIGNAL_WAITING: "wait_id",
    EventType.SIGNAL_CONSUMED: "wait_id",
}
OPERATION_START_TYPES = frozenset(OPERATION_ID_FIELDS)

# The operation id under which a delivered cancellation sits in the operation order, so a
# replay raises CancellationError at exactly the point the original execution did.
CANCEL_OP_PREFIX = "cancel:delivered"
CANCEL_OP_ID = f"{CANCEL_OP_PREFIX}#1"

LOG_EVENT_TYPES = {
    "debug": EventType.LOG_DEBUG,
    "info": EventType.LOG_INFO,
    "warning": EventType.LOG_WARNING,
    "error": EventType.LOG_ERROR,
}

Draft = tuple[EventType, dict[str, Any]]
"""An event not yet given a sequence number: its type and payload."""


def payload_version(data: dict[str, Any]) -> int:
    """The format version of a stored payload (0: written before versions existed)."""
    value = data.get(VERSION_FIELD, 0)
    return value if isinstance(value, int) else 0


def operation_id(event: Event) -> str | None:
    """The operation an event starts, or ``None`` if it starts none."""
    field = OPERATION_ID_FIELDS.get(event.type)
    if field is None:
        return None
    if event.type is EventType.CANCELLATION_REQUESTED:
        return str(event.data.get(field, CANCEL_OP_ID))
    return str(event.data[field])


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- workflow ------------------------------------------------------------------------------


def workflow_started(
    workflow_name: str,
    args: Any,
    kwargs: Any,
    tags: list[str],
    schedule: dict[str, Any] | None = None,
    retry_of: str | None = None,
    queue: str | None = None,
    signals: list[dict[str, Any]] | None = None,
    concurrency_key: str | None = None,
) -> dict[str, Any]:
    data = {
        "v": FORMAT_VERSION,
        "workflow_name": workflow_name,
        "args": args,
        "kwargs": kwargs,
        "tags": tags,
        **(schedule or {}),
    }
    if retry_of is not None:
        data["retry_of"] = retry_of
    if queue is not None:  # routed to a queue of its own (the run record keeps it too)
        data["queue"] = queue
    if signals:  # signal-with-start: received before anything the inbox holds
        data["signals"] = signals
    if concurrency_key is not None:  # the limit it counts against (engine.flow)
        data["concurrency_key"] = concurrency_key
    return data


def workflow_resumed() -> dict[str, Any]:
    return {"v": FORMAT_VERSION}


def workflow_suspended(reason: str, wake_at: datetime | None) -> dict[str, Any]:
    return {"v": FORMAT_VERSION, "reason": reason, "wake_at": _iso(wake_at)}


def workflow_interrupted(reason: str, recovery_attempt: int) -> dict[str, Any]:
    return {"v": FORMAT_VERSION, "reason": reason, "recovery_attempt": recovery_attempt}


def workflow_completed(result: Any) -> dict[str, Any]:
    return {"v": FORMAT_VERSION, "result": result}


def workflow_failed(error: dict[str, Any]) -> dict[str, Any]:
    return {"v": FORMAT_VERSION, "error": error, "error_type": error.get("type")}


def workflow_cancelled(reason: str | None, error: str) -> dict[str, Any]:
    return {"v": FORMAT_VERSION, "reason": reason, "error": error}


def workflow_continued_as_new(new_run_id: str) -> dict[str, Any]:
    return {"v": FORMAT_VERSION, "new_run_id": new_run_id}


# -- steps ---------------------------------------------------------------------------------


def step_started(
    step_id: str,
    step_name: str,
    attempt: int,
    *,
    round_owner: str | None = None,
    step_input: dict[str, Any] | None = None,
    queue: str | None = None,
) -> dict[str, Any]:
    """``round_owner`` set: the attempt is dispatched to a step worker with ``step_input``
    (through ``queue``, when not the default step queue: a re-send needs no code)."""
    data: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "step_id": step_id,
        "step_name": step_name,
        "attempt": attempt,
    }
    if round_owner is not None:
        data["dispatched"] = True
        data["round"] = round_owner
        data["input"] = step_input
        if queue is not None:
            data["queue"] = queue
    return data


def step_completed(step_id: str, step_name: str, attempt: int, result: Any) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "step_id": step_id,
        "step_name": step_name,
        "attempt": attempt,
        "result": result,
    }


def step_failed(
    step_id: str,
    step_name: str,
    attempt: int,
    error: dict[str, Any],
    *,
    fatal: bool,
    will_retry: bool,
) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "step_id": step_id,
        "step_name": step_name,
        "attempt": attempt,
        "error": error,
        "fatal": fatal,
        "will_retry": will_retry,
    }


def step_retrying(
    step_id: str, step_name: str, next_attempt: int, retry_at: datetime, delay: float
) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "step_id": step_id,
        "step_name": step_name,
        "attempt": next_attempt,
        "retry_at": retry_at.isoformat(),
        "delay_seconds": delay,
    }


def step_cancelled(step_id: str, step_name: str, attempt: int, reason: str) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "step_id": step_id,
        "step_name": step_name,
        "attempt": attempt,
        "reason": reason,
    }


# -- sleeps, step context, cancellation ------------------------------------------------------


def sleep_started(
    sleep_id: str, name: str | None, fire_at: datetime, duration_seconds: float
) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "sleep_id": sleep_id,
        "name": name,
        "fire_at": fire_at.isoformat(),
        "duration_seconds": duration_seconds,
    }


def patch_applied(patch_id: str) -> dict[str, Any]:
    """A run took the new path of a change (``patched(patch_id)``); not an operation."""
    return {"v": FORMAT_VERSION, "patch_id": patch_id}


# -- signals -------------------------------------------------------------------------------


def signal_received(
    index: int, name: str, payload: Any, signal_id: str, sequence: int, sent_at: datetime
) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "index": index,
        "name": name,
        "payload": payload,
        "signal_id": signal_id,
        "sequence": sequence,
        "sent_at": sent_at.isoformat(),
    }


def signal_waiting(wait_id: str, name: str, timeout_at: datetime | None) -> dict[str, Any]:
    return {"v": FORMAT_VERSION, "wait_id": wait_id, "name": name, "timeout_at": _iso(timeout_at)}


def signal_consumed(wait_id: str, name: str, index: int) -> dict[str, Any]:
    return {"v": FORMAT_VERSION, "wait_id": wait_id, "name": name, "index": index}


def signal_timed_out(wait_id: str, name: str) -> dict[str, Any]:
    return {"v": FORMAT_VERSION, "wait_id": wait_id, "name": name}


def sleep_completed(sleep_id: str) -> dict[str, Any]:
    return {"v": FORMAT_VERSION, "sleep_id": sleep_id}


def step_context_set(op_id: str, context: Any) -> dict[str, Any]:
    return {"v": FORMAT_VERSION, "op_id": op_id, "context": context}


def cancellation_requested(reason: str | None) -> dict[str, Any]:
    return {"v": FORMAT_VERSION, "op_id": CANCEL_OP_ID, "reason": reason}


# -- hooks ---------------------------------------------------------------------------------


def hook_created(
    hook_id: str, name: str, token_hash: str, token_hint: str, expires_at: datetime | None
) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "hook_id": hook_id,
        "name": name,
        "token_hash": token_hash,
        "token_hint": token_hint,
        "expires_at": _iso(expires_at),
    }


def hook_received(hook_id: str, payload: Any) -> dict[str, Any]:
    return {"v": FORMAT_VERSION, "hook_id": hook_id, "payload": payload}


def hook_expired(hook_id: str) -> dict[str, Any]:
    return {"v": FORMAT_VERSION, "hook_id": hook_id}


def hook_disposed(hook_id: str, reason: str) -> dict[str, Any]:
    return {"v": FORMAT_VERSION, "hook_id": hook_id, "reason": reason}


# -- child workflows ---------------------------------------------------------------------


def child_started(
    child_id: str, child_run_id: str, workflow_name: str, parent_close_policy: str
) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "child_id": child_id,
        "child_run_id": child_run_id,
        "workflow_name": workflow_name,
        "parent_close_policy": parent_close_policy,
    }


CHILD_OUTCOME_TYPES = {
    "completed": EventType.CHILD_WORKFLOW_COMPLETED,
    "failed": EventType.CHILD_WORKFLOW_FAILED,
    "cancelled": EventType.CHILD_WORKFLOW_CANCELLED,
}


def child_outcome(
    child_id: str, child_run_id: str, *, result: Any = None, error: str | None = None
) -> dict[str, Any]:
    """Payload of ``child_workflow.completed`` (``result``) or ``.failed``/``.cancelled``."""
    data: dict[str, Any] = {"v": FORMAT_VERSION, "child_id": child_id, "child_run_id": child_run_id}
    if error is None:
        data["result"] = result
    else:
        data["error"] = error
    return data


# -- logs and schedules ----------------------------------------------------------------------


def log_message(message: str, step_id: str | None = None) -> dict[str, Any]:
    """``step_id``: written by that step's body (replay does not count it with the
    workflow's own messages, which it runs again). A message longer than
    :data:`~pyworkflow.serialization.errors.ERROR_TEXT_LIMIT` characters is cut (the
    cut marked), so a huge log line is never an oversize event that fails the run."""
    message = truncate_text(message)
    if step_id is None:
        return {"v": FORMAT_VERSION, "message": message}
    return {"v": FORMAT_VERSION, "message": message, "step_id": step_id}


def schedule_entry(
    schedule_id: str,
    tick: datetime,
    *,
    run_id: str | None,
    skipped_reason: str | None,
    at: datetime | None,
) -> tuple[EventType, dict[str, Any]]:
    """A schedule history entry: ``schedule.triggered`` (a run started) or
    ``schedule.skipped`` (``skipped_reason`` set)."""
    data: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "schedule_id": schedule_id,
        "tick": tick.isoformat(),
        "at": _iso(at),
    }
    if skipped_reason is None:
        data["run_id"] = run_id
        return EventType.SCHEDULE_TRIGGERED, data
    data["reason"] = skipped_reason
    return EventType.SCHEDULE_SKIPPED, data


__all__ = [
    "CANCEL_OP_ID",
    "CANCEL_OP_PREFIX",
    "CHILD_OUTCOME_TYPES",
    "FORMAT_VERSION",
    "LOG_EVENT_TYPES",
    "OPERATION_ID_FIELDS",
    "OPERATION_START_TYPES",
    "VERSION_FIELD",
    "Draft",
    "Event",
    "EventType",
    "operation_id",
    "payload_version",
]
