"""Schedules: ``create_schedule``, firing by the local runtime, pause/resume, trigger, backfill.

1. A ``"2s"`` interval schedule fires while ``LocalRuntime.default().serve(duration=5)``
   serves the storage: each tick starts exactly one run, whose ``workflow.started``
   event names the schedule and the tick. ``schedule.recent`` is the tick history.
2. ``pause_schedule`` stops it firing (the local runtime still runs in the background),
   and ``resume_schedule`` fires again from the next tick after now: the ticks that
   passed while it was paused are not run later.
3. A ``"15m"`` schedule (paused, so that it does not fire by itself while the example
   runs): ``trigger_schedule`` starts a run now; ``backfill_schedule`` over a past hour
   starts one run per tick, both ends included (:00, :15, :30, :45 and the next :00),
   and a second backfill of the same hour starts nothing and returns the same run ids.

Takes about 10 s. Storage: ``$PYWORKFLOW_EXAMPLE_DB`` if set, else ``.pyworkflow/examples.db``.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

import pyworkflow
from pyworkflow import (
    EventType,
    Schedule,
    backfill_schedule,
    configure,
    create_schedule,
    delete_schedule,
    get_schedule,
    get_workflow_events,
    pause_schedule,
    resume_schedule,
    step,
    trigger_schedule,
    wait_for_run,
    workflow,
)

EVERY_2S = "ex16-every-2s"
QUARTER_HOURLY = "ex16-quarter-hourly"


@step()
async def build_report(label: str) -> str:
    return f"report {label}"


@workflow(name="ex16_report")
async def report(label: str) -> str:
    return await build_report(label)


async def current(schedule_id: str) -> Schedule:
    schedule = await get_schedule(schedule_id)
    assert schedule is not None
    return schedule


def started(schedule: Schedule) -> list[tuple[datetime, str]]:
    """(tick, run id) of every started entry in the schedule's recent history."""
    return [(e.tick, e.run_id) for e in schedule.recent if e.outcome == "started" and e.run_id]


async def interval_schedule() -> None:
    print("1) a '2s' interval schedule, fired by the local runtime for 5 s")
    await create_schedule(report, "2s", "every 2s", schedule_id=EVERY_2S)
    await pyworkflow.LocalRuntime.default().serve(duration=5)

    schedule = await current(EVERY_2S)
    print(f"fired={schedule.fired} skipped={schedule.skipped}; recent history:")
    for entry in schedule.recent:
        print(f"  tick {entry.tick:%H:%M:%S}  {entry.outcome:<8} {entry.run_id}")
    ticks = started(schedule)
    assert len(ticks) >= 2, ticks
    assert len({t for t, _ in ticks}) == len(ticks), "a tick started twice"
    assert len({r for _, r in ticks}) == len(ticks), "a run id was reused"
    gaps = [b - a for (a, _), (b, _) in zip(ticks, ticks[1:], strict=False)]
    assert set(gaps) == {timedelta(seconds=2)}, gaps
    assert all(t.second % 2 == 0 for t, _ in ticks)  # intervals are anchored at the epoch

    print("runs:")
    for tick, run_id in ticks:
        run = await wait_for_run(run_id, timeout=10)
        first = (await get_workflow_events(run_id))[0]
        print(
            f"  {run_id}  {run.status.value}  result={run.result!r}  "
            f"schedule_id={first.data['schedule_id']} scheduled_time={first.data['scheduled_time']}"
        )
        assert run.status == "completed" and run.result == "report every 2s"
        assert first.data["schedule_id"] == EVERY_2S
        assert first.data["scheduled_time"] == tick.isoformat()


