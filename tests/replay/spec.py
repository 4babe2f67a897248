"""The golden history format, and what replaying one must produce.

A golden history (``"format": 2``) is the whole recorded world of one scenario:

* ``runs``: every run it involved (the main run, its children, its continuations), each
  with its final state (``run``) and its complete event log (``events``, as
  ``Event.to_dict()`` wrote them);
* ``hooks``: the hooks those runs created, with their tokens (a replay that creates a
  hook again gets the stored one back, with the same token hash);
* ``signals``: what those runs' signal inboxes held (absent from goldens recorded before
  signals existed), in each inbox's order;
* ``cuts``: the points at which a run's log rested in storage between two writers and
  where a new version of the code may pick it up: before each execution (the run was
  suspended, handed to step workers, or left behind by a dead process) and before each
  step worker's append;
* ``mode``: ``"local"`` (the local runtime) or ``"dispatch"`` (steps run by step
  workers, the Celery execution shape, driven without Celery: see ``drivers``).

Replaying a cut (see ``harness``) must end as the recording did, for the cut run and
for every run it creates again after the cut:

* the same final status, result and error;
* the same event log, normalised: timestamps, event ids, sequence numbers (checked
  separately: gapless) and dispatch-round ids are left out, the time fields inside
  payloads (``fire_at``, ``retry_at``, ``wake_at``, ``expires_at``) only count as
  present or null, an error keeps its type and message, wake-ups that found nothing to
  do are left out (see ``_without_idle_wakes``), as is the payload format version
  ``"v"`` (each version writes its own), and payload keys an event did not have when it
  was recorded are ignored: a later version may add one but must keep writing the
  recorded ones with the same values;
* step bodies run exactly as often as the step outcomes the replay appends, plus the
  attempts it cancels while they run (``executed``), so no step whose outcome the
  history holds ran again.

A cut lies where the run rested, in the world as it was once the run ended (see
``harness``): its cancellation, if any, already requested. A run only waits there as
recorded from the point its cancellation was requested on, so the recorder keeps the
cuts from that point (see ``replayable_points``).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pyworkflow.engine.events import VERSION_FIELD
from pyworkflow.storage.schemas import HookRecord, SignalRecord, WorkflowRun

FORMAT = 2

Golden = dict[str, Any]
RawEvent = dict[str, Any]

_TIMES = frozenset({"fire_at", "retry_at", "wake_at", "expires_at", "timeout_at"})
_OUTCOMES = frozenset({"step.completed", "step.failed"})


@dataclass(frozen=True, slots=True)
class Cut:
    """Replay ``run_id`` from its first ``after`` events, stored in ``state``."""

    run_id: str
    after: int
    state: str  # "suspended" | "dispatched" | "interrupted"


@dataclass(slots=True)
class Outcome:
    """What a replay produced (or, from the golden, what it must produce)."""

    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    executed: dict[str, int] = field(default_factory=dict)


def cuts_of(golden: Golden) -> list[Cut]:
    return [Cut(c["run_id"], c["after"], c["state"]) for c in golden["cuts"]]


def cut_label(golden: Golden, cut: Cut) -> str:
    """``run<i>@<after>-<state>``, ``i`` the run's index in the golden (0: the main run)."""
    index = list(runs_of(golden)).index(cut.run_id)
    return f"run{index}@{cut.after}-{cut.state}"


def runs_of(golden: Golden) -> dict[str, Golden]:
    return {entry["run"]["run_id"]: entry for entry in golden["runs"]}


def in_flight(events: list[RawEvent]) -> dict[str, str | None]:
    """Dispatched step attempts without a recorded outcome: op id -> dispatch round."""
    pending: dict[str, str | None] = {}
    for event in events:
        kind, data = event["type"], event["data"]
        if kind == "workflow.interrupted":
            pending.clear()  # attempts dispatched before a recovery are lost
        elif kind == "step.started" and data.get("dispatched"):
            pending[data["step_id"]] = data.get("round")
        elif kind == "step.started" or kind in _OUTCOMES:
            pending.pop(data["step_id"], None)
    return pending


def resting_points(events: list[RawEvent]) -> list[tuple[int, str]]:
    """Where this log rested in storage between two writers: before every execution of
    the workflow (after a suspension, a dispatch round, or a lost process) and before
    every step worker's append. Returns ``(events before the point, run state)``."""
    points: list[tuple[int, str]] = []
    for index, event in enumerate(events[1:], start=1):
        kind, previous = event["type"], events[index - 1]["type"]
        if kind == "workflow.interrupted":
            points.append((index, "interrupted"))
        elif kind == "workflow.resumed" and previous != "workflow.interrupted":
            state = "suspended" if previous == "workflow.suspended" else "dispatched"
            points.append((index, state))
        elif kind in _OUTCOMES and event["data"]["step_id"] in in_flight(events[:index]):
            points.append((index, "dispatched"))
    return points


def replayable_points(run: dict[str, Any], events: list[RawEvent]) -> list[tuple[int, str]]:
    """The resting points (see :func:`resting_points`) from which a replay can end as
    recorded: a run that was cancelled is replayed with its cancellation requested from
    the start, so only the points from its request on (before them the run went on as if
    nothing had been asked)."""
    requested = run.get("cancel_requested_at")
    points = resting_points(events)
    if requested is None:
        return points
    at = datetime.fromisoformat(requested)
    return [(after, state) for after, state in points if written_at(events[after]) >= at]


def written_at(event: RawEvent) -> datetime:
    return datetime.fromisoformat(event["timestamp"])


