"""Replaying a golden history from one of its cuts (see ``spec`` for the format and
what the replay must produce).

The cut run is stored with its events up to the cut, in the state it had there: due
now if it was suspended (the recorded ``fire_at``/``retry_at`` lie in the past anyway;
a hook's ``expires_at``, or a sleep or retry meant to outlast the test, lie in the
future, as they did), leased to its dispatch round, or leased to a process that died;
its ``max_duration`` deadline as far ahead as it was when the run went on from there.
Around it the world is as the run finds it on waking: the other runs in their final
state (not those it creates again after the cut), hook payloads delivered (a hook the
run itself expired or disposed of is still pending), the signals sent to it in its inbox,
its cancellation requested.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from pyworkflow import wait_for_run
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.schemas import (
    Event,
    HookRecord,
    HookStatus,
    RunStatus,
    WorkflowRun,
    utcnow,
)
from tests.replay import variants  # noqa: F401 - registers the changed workflows
from tests.replay.drivers import LEASE_TTL, WAIT_SECONDS, drive_dispatched, drive_local
from tests.replay.spec import (
    Cut,
    Golden,
    Outcome,
    RawEvent,
    created_after,
    describe_run,
    normalize,
    projection,
    runs_of,
    written_at,
)
from tests.replay.workflows import CALLS


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _stored_run(run: dict[str, Any], events: list[RawEvent]) -> WorkflowRun:
    """The run as recorded, its log complete."""
    started = events[0]["data"]
    first, last = _time(events[0]["timestamp"]), _time(events[-1]["timestamp"])
    status = RunStatus(run["status"])
    return WorkflowRun(
        run_id=run["run_id"],
        workflow_name=run["workflow_name"],
        status=status,
        created_at=first or utcnow(),
        updated_at=last or utcnow(),
        started_at=first,
        completed_at=last if status.is_terminal else None,
        input_payload=json.dumps({"args": started["args"], "kwargs": started["kwargs"]}),
        result_payload=None if run["result"] is None else json.dumps(run["result"]),
        error=run["error"],
        tags=list(run["tags"]),
        parent_run_id=run["parent_run_id"],
        nesting_depth=run["nesting_depth"],
        continued_from_run_id=run["continued_from_run_id"],
        continued_to_run_id=run["continued_to_run_id"],
        cancel_requested_at=_time(run["cancel_requested_at"]),
        cancel_reason=run["cancel_reason"],
        last_sequence=len(events),
        # Settings recorded since payloads carry "v"; earlier runs had the defaults.
        max_duration=run.get("max_duration"),
        deadline_at=_time(run.get("deadline_at")),
        recover_on_worker_loss=run.get("recover_on_worker_loss", True),
        max_recovery_attempts=run.get("max_recovery_attempts", 3),
    )


def _run_at_cut(run: dict[str, Any], events: list[RawEvent], cut: Cut) -> WorkflowRun:
    """The run as stored at the cut (due now if it was suspended)."""
    prefix = events[: cut.after]
    stored = _stored_run({**run, "status": "running", "result": None, "error": None}, prefix)
    stored.continued_to_run_id = None
    contexts = [e["data"]["context"] for e in prefix if e["type"] == "step_context.set"]
    if contexts:
        stored.context_payload = json.dumps(contexts[-1])
    stored.recovery_attempts = sum(e["type"] == "workflow.interrupted" for e in prefix)
    now = utcnow()
    if stored.deadline_at is not None:  # as far ahead as when the run went on from the cut
        stored.deadline_at = now + (stored.deadline_at - written_at(events[cut.after]))
    if cut.state == "suspended":
        stored.status, stored.wake_at = RunStatus.SUSPENDED, now - timedelta(seconds=1)
    elif cut.state == "dispatched":
        rounds = [e["data"]["round"] for e in prefix if e["data"].get("dispatched")]
        stored.lease_owner = rounds[-1]
        stored.lease_expires_at = now + timedelta(seconds=LEASE_TTL)
    else:  # interrupted: the process holding the lease died long ago
        stored.lease_owner = "golden-host:1:dead"
        stored.lease_expires_at = now - timedelta(seconds=LEASE_TTL)
    return stored


def _hook(raw: dict[str, Any], reopen: bool) -> HookRecord:
    status = HookStatus(raw["status"])
    if reopen and status in (HookStatus.EXPIRED, HookStatus.DISPOSED):
        status = HookStatus.PENDING  # the run itself records the expiry or disposal
    return HookRecord(
        token_hash=raw["token_hash"],
        run_id=raw["run_id"],
        hook_id=raw["hook_id"],
        name=raw["name"],
        token=raw["token"],
        status=status,
        created_at=_time(raw["created_at"]) or utcnow(),
        expires_at=_time(raw["expires_at"]),
        received_at=_time(raw["received_at"]),
        payload=raw["payload"],
        schema=raw["schema"],
    )


async def load(
    golden: Golden, cut: Cut, workflow: str | None = None
) -> tuple[InMemoryStorageBackend, list[str]]:
    """Fresh storage holding the world of ``golden`` at ``cut``; the cut run replays as
    ``workflow`` if given. Returns it and the runs the replay must create again."""
    storage = InMemoryStorageBackend()
    recreated = created_after(golden, cut)
    for run_id, entry in runs_of(golden).items():
        events = entry["events"]
        if run_id in recreated:
            continue
        if run_id == cut.run_id:
            run = _run_at_cut(entry["run"], events, cut)
            run.workflow_name = workflow or run.workflow_name
            events = events[: cut.after]
        else:
            run = _stored_run(entry["run"], events)
        await storage.create_run(run, [Event.from_dict(e) for e in events])
    for raw in golden["hooks"]:
        if raw["run_id"] not in recreated:
            await storage.save_hook(_hook(raw, reopen=raw["run_id"] == cut.run_id))
    for raw in golden.get("signals", []):  # in inbox order, so each gets its sequence
        if raw["run_id"] not in recreated:
            sent_at = _time(raw["sent_at"]) or utcnow()
            await storage.send_signal(
                raw["run_id"], raw["name"], raw["payload"], signal_id=raw["signal_id"], now=sent_at
            )
    return storage, recreated


async def replay(golden: Golden, cut: Cut, workflow: str | None = None) -> Outcome:
    """Replay ``golden`` from ``cut`` with today's code (as ``workflow`` if given)."""
    storage, recreated = await load(golden, cut, workflow)
    before = Counter(CALLS)
    if golden["mode"] == "dispatch":
        await drive_dispatched(storage, cut.run_id, cut.state)
    else:
        await drive_local(storage, cut.run_id, cut.state)
    outcome = Outcome()
    recorded = runs_of(golden)
    for run_id in [cut.run_id, *recreated]:
        if await storage.get_run(run_id) is None:
            continue  # never created: the comparison reports it missing
        run = await wait_for_run(run_id, storage=storage, timeout=WAIT_SECONDS)
        events = [e.to_dict() for e in await storage.get_events(run_id)]
        outcome.runs[run_id] = {
            **projection(describe_run(run)),
            "gapless": [e["sequence"] for e in events] == list(range(1, len(events) + 1)),
            "events": normalize(events, like=recorded[run_id]["events"]),
        }
    outcome.executed = dict(Counter(CALLS) - before)
    return outcome