async def pause_and_resume() -> None:
    print("\n2) pause, then resume: ticks while paused are not run later")
    # The ticks fall on even seconds (intervals are anchored at the epoch). Pause between
    # two of them rather than in the instant one is fired, so the history below is exact.
    phase = datetime.now(UTC).timestamp() % 2
    if not 0.2 <= phase <= 1.8:
        await asyncio.sleep((0.2 - phase) % 2)
    paused = await pause_schedule(EVERY_2S)
    paused_at = datetime.now(UTC)
    before = started(paused)
    print(f"paused at {paused_at:%H:%M:%S.%f}"[:-3] + f" with {len(before)} runs started")
    await asyncio.sleep(2)  # a tick passes; the local runtime keeps serving meanwhile
    assert started(await current(EVERY_2S)) == before

    resumed = await resume_schedule(EVERY_2S)
    assert resumed.next_tick is not None
    resumed_at = datetime.now(UTC)
    print(f"resumed at {resumed_at:%H:%M:%S.%f}"[:-3] + f", next tick {resumed.next_tick:%H:%M:%S}")
    assert resumed.next_tick > resumed_at
    await asyncio.sleep((resumed.next_tick - datetime.now(UTC)).total_seconds() + 0.3)
    await pause_schedule(EVERY_2S)  # stop it for the rest of the example

    after = started(await current(EVERY_2S))
    new = after[len(before) :]
    print(f"ticks started since the pause: {[f'{t:%H:%M:%S}' for t, _ in new]}")
    assert after[: len(before)] == before
    assert [t for t, _ in new] == [resumed.next_tick]  # nothing from the paused period
    await wait_for_run(new[0][1], timeout=10)


async def trigger_and_backfill() -> None:
    print("\n3) trigger and backfill a '15m' schedule")
    await create_schedule(report, "15m", "quarter", schedule_id=QUARTER_HOURLY)
    await pause_schedule(QUARTER_HOURLY)  # trigger and backfill work on a paused schedule

    run_id = await trigger_schedule(QUARTER_HOURLY)
    run = await wait_for_run(run_id, timeout=10)
    first = (await get_workflow_events(run_id))[0]
    print(f"triggered {run_id}: {run.result!r} scheduled_time={first.data['scheduled_time']}")
    assert run.result == "report quarter"

    hour = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    end = hour + timedelta(hours=1)
    print(f"backfill {hour:%H:%M} .. {end:%H:%M} (both ends included):")
    run_ids = await backfill_schedule(QUARTER_HOURLY, hour, end)
    for run_id in run_ids:
        run = await wait_for_run(run_id, timeout=10)
        first = (await get_workflow_events(run_id))[0]
        tick = datetime.fromisoformat(first.data["scheduled_time"])
        print(f"  {tick:%H:%M}  {run_id}  {run.status.value}  {run.result!r}")
        assert run.result == "report quarter"
    ticks = [
        datetime.fromisoformat((await get_workflow_events(r))[0].data["scheduled_time"])
        for r in run_ids
    ]
    assert ticks == [hour + timedelta(minutes=m) for m in (0, 15, 30, 45, 60)], ticks
    assert len(set(run_ids)) == 5
    schedule = await current(QUARTER_HOURLY)
    print(f"history: {[f'{e.tick:%H:%M} {e.outcome}' for e in schedule.recent]}")
    assert schedule.fired == 6 and schedule.skipped == 0  # the trigger and 5 backfilled ticks

    created = [(await wait_for_run(r, timeout=10)).created_at for r in run_ids]
    again = await backfill_schedule(QUARTER_HOURLY, hour, end)
    print(f"second backfill of the same hour returned the same run ids: {again == run_ids}")
    assert again == run_ids
    assert [(await wait_for_run(r, timeout=10)).created_at for r in again] == created
    for run_id in again:  # one run per tick: a single workflow.started each
        types = [e.type for e in await get_workflow_events(run_id)]
        assert types.count(EventType.WORKFLOW_STARTED) == 1


async def main() -> None:
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", ".pyworkflow/examples.db")
    configure(storage=f"sqlite:///{db}")
    for schedule_id in (EVERY_2S, QUARTER_HOURLY):  # left by an earlier run of this script
        await delete_schedule(schedule_id)

    await interval_schedule()
    await pause_and_resume()
    await trigger_and_backfill()
    print("\nOK: interval ticks each started once, pause/resume, trigger, idempotent backfill")


if __name__ == "__main__":
    asyncio.run(main())