def created_after(golden: Golden, cut: Cut) -> list[str]:
    """Runs that the cut run (directly or through runs it starts) creates after the cut:
    the replay must create them again, so they are not loaded."""
    runs = runs_of(golden)
    created: list[str] = []
    frontier = [(cut.run_id, cut.after)]
    while frontier:
        run_id, start = frontier.pop()
        for event in runs[run_id]["events"][start:]:
            new = event["data"].get("child_run_id") or event["data"].get("new_run_id")
            creates = event["type"] in ("child_workflow.started", "workflow.continued_as_new")
            if creates and new in runs and new not in created:
                created.append(new)
                frontier.append((new, 0))
    return created


def expected(golden: Golden, cut: Cut) -> Outcome:
    """The outcome the recording had, for a replay from ``cut``."""
    runs = runs_of(golden)
    outcome = Outcome()
    executed: Counter[str] = Counter()
    for run_id in [cut.run_id, *created_after(golden, cut)]:
        entry = runs[run_id]
        events = entry["events"]
        outcome.runs[run_id] = {
            **projection(entry["run"]),
            "gapless": True,
            "events": normalize(events),
        }
        tail = events[cut.after :] if run_id == cut.run_id else events
        executed.update(ran_in(tail))
    outcome.executed = dict(executed)
    return outcome


def ran_in(events: list[RawEvent]) -> list[str]:
    """The step bodies that ran while ``events`` were written: one per step outcome, and
    one per attempt started here and cancelled while it ran (a ``step.cancelled`` for an
    attempt that waited for its retry, or was out on a step worker, ran nothing)."""
    names, live = [], set()
    for event in events:
        kind, data = event["type"], event["data"]
        if kind == "step.started" and not data.get("dispatched"):
            live.add((data["step_id"], data["attempt"]))
        elif kind in _OUTCOMES or (
            kind == "step.cancelled" and (data["step_id"], data["attempt"]) in live
        ):
            names.append(data["step_name"])
    return names


def projection(run: dict[str, Any]) -> dict[str, Any]:
    return {k: run.get(k) for k in ("status", "result", "error", "continued_to_run_id")}


def normalize(events: list[RawEvent], like: list[RawEvent] | None = None) -> list[RawEvent]:
    """Events without what differs between two executions (see the module docstring).
    With ``like`` (recorded events), keep only the data keys each recorded event had."""
    events = _without_idle_wakes(events)
    like = None if like is None else _without_idle_wakes(like)
    result = []
    for index, event in enumerate(events):
        data = {k: v for k, v in event["data"].items() if k != VERSION_FIELD}
        if like is not None and index < len(like):
            data = {k: v for k, v in data.items() if k in like[index]["data"]}
        result.append({"type": event["type"], "data": {k: _stable(k, v) for k, v in data.items()}})
    return result


def _without_idle_wakes(events: list[RawEvent]) -> list[RawEvent]:
    """Leave out wake-ups of a suspended run that found nothing to do (``resumed`` then
    at once ``suspended`` again): when a runtime wakes a run is timing, not history. The
    local runtime's recovery pass, for one, wakes every suspended run that has a received
    hook or a cancellation request, also after the run has seen it."""
    kept: list[RawEvent] = []
    for event in events:
        if (
            event["type"] == "workflow.suspended"
            and len(kept) >= 2
            and kept[-1]["type"] == "workflow.resumed"
            and kept[-2]["type"] == "workflow.suspended"
        ):
            kept.pop()
            continue
        kept.append(event)
    return kept


def _stable(key: str, value: Any) -> Any:
    if key in _TIMES:
        return None if value is None else "<time>"
    if key == "round":
        return "<round>"
    if key == "error" and isinstance(value, dict):
        return {"type": value.get("type"), "message": value.get("message")}
    return value


# -- recording ------------------------------------------------------------------------


def describe_run(run: WorkflowRun) -> dict[str, Any]:
    """The fields of a run a golden history records (goldens recorded before payloads
    carried ``"v"`` lack the run's settings, from ``max_duration`` on: their runs had
    the defaults)."""
    return {
        "run_id": run.run_id,
        "workflow_name": run.workflow_name,
        "status": run.status.value,
        "result": None if run.result_payload is None else json.loads(run.result_payload),
        "error": run.error,
        "tags": list(run.tags),
        "parent_run_id": run.parent_run_id,
        "nesting_depth": run.nesting_depth,
        "continued_from_run_id": run.continued_from_run_id,
        "continued_to_run_id": run.continued_to_run_id,
        "cancel_requested_at": _iso(run.cancel_requested_at),
        "cancel_reason": run.cancel_reason,
        "max_duration": run.max_duration,
        "deadline_at": _iso(run.deadline_at),
        "recover_on_worker_loss": run.recover_on_worker_loss,
        "max_recovery_attempts": run.max_recovery_attempts,
    }


def describe_hook(hook: HookRecord) -> dict[str, Any]:
    """A hook as a golden history records it (its token included: a replay that creates
    the hook again gets the same one back from storage)."""
    return {
        "token_hash": hook.token_hash,
        "run_id": hook.run_id,
        "hook_id": hook.hook_id,
        "name": hook.name,
        "token": hook.token,
        "status": hook.status.value,
        "created_at": _iso(hook.created_at),
        "expires_at": _iso(hook.expires_at),
        "received_at": _iso(hook.received_at),
        "payload": hook.payload,
        "schema": hook.schema,
    }


def describe_signal(signal: SignalRecord) -> dict[str, Any]:
    """A signal in a run's inbox as a golden history records it."""
    return {
        "run_id": signal.run_id,
        "sequence": signal.sequence,
        "name": signal.name,
        "payload": signal.payload,
        "signal_id": signal.signal_id,
        "sent_at": _iso(signal.sent_at),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
