"""The workload every benchmark script measures: trivial steps, a long history, and the
cost of resuming it. One definition, so ``run.py`` and ``storage.py`` measure the same."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from pyworkflow import EventType, get_runtime, sleep, start, step, wait_for_run, workflow
from pyworkflow.engine.runner import new_owner_id, resume_run
from pyworkflow.storage.base import StorageBackend

STEPS_PER_WORKFLOW = 10


@step(name="bench_noop")
async def noop(i: int) -> int:
    return i


@workflow(name="bench_ten_steps")
async def ten_steps() -> int:
    total = 0
    for i in range(STEPS_PER_WORKFLOW):
        total += await noop(i)
    return total


@workflow(name="bench_empty")
async def empty() -> int:
    return 0


@workflow(name="bench_long")
async def long_run(n: int) -> int:
    for i in range(n):
        await noop(i)
    return n


@workflow(name="bench_sleeper")
async def sleeper(n: int) -> int:
    for i in range(n):
        await noop(i)
    await sleep(0.2)
    await noop(-1)
    return n


async def workflows_per_second(storage: StorageBackend, workflows: int) -> float:
    """Ten-step workflows started one after another (after one warm-up run)."""
    await start(ten_steps, storage=storage)  # warm up: connection, schema, caches
    t0 = time.perf_counter()
    for _ in range(workflows):
        await start(ten_steps, storage=storage)
    return workflows / (time.perf_counter() - t0)


async def resume_cost(storage: StorageBackend, steps: int = 1500) -> tuple[float, float]:
    """``(live, cold)`` seconds to resume a run of ``steps`` completed steps (2 events each)
    suspended on a sleep.

    ``live``: the local runtime's own timer wakes the run; time from its due time to its
    completion. ``cold``: with no runtime service running (as in a freshly started
    process), one ``resume_run`` call: read the history, replay it, finish.
    """
    run_id = await start(sleeper, steps, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=600)
    assert run.completed_at is not None, run
    events = await storage.get_events(run_id)
    due = next(e for e in events if e.type == EventType.SLEEP_STARTED).data["fire_at"]
    live = (run.completed_at - datetime.fromisoformat(due)).total_seconds()

    run_id = await start(sleeper, steps, storage=storage)
    await get_runtime("local").shutdown()  # no timer loop: nothing resumes it but us
    await asyncio.sleep(0.25)
    t0 = time.perf_counter()
    await resume_run(storage, run_id, owner=new_owner_id(), lease_ttl=60)
    cold = time.perf_counter() - t0
    run = await storage.get_run(run_id)
    assert run is not None and run.status == "completed", run
    return live, cold
