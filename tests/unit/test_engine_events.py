"""Event payloads: every one carries its format version; a newer or older version's
payloads replay; step.cancelled and hook.disposed record what an ended run left open."""

from __future__ import annotations

import asyncio

from pyworkflow import (
    EventType,
    RetryableError,
    cancel_workflow,
    get_workflow_events,
    get_workflow_run,
    hook,
    resume,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.engine.events import FORMAT_VERSION, OPERATION_START_TYPES, payload_version
from pyworkflow.engine.replay import History
from pyworkflow.storage.memory import InMemoryStorageBackend

calls: dict[str, int] = {}


@step(name="ev_add")
async def add(a: int, b: int) -> int:
    calls["add"] = calls.get("add", 0) + 1
    return a + b


@workflow(name="ev_sum_after_sleep")
async def sum_after_sleep() -> int:
    first = await add(1, 2)
    await sleep("0.2s")
    return first + await add(3, 4)


@step(name="ev_flaky", max_retries=3, retry_delay=60)
async def flaky() -> None:
    raise RetryableError("down")


@workflow(name="ev_retry_wait")
async def retry_wait() -> None:
    await flaky()


@step(name="ev_slow")
async def slow() -> None:
    await asyncio.sleep(10)


@workflow(name="ev_too_slow", max_duration="0.2s")
async def too_slow() -> None:
    await slow()


@workflow(name="ev_waits_for_hook")
async def waits_for_hook() -> object:
    return await hook("ev_approval")


async def test_every_payload_carries_the_format_version() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(sum_after_sleep, storage=storage)
    assert (await wait_for_run(run_id, timeout=5, storage=storage)).result == 10
    events = await get_workflow_events(run_id, storage=storage)
    assert {e.type for e in events} >= {EventType.SLEEP_STARTED, EventType.WORKFLOW_RESUMED}
    assert all(e.data["v"] == FORMAT_VERSION for e in events), [e.data for e in events]


async def test_payloads_of_older_and_newer_versions_replay() -> None:
    """A run suspended by another version: its payloads lack the version (written before
    it existed) or carry a newer one with fields this version does not know."""
    for variant in ("older", "newer"):
        calls.clear()
        storage = InMemoryStorageBackend()
        run_id = await start(sum_after_sleep, storage=storage)
        for event in storage._events[run_id]:  # what the other version stored
            if variant == "older":
                event.data.pop("v")
            else:
                event.data.update(v=FORMAT_VERSION + 1, added_by_a_newer_version={"x": 1})
        await asyncio.sleep(0.25)
        await resume(run_id, storage=storage)
        assert (await wait_for_run(run_id, timeout=5, storage=storage)).result == 10
        assert calls["add"] == 2, variant  # the recorded first step did not run again
    assert payload_version({}) == 0


async def test_operation_order_comes_from_the_one_table_of_start_types() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(sum_after_sleep, storage=storage)
    await wait_for_run(run_id, timeout=5, storage=storage)
    events = await get_workflow_events(run_id, storage=storage)
    history = History.from_events(run_id, events)
    started = [e for e in events if e.type in OPERATION_START_TYPES]
    assert history.op_order == ["step:ev_add#1", "sleep:sleep#1", "step:ev_add#2"]
    assert history.op_sequences == [e.sequence for e in started]


async def test_cancelling_a_run_waiting_to_retry_records_step_cancelled() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(retry_wait, storage=storage)
    assert (await get_workflow_run(run_id, storage=storage)).status == "suspended"
    assert await cancel_workflow(run_id, "stop", wait=True, timeout=5, storage=storage)
    events = await get_workflow_events(run_id, storage=storage)
    [cancelled] = [e for e in events if e.type == EventType.STEP_CANCELLED]
    assert cancelled.data["step_id"] == "step:ev_flaky#1"
    assert cancelled.data["attempt"] == 2  # the attempt that will never run
    assert events[-1].type == EventType.WORKFLOW_CANCELLED
    assert cancelled.sequence < events[-1].sequence


async def test_a_step_cut_by_max_duration_is_recorded_cancelled() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(too_slow, storage=storage)
    run = await get_workflow_run(run_id, storage=storage)
    assert run.status == "failed"
    types = [e.type for e in await get_workflow_events(run_id, storage=storage)]
    assert types[-3:] == [
        EventType.STEP_STARTED,
        EventType.STEP_CANCELLED,
        EventType.WORKFLOW_FAILED,
    ]


async def test_an_ended_run_records_its_open_hooks_disposed() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(waits_for_hook, storage=storage)
    assert await cancel_workflow(run_id, "no longer needed", wait=True, timeout=5, storage=storage)
    events = await get_workflow_events(run_id, storage=storage)
    [disposed] = [e for e in events if e.type == EventType.HOOK_DISPOSED]
    assert disposed.data["hook_id"] == "hook:ev_approval#1"
    assert disposed.data["reason"] == "the run was cancelled"


def test_schedule_history_entries_are_schedule_events() -> None:
    """A schedule's stored history holds schedule.triggered / schedule.skipped payloads;
    entries stored by earlier versions (no type) still read back."""
    import json
    from datetime import UTC, datetime

    from pyworkflow.scheduler.model import Schedule, ScheduleEntry
    from pyworkflow.scheduler.specs import ScheduleSpec

    tick = datetime(2026, 1, 1, tzinfo=UTC)
    schedule = Schedule("s1", "wf", ScheduleSpec(cron="0 * * * *"))
    schedule.note(ScheduleEntry(tick, "started", run_id="r1", at=tick))
    schedule.note(ScheduleEntry(tick, "skipped: previous run still running", at=tick))
    record = schedule.to_record()
    stored = json.loads(record.data)["recent"]
    assert [e["type"] for e in stored] == ["schedule.triggered", "schedule.skipped"]
    assert stored[0]["run_id"] == "r1" and stored[0]["v"] == FORMAT_VERSION
    assert stored[1]["reason"] == "previous run still running"
    for entry in stored:  # as an earlier version wrote them
        for key in ("type", "v", "schedule_id", "reason"):
            entry.pop(key, None)
    record.data = json.dumps({**json.loads(record.data), "recent": stored})
    again = Schedule.from_record(record)
    assert [e.outcome for e in again.recent] == [e.outcome for e in schedule.recent]
