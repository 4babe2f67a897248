"""Golden histories: checked-in event logs that today's workflow code must replay.

Each JSON file in ``histories/`` was recorded by ``record_histories.py`` from the
workflows in ``workflows.py``. A change to those workflows, or to the engine's event
payloads, operation ids or replay rules, that breaks runs recorded by an earlier version
fails here. Re-record with ``python -m tests.replay.record_histories --force NAME`` only
on purpose (see its docstring), never to make a failing replay pass.

* ``"format": 2`` histories hold a whole recorded world and the points where its runs
  rested in storage (see ``spec``). Each such cut is replayed and must end as the
  recording did: same status, result and error, same events (the same operations in
  the same order, with the same recorded payload fields), and no step body run again
  whose outcome the history already holds.
* Histories without ``"format"`` (the first recorder) hold events up to a suspension
  and the ``expect``-ed outcome.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pyworkflow import wait_for_run
from pyworkflow.engine.events import FORMAT_VERSION, Event, EventType, payload_version
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.schemas import RunStatus, WorkflowRun, utcnow
from pyworkflow.testing import resume_local
from tests.replay import harness, record_histories, spec
from tests.replay.workflows import CALLS

HISTORIES = {
    path.stem: json.loads(path.read_text())
    for path in sorted((Path(__file__).parent / "histories").glob("*.json"))
}
LEGACY = {name: h for name, h in HISTORIES.items() if "format" not in h}
GOLDENS = {name: h for name, h in HISTORIES.items() if h.get("format") == spec.FORMAT}

CUTS = [
    pytest.param(name, cut, id=f"{name}-{spec.cut_label(golden, cut)}")
    for name, golden in GOLDENS.items()
    for cut in spec.cuts_of(golden)
]

# Golden, changed workflow (variants.py), the recorded operation it contradicts, and the
# operation it asks for instead: both must be named by the NonDeterminismError.
VARIANTS = [
    ("hook_received_typed", "hook:golden_approval#1", "hook:golden_sign_off#1"),
    ("hook_expired", "hook:golden_reply#1", "step:golden_remind#1"),
    ("child_workflows", "child:golden_child_ship#1", "child:golden_child_invoice#1"),
    ("cancelled_with_shield", "step:golden_release#1", "step:golden_tell_customer#1"),
    ("continued_as_new", "step:golden_process_batch#1", "sleep:between_batches#1"),
    ("step_context", "step_context:set#1", "step:golden_read_tenant#1"),
    ("retried_after_delay", "step:golden_charge_card#1", "step:golden_receipt#1"),
    ("dispatched_steps", "step:golden_price#2", "step:golden_total#1"),
    ("recovered_lost_step_worker", "step:golden_label#1", "step:golden_pack#1"),
    ("recovered_after_crash", "step:golden_label#1", "step:golden_pack#1"),
    ("retry_wait_cancelled", "step:golden_settle_invoice#1", "step:golden_void_invoice#1"),
    ("hook_disposed_on_cancel", "hook:golden_review#1", "hook:golden_second_review#1"),
    ("step_cut_by_deadline", "sleep:before_export#1", "step:golden_export#1"),
]

# Event types no run log holds: a schedule's history holds them (see docs/events.md).
NOT_IN_RUN_LOGS = {
    EventType.SCHEDULE_TRIGGERED,
    EventType.SCHEDULE_SKIPPED,
}


@pytest.mark.parametrize(("name", "cut"), CUTS)
async def test_golden_history_replays_to_the_recorded_outcome(name: str, cut: spec.Cut) -> None:
    golden = GOLDENS[name]
    replayed = await harness.replay(golden, cut)
    want = spec.expected(golden, cut)
    assert replayed.runs == want.runs
    assert replayed.executed == want.executed  # no recorded step ran again


@pytest.mark.parametrize(("name", "recorded_op", "new_op"), VARIANTS)
async def test_changed_workflow_is_non_deterministic(
    name: str, recorded_op: str, new_op: str
) -> None:
    golden = GOLDENS[name]
    cut = [c for c in spec.cuts_of(golden) if c.run_id == golden["main"]][-1]
    workflow = spec.runs_of(golden)[cut.run_id]["run"]["workflow_name"] + "_changed"
    replayed = await harness.replay(golden, cut, workflow=workflow)
    run = replayed.runs[cut.run_id]
    assert run["status"] == "failed", run["error"]
    for fragment in ("NonDeterminismError", recorded_op, new_op):
        assert fragment in run["error"]
    assert run["events"][-1]["type"] == "workflow.failed"
    assert replayed.executed == {}  # it fails before running anything


def test_goldens_cover_every_event_type_written_today() -> None:
    written = {
        event["type"]
        for golden in HISTORIES.values()
        for events in _logs(golden)
        for event in events
    }
    assert written >= {t.value for t in EventType if t not in NOT_IN_RUN_LOGS}


def test_goldens_cover_the_dispatched_shapes() -> None:
    dispatched = [
        event["data"]
        for golden in GOLDENS.values()
        for events in _logs(golden)
        for event in events
        if event["data"].get("dispatched")
    ]
    rounds = Counter(data["round"] for data in dispatched)
    assert max(rounds.values()) >= 2  # a gather: two steps dispatched in one round
    assert any(data["attempt"] > 1 for data in dispatched)  # re-dispatched after recovery
    states = {cut.state for golden in GOLDENS.values() for cut in spec.cuts_of(golden)}
    assert states == {"suspended", "dispatched", "interrupted"}


@pytest.mark.parametrize("version", [0, FORMAT_VERSION])
async def test_histories_of_each_payload_format_version_replay(version: int) -> None:
    """Histories written before payloads carried ``"v"`` (version 0) and histories written
    by today's version both replay (each history is of one version throughout). A new
    format version needs a golden history recorded by it."""
    assert all(len(_versions(golden)) == 1 for golden in HISTORIES.values())
    names = [name for name, golden in GOLDENS.items() if _versions(golden) == {version}]
    assert names, f"no golden history of payload format version {version}"
    golden = GOLDENS[names[0]]
    cut = spec.cuts_of(golden)[-1]
    assert await harness.replay(golden, cut) == spec.expected(golden, cut)


def _versions(golden: dict[str, Any]) -> set[int]:
    return {payload_version(event["data"]) for events in _logs(golden) for event in events}


def _logs(golden: dict[str, Any]) -> list[list[dict[str, Any]]]:
    if "format" not in golden:
        return [golden["events"]]
    return [entry["events"] for entry in golden["runs"]]


# -- histories of the first recorder ---------------------------------------------------


async def load_legacy(raw: dict[str, Any]) -> tuple[InMemoryStorageBackend, str, dict[str, Any]]:
    """Store the recorded events as a suspended run that is due now."""
    events = [Event.from_dict(e) for e in raw["events"]]
    started = events[0]
    assert started.type == EventType.WORKFLOW_STARTED
    run = WorkflowRun(
        run_id=started.run_id,
        workflow_name=raw["workflow"],
        status=RunStatus.SUSPENDED,
        input_payload=json.dumps({"args": started.data["args"], "kwargs": started.data["kwargs"]}),
        wake_at=utcnow() - timedelta(seconds=1),
        last_sequence=events[-1].sequence,
    )
    storage = InMemoryStorageBackend()
    await storage.create_run(run, events)
    return storage, run.run_id, raw["expect"]


@pytest.mark.parametrize("name", sorted(LEGACY))
async def test_golden_history_replays(name: str) -> None:
    storage, run_id, expect = await load_legacy(LEGACY[name])
    recorded = len(await storage.get_events(run_id))
    before = Counter(CALLS)

    await resume_local(run_id, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=10)

    assert run.status == expect["status"], run.error
    if "result" in expect:
        assert run.result == expect["result"]
    for fragment in expect.get("error_contains", []):
        assert fragment in (run.error or ""), run.error
    events = await storage.get_events(run_id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert len(events) > recorded
    # Replay re-executes nothing that was recorded: the step bodies that ran are exactly
    # the step outcomes appended after the recorded events.
    appended = Counter(
        e.data["step_name"]
        for e in events[recorded:]
        if e.type in (EventType.STEP_COMPLETED, EventType.STEP_FAILED)
    )
    assert Counter(CALLS) - before == appended


def test_every_golden_history_is_tested() -> None:
    assert set(LEGACY) == set(record_histories.LEGACY)
    assert set(GOLDENS) == set(record_histories.SCENARIOS)
    assert {name for name, *_ in VARIANTS} <= set(GOLDENS)
    assert all(spec.cuts_of(golden) for golden in GOLDENS.values())
