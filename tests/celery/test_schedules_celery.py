"""Schedules on Celery: two `pyworkflow scheduler` processes fire a "2s" interval
schedule in real time; every tick starts exactly one run, executed by the workers."""

from __future__ import annotations

import asyncio

import pytest

from pyworkflow import create_schedule, get_schedule, pause_schedule
from tests.celery.cluster import wait_all_terminal
from tests.celery.flows import stamp

pytestmark = pytest.mark.timeout(180)


async def test_two_schedulers_fire_each_tick_of_a_2s_schedule_once(make_cluster):
    cluster = await make_cluster()
    cluster.start_worker("w1")
    cluster.start_scheduler()
    cluster.start_scheduler()
    await create_schedule(stamp, "2s", "tick", schedule_id="every-2s")
    await asyncio.sleep(7.5)
    await pause_schedule("every-2s")
    await asyncio.sleep(1)  # a pass that claimed just before the pause finishes
    schedule = await get_schedule("every-2s")
    started = [e for e in schedule.recent if e.outcome == "started"]
    ticks = [e.tick for e in started]
    assert len(ticks) >= 3, schedule.recent
    assert len(set(ticks)) == len(ticks)  # no tick fired twice
    runs = await cluster.storage.list_runs(workflow_name="stamp", limit=100)
    assert sorted(r.run_id for r in runs) == sorted(e.run_id for e in started)
    done = await wait_all_terminal(cluster.storage, [r.run_id for r in runs], 60, cluster)
    assert {r.result for r in done} == {"tick"}
    for run in runs:
        first = (await cluster.storage.get_events(run.run_id))[0]
        assert first.data["schedule_id"] == "every-2s"
