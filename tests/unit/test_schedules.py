"""Schedules end to end on the local runtime with an injected clock: every overlap
policy, pause/resume, backfill, catch-up, trigger, declared schedules, exactly-once
firing with two schedulers, and bad input that stores nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

import pyworkflow
from pyworkflow import (
    LocalScheduler,
    ScheduleSpec,
    backfill_schedule,
    cancel_workflow,
    create_schedule,
    get_schedule,
    list_schedules,
    pause_schedule,
    resume_schedule,
    scheduled_workflow,
    sleep,
    trigger_schedule,
    update_schedule,
    workflow,
)
from pyworkflow.scheduler.declared import forget_declared
from pyworkflow.schedules import activate_scheduled_workflows

# A day ahead of real time: the local runtime's own timer loop (real clock) also fires
# schedules, and must not find these due; the tests move the injected clock instead.
T0 = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@workflow()
async def report(day: str = "today") -> str:
    return f"report for {day}"


@workflow()
async def long_job(label: str = "x") -> str:
    await sleep("1h")  # stays suspended: 'still running' for overlap purposes
    return label


@pytest.fixture(autouse=True)
def _no_declarations_left() -> Iterator[None]:
    yield
    forget_declared()


@pytest.fixture
def storage() -> object:
    pyworkflow.configure(storage="memory://")
    return pyworkflow.get_storage()


async def settle(storage: object, run_ids: list[str]) -> None:
    """Wait until the background executions of these runs stopped (done or waiting)."""
    for _ in range(400):
        runs = [await storage.get_run(r) for r in run_ids]  # type: ignore[attr-defined]
        if all(
            r is not None and r.status.value in ("completed", "suspended", "failed", "cancelled")
            for r in runs
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError([(r.run_id, r.status) for r in runs if r])


async def started_runs(schedule_id: str) -> list[str]:
    schedule = await get_schedule(schedule_id)
    assert schedule is not None
    return [e.run_id for e in schedule.recent if e.outcome == "started" and e.run_id]


async def outcomes(schedule_id: str) -> list[str]:
    schedule = await get_schedule(schedule_id)
    assert schedule is not None
    return [e.outcome for e in schedule.recent]


async def test_interval_schedule_starts_a_run_per_tick(storage) -> None:
    clock = Clock(T0)
    scheduler = await _make(storage, clock, "skip", workflow_fn=report)
    assert await scheduler.tick_once() == T0 + timedelta(minutes=10)  # nothing due yet
    assert await fire(scheduler, clock, storage, minutes=10) != []
    await fire(scheduler, clock, storage, minutes=10)
    runs = [await storage.get_run(r) for r in await started_runs("s-skip")]
    assert [r.result for r in runs] == ["report for today"] * 2  # ended: no overlap


async def _make(storage, clock, policy, workflow_fn=long_job, interval="10m", **kw):
    schedule = await create_schedule(
        workflow_fn, ScheduleSpec(interval=interval), overlap_policy=policy,
        schedule_id=f"s-{policy}", **kw,
    )  # fmt: skip
    # Pretend it was created at T0: first tick at T0 + interval.
    from pyworkflow.scheduler import Schedule

    record = await storage.get_schedule(schedule.schedule_id)
    current = Schedule.from_record(record)
    current.next_tick = current.next_run_time = current.spec.next_tick(clock())
    assert await storage.save_schedule(current.to_record(), expected_version=current.version)
    return LocalScheduler(clock=clock)


async def fire(scheduler: LocalScheduler, clock: Clock, storage, **delta: float) -> list[str]:
    clock.advance(**delta)
    await scheduler.tick_once()
    runs = await storage.list_runs(limit=100)
    await settle(storage, [r.run_id for r in runs])
    return [r.run_id for r in runs]


async def test_skip_policy_drops_ticks_while_the_last_run_runs(storage) -> None:
    clock = Clock(T0)
    scheduler = await _make(storage, clock, "skip")
    await fire(scheduler, clock, storage, minutes=10)
    await fire(scheduler, clock, storage, minutes=10)
    assert await outcomes("s-skip") == ["started", "skipped: previous run still running"]
    assert len(await started_runs("s-skip")) == 1


async def test_allow_all_policy_starts_every_tick(storage) -> None:
    clock = Clock(T0)
    scheduler = await _make(storage, clock, "allow_all")
    await fire(scheduler, clock, storage, minutes=10)
    runs = await fire(scheduler, clock, storage, minutes=10)
    assert len(await started_runs("s-allow_all")) == 2 and len(runs) == 2


async def test_buffer_one_runs_one_waiting_tick_after_the_current_run(storage) -> None:
    clock = Clock(T0)
    scheduler = await _make(storage, clock, "buffer_one")
    await fire(scheduler, clock, storage, minutes=10)
    first = (await started_runs("s-buffer_one"))[0]
    await fire(scheduler, clock, storage, minutes=10)  # buffered
    await fire(scheduler, clock, storage, minutes=10)  # one is already buffered: skipped
    assert await outcomes("s-buffer_one") == ["started", "skipped: a tick is already buffered"]
    await cancel_workflow(first, wait=True, timeout=10)
    await fire(scheduler, clock, storage, seconds=1)
    started = await started_runs("s-buffer_one")
    assert len(started) == 2
    schedule = await get_schedule("s-buffer_one")
    assert schedule.recent[-1].tick == T0 + timedelta(minutes=20)  # the buffered tick


async def test_buffer_all_runs_every_tick_one_after_another(storage) -> None:
    clock = Clock(T0)
    scheduler = await _make(storage, clock, "buffer_all")
    await fire(scheduler, clock, storage, minutes=10)
    await fire(scheduler, clock, storage, minutes=10)
    await fire(scheduler, clock, storage, minutes=10)
    assert len(await started_runs("s-buffer_all")) == 1
    for expected in (2, 3):
        await cancel_workflow((await started_runs("s-buffer_all"))[-1], wait=True, timeout=10)
        await fire(scheduler, clock, storage, seconds=1)
        assert len(await started_runs("s-buffer_all")) == expected
    ticks = [e.tick for e in (await get_schedule("s-buffer_all")).recent]
    assert ticks == [T0 + timedelta(minutes=m) for m in (10, 20, 30)]


async def test_cancel_other_cancels_then_starts_when_it_has_ended(storage) -> None:
    clock = Clock(T0)
    scheduler = await _make(storage, clock, "cancel_other")
    await fire(scheduler, clock, storage, minutes=10)
    first = (await started_runs("s-cancel_other"))[0]
    await fire(scheduler, clock, storage, minutes=10)
    run = await pyworkflow.wait_for_run(first, timeout=10)
    assert run.status.value == "cancelled"
    await fire(scheduler, clock, storage, seconds=1)
    started = await started_runs("s-cancel_other")
    assert len(started) == 2 and started[0] == first


async def test_terminate_other_terminates_and_starts_at_once(storage) -> None:
    clock = Clock(T0)
    scheduler = await _make(storage, clock, "terminate_other")
    await fire(scheduler, clock, storage, minutes=10)
    first = (await started_runs("s-terminate_other"))[0]
    await fire(scheduler, clock, storage, minutes=10)
    started = await started_runs("s-terminate_other")
    assert len(started) == 2
    run = await pyworkflow.wait_for_run(first, timeout=10)
    assert run.status.value == "cancelled" and "terminated" in (run.error or "")


async def test_pause_and_resume(storage) -> None:
    clock = Clock(T0)
    scheduler = await _make(storage, clock, "allow_all")
    await pause_schedule("s-allow_all")
    await fire(scheduler, clock, storage, minutes=30)
    assert await started_runs("s-allow_all") == []
    assert (await list_schedules(status="paused"))[0].schedule_id == "s-allow_all"
    resumed = await resume_schedule("s-allow_all")
    assert resumed.status.value == "active" and resumed.next_tick is not None


async def test_catch_up_runs_recent_missed_ticks_and_records_older_ones(storage) -> None:
    clock = Clock(T0)
    scheduler = await _make(storage, clock, "allow_all", catchup_window="25m")
    await fire(scheduler, clock, storage, hours=1)  # ticks at :10 .. :60 were missed
    outs = await outcomes("s-allow_all")
    assert outs == ["skipped: outside the catch-up window"] * 3 + ["started"] * 3
    schedule = await get_schedule("s-allow_all")
    assert schedule.skipped == 3 and schedule.fired == 3


async def test_backfill_starts_each_tick_once(storage) -> None:
    await create_schedule(report, "1h", "backfilled", schedule_id="bf")
    first = await backfill_schedule("bf", T0, T0 + timedelta(hours=3))
    assert len(first) == 4 and len(set(first)) == 4
    again = await backfill_schedule("bf", T0, T0 + timedelta(hours=3))
    assert again == first
    await settle(storage, first)
    runs = await storage.list_runs(limit=100)
    assert len(runs) == 4 and {r.result for r in runs} == {"report for backfilled"}


async def test_runs_record_their_schedule_and_tick(storage) -> None:
    [run_id] = await backfill_schedule(
        (await create_schedule(report, "1h", schedule_id="rec")).schedule_id,
        T0,
        T0,
    )
    started = (await storage.get_events(run_id))[0]
    assert started.data["schedule_id"] == "rec"
    assert started.data["scheduled_time"] == T0.isoformat()


async def test_trigger_starts_a_run_now(storage) -> None:
    await create_schedule(report, "0 0 1 1 *", "now", schedule_id="trig")
    run_id = await trigger_schedule("trig")
    run = await pyworkflow.wait_for_run(run_id, timeout=10)
    assert run.result == "report for now"
    assert await started_runs("trig") == [run_id]


async def test_update_changes_the_spec(storage) -> None:
    await create_schedule(report, "1h", schedule_id="upd")
    updated = await update_schedule("upd", spec="0 3 * * *", overlap_policy="allow_all")
    assert updated.spec.cron == "0 3 * * *" and updated.overlap_policy.value == "allow_all"
    assert updated.next_tick is not None and updated.next_tick.hour == 3


async def test_two_schedulers_fire_each_tick_once(storage) -> None:
    clock = Clock(T0)
    await _make(storage, clock, "allow_all")
    schedulers = [LocalScheduler(clock=clock) for _ in range(4)]
    for _ in range(3):
        clock.advance(minutes=10)
        await asyncio.gather(*(s.tick_once() for s in schedulers))
    runs = await storage.list_runs(limit=100)
    await settle(storage, [r.run_id for r in runs])
    assert len(runs) == 3
    assert await outcomes("s-allow_all") == ["started"] * 3


async def test_declared_schedule_is_created_once_and_updated_when_changed(storage) -> None:
    @scheduled_workflow(cron="0 6 * * *", schedule_id="nightly", args=("night",))
    async def nightly(day: str) -> str:
        return day

    assert await activate_scheduled_workflows() == ["nightly"]
    assert await activate_scheduled_workflows() == []
    schedule = await get_schedule("nightly")
    assert schedule.spec.cron == "0 6 * * *" and schedule.decoded_args() == (["night"], {})

    @scheduled_workflow(cron="0 7 * * *", schedule_id="nightly", name="nightly_v2")
    async def nightly_v2(day: str = "x") -> str:
        return day

    assert await activate_scheduled_workflows() == ["nightly"]
    changed = await get_schedule("nightly")
    assert changed.spec.cron == "0 7 * * *" and changed.workflow_name == "nightly_v2"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("61 * * * *", "invalid cron"),
        ({"cron": "0 9 * * *", "timezone": "Nowhere/Land"}, "unknown time zone"),
        (
            {"interval": "1h", "start_at": T0, "end_at": T0 - timedelta(days=1)},
            "end_at must be after start_at",
        ),
    ],
)
async def test_bad_schedule_is_refused_and_nothing_stored(storage, spec, message) -> None:
    with pytest.raises(ValueError, match=message):
        await create_schedule(report, spec)
    assert await list_schedules() == []


async def test_unknown_policy_and_duplicate_id_are_refused(storage) -> None:
    with pytest.raises(ValueError, match="unknown overlap_policy"):
        await create_schedule(report, "1h", overlap_policy="sometimes")
    await create_schedule(report, "1h", schedule_id="dup")
    with pytest.raises(ValueError, match="already exists"):
        await create_schedule(report, "2h", schedule_id="dup")
    assert (await get_schedule("dup")).spec.interval == 3600.0


async def test_two_second_interval_fires_in_real_time_under_the_local_runtime(storage) -> None:
    """No injected clock: the local runtime's own timer loop fires a "2s" schedule while
    it serves the storage; each tick starts exactly one run."""
    await create_schedule(report, "2s", "live", schedule_id="live")
    await pyworkflow.LocalRuntime.default().serve(duration=5.5)
    schedule = await get_schedule("live")
    ticks = [e.tick for e in schedule.recent if e.outcome == "started"]
    assert len(ticks) >= 2 and len(set(ticks)) == len(ticks)
    assert all((b - a) == timedelta(seconds=2) for a, b in zip(ticks, ticks[1:], strict=False))
    runs = await storage.list_runs(limit=100)
    assert len(runs) == len(ticks)
    assert {r.result for r in runs if r.status.value == "completed"} == {"report for live"}


async def test_a_second_backfill_changes_nothing(storage) -> None:
    await create_schedule(report, "1h", schedule_id="bf2")
    await backfill_schedule("bf2", T0, T0 + timedelta(hours=1))
    before = await get_schedule("bf2")
    await backfill_schedule("bf2", T0, T0 + timedelta(hours=1))
    after = await get_schedule("bf2")
    assert after.fired == before.fired == 2 and len(after.recent) == 2


async def test_pause_while_a_tick_is_being_started_keeps_the_run_recorded(storage) -> None:
    """A change landing between the claim and the confirmation is merged: the started run
    is still recorded, and the pause stays."""
    from pyworkflow.runtime import get_runtime
    from pyworkflow.scheduler import Schedule, ScheduleService

    clock = Clock(T0)
    await _make(storage, clock, "skip", workflow_fn=report)
    runtime = get_runtime("local")

    async def start_then_pause(request):
        run_id = await runtime.start_detached(request, storage)
        await pause_schedule("s-skip")  # lands after the claim
        return run_id

    service = ScheduleService(storage, start_then_pause, lambda _: asyncio.sleep(0), clock=clock)
    clock.advance(minutes=10)
    record = (await storage.list_due_schedules(clock()))[0]
    assert await service.fire(Schedule.from_record(record))
    schedule = await get_schedule("s-skip")
    assert schedule.status.value == "paused" and schedule.pending == []
    assert [e.outcome for e in schedule.recent] == ["started"] and schedule.fired == 1


async def test_zero_catchup_window_still_fires_on_time_ticks(storage) -> None:
    clock = Clock(T0)
    scheduler = await _make(storage, clock, "allow_all", workflow_fn=report, catchup_window=0)
    await fire(scheduler, clock, storage, minutes=10, seconds=1)  # one second late
    assert await outcomes("s-allow_all") == ["started"]


async def test_declared_schedule_takes_every_spec_option(storage) -> None:
    @scheduled_workflow(
        interval="1h", timezone="Europe/Paris", jitter="5m", end_at=T0 + timedelta(days=2),
        catchup_window="10m", overlap_policy="buffer_all", schedule_id="opts",
    )  # fmt: skip
    async def with_options() -> str:
        return "ok"

    await activate_scheduled_workflows()
    schedule = await get_schedule("opts")
    assert (schedule.spec.jitter, schedule.spec.end_at) == (300.0, T0 + timedelta(days=2))
    assert (schedule.catchup_window, schedule.overlap_policy.value) == (600.0, "buffer_all")


def test_declaring_an_invalid_schedule_fails_at_import() -> None:
    with pytest.raises(ValueError, match="invalid cron"):

        @scheduled_workflow(cron="every day")
        async def broken() -> None: ...


async def test_a_process_without_the_workflow_never_claims_its_ticks(
    storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scheduler that has not imported the schedule's workflow leaves its ticks alone
    (unclaimed, no run, nothing recorded) and does not wake up for them; a process
    that has the workflow then fires them."""
    from pyworkflow.scheduler import service

    clock = Clock(T0)
    scheduler = await _make(storage, clock, "allow_all", workflow_fn=report)
    before = await storage.get_schedule("s-allow_all")
    with monkeypatch.context() as patch:
        patch.setattr(service, "get_workflow", lambda name: None)  # not imported here
        clock.advance(minutes=10)
        assert await scheduler.tick_once() is None
    after = await storage.get_schedule("s-allow_all")
    assert after.version == before.version and await storage.list_runs() == []
    await fire(scheduler, clock, storage)
    assert len(await started_runs("s-allow_all")) == 1


async def test_schedules_left_to_other_processes_do_not_hide_the_ones_behind(storage) -> None:
    """150 due schedules of a workflow this process has not imported stand first in line
    (more than one pass's batch of 100): the schedule behind them still fires, and the
    next wake-up is its next tick, not ``None``."""
    from pyworkflow.storage.schemas import ScheduleRecord

    clock = Clock(T0)
    scheduler = await _make(storage, clock, "allow_all", workflow_fn=report)
    for i in range(150):
        elsewhere = ScheduleRecord(
            schedule_id=f"elsewhere-{i:03d}",
            workflow_name="imported_elsewhere_only",
            next_run_time=T0 - timedelta(hours=1),
        )
        assert await storage.save_schedule(elsewhere, expected_version=None)
    await fire(scheduler, clock, storage, minutes=10)
    assert len(await started_runs("s-allow_all")) == 1
    assert await scheduler.tick_once() == T0 + timedelta(minutes=20)
    left = await storage.get_schedule("elsewhere-000")
    assert left.version == 1  # never claimed here
