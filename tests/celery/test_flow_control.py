"""Flow control on real Celery workers: ``concurrency_limit`` holds across two worker
processes (enforced in storage), and a rate limit delays starts on the workers too."""

from __future__ import annotations

import asyncio
import time

import pytest

import pyworkflow
from pyworkflow import start
from pyworkflow.engine.diagnosis import diagnose
from pyworkflow.storage.schemas import utcnow
from tests.celery.cluster import wait_all_terminal
from tests.celery.flows import (
    PRIORITY_FLOWS_QUEUE,
    PRIORITY_QUEUE,
    PRIORITY_STEPS_QUEUE,
    limited,
    one_at_a_time,
    rated_start,
    routine_job,
    unranked_job,
    urgent_job,
    with_routine_step,
    with_urgent_step,
)

pytestmark = pytest.mark.timeout(240)

BROKERS = pytest.mark.parametrize("broker", ["redis", "rabbitmq"])


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(b, 1) for b, _ in spans] + [(e, -1) for _, e in spans])
    most = now = 0
    for _, change in edges:
        now += change
        most = max(most, now)
    return most


@pytest.mark.parametrize("storage", ["sqlite", "postgres"])
async def test_twenty_runs_with_limit_two_never_run_more_than_two_at_once(make_cluster, storage):
    cluster = await make_cluster(storage=storage)
    cluster.start_worker("w1", 2)
    cluster.start_worker("w2", 2)  # four processes could run four steps at once
    cluster.start_scheduler()
    run_ids = [await start(limited, i) for i in range(20)]
    # runs why, on the last one while it waits: the gate, its live holders, the queue.
    deadline = time.monotonic() + 60
    while True:
        found = await diagnose(cluster.storage, run_ids[-1], now=utcnow(), lease_ttl=3)
        gate = [c.message for c in found.causes if c.kind == "concurrency"]
        if gate and "held by run_" in gate[0]:
            break
        assert time.monotonic() < deadline, (found, cluster.logs())
        await asyncio.sleep(0.05)
    assert "workflow 'limited' (limit 2)" in gate[0] and not found.stuck
    runs = await wait_all_terminal(cluster.storage, run_ids, 150, cluster)
    assert [r.status.value for r in runs] == ["completed"] * 20
    lines = cluster.ledger_lines()
    begins = {
        ln[4].split(":")[0]: float(ln[4].split(":")[1]) for ln in lines if ln[0] == "limited-begin"
    }
    ends = {
        ln[4].split(":")[0]: float(ln[4].split(":")[1]) for ln in lines if ln[0] == "limited-end"
    }
    assert len(begins) == 20 and len(ends) == 20
    spans = [(begins[i], ends[i]) for i in begins]
    assert _most_at_once(spans) == 2
    pids = {ln[3] for ln in lines if ln[0] == "limited-begin"}
    assert len(pids) >= 2  # both workers did some of it


async def test_a_rate_limit_delays_starts_on_the_workers(make_cluster):
    cluster = await make_cluster()
    cluster.start_worker("w1", 2)
    cluster.start_scheduler()
    began = time.time()
    run_ids = [await start(rated_start, i) for i in range(8)]
    runs = await wait_all_terminal(cluster.storage, run_ids, 90, cluster)
    starts = sorted(r.result - began for r in runs)
    for i in range(len(starts) - 4):  # never more than 4 in any 2 seconds
        assert starts[i + 4] - starts[i] >= 1.95, starts
    assert starts[-1] >= 1.95


@BROKERS
async def test_higher_priority_runs_are_taken_first(make_cluster, broker):
    """With ``celery_priorities`` on, runs queued while no worker consumes their queue are
    taken highest priority first (urgent 8, routine 1, none 0), on Redis (levels
    inverted for kombu) and RabbitMQ (x-max-priority)."""
    cluster = await make_cluster(broker=broker, PYWORKFLOW_CELERY_PRIORITIES="true")
    pyworkflow.configure(celery_priorities=True)
    queued = [await start(unranked_job, i) for i in range(3)]
    queued += [await start(routine_job, i) for i in range(3)]
    queued += [await start(urgent_job, i) for i in range(3)]
    cluster.start_worker("solo", 1, f"--queues={PRIORITY_QUEUE}", "--prefetch-multiplier=1")
    runs = await wait_all_terminal(cluster.storage, queued, 90, cluster)
    order = [r.workflow_name for r in sorted(runs, key=lambda r: r.result)]
    assert order == ["urgent_job"] * 3 + ["routine_job"] * 3 + ["unranked_job"] * 3, order


async def test_a_killed_holders_slot_frees_and_no_two_runs_overlap(make_cluster):
    """The worker running the one run a limit of 1 lets in is SIGKILLed mid-step: the
    slot is not lost with it (its lease expires, or its worker's beats stop), every run
    completes, and no two runs' steps ever ran at once (the killed one's up to the kill)."""
    cluster = await make_cluster(HELD_STEP_SECONDS="2")
    cluster.start_worker("w1", 1)
    cluster.start_worker("w2", 1)
    cluster.start_scheduler()
    run_ids = [await start(one_at_a_time, i) for i in range(3)]
    deadline = time.monotonic() + 60
    while not any(ln[0] == "held-begin" for ln in cluster.ledger_lines()):
        assert time.monotonic() < deadline, cluster.logs()
        await asyncio.sleep(0.05)
    first = next(ln for ln in cluster.ledger_lines() if ln[0] == "held-begin")
    cluster.kill_worker(cluster.worker_of_pid(int(first[3])))
    killed_at = time.time()
    runs = await wait_all_terminal(cluster.storage, run_ids, 120, cluster)
    assert [r.status.value for r in runs] == ["completed"] * 3
    lines = cluster.ledger_lines()
    spans = []
    for begin in (ln for ln in lines if ln[0] == "held-begin"):
        i, began = begin[4].split(":")
        ends = [
            float(ln[4].split(":")[1])
            for ln in lines
            if ln[0] == "held-end" and ln[3] == begin[3] and ln[4].split(":")[0] == i
        ]
        spans.append((float(began), ends[0] if ends else killed_at))
    assert len(spans) == 4  # three runs, one of them twice (killed, then recovered)
    assert _most_at_once(spans) == 1


@BROKERS
async def test_higher_priority_steps_are_taken_first(make_cluster, broker):
    """Step attempts waiting in their queue are taken by their step's priority: six runs
    dispatch their one step while no worker consumes the step queue; a worker that
    then consumes it runs the urgent (8) ones before the routine (1) ones."""
    cluster = await make_cluster(broker=broker, PYWORKFLOW_CELERY_PRIORITIES="true")
    pyworkflow.configure(celery_priorities=True)
    # (queues of their own: RabbitMQ keeps the arguments a queue was first declared with)
    cluster.start_worker("flows", 1, f"--queues={PRIORITY_FLOWS_QUEUE}")
    run_ids = [await start(with_routine_step, i) for i in range(3)]
    run_ids += [await start(with_urgent_step, i) for i in range(3)]
    deadline = time.monotonic() + 60
    while True:  # every run has sent its step out
        runs = [await cluster.storage.get_run(r) for r in run_ids]
        if all(r.lease_owner and r.lease_owner.startswith("round:") for r in runs):
            break
        assert time.monotonic() < deadline, cluster.logs()
        await asyncio.sleep(0.1)
    cluster.start_worker("steps", 1, f"--queues={PRIORITY_STEPS_QUEUE}")
    await wait_all_terminal(cluster.storage, run_ids, 90, cluster)
    taken = sorted(
        (float(ln[4]), ln[0]) for ln in cluster.ledger_lines() if ln[0].endswith("-step")
    )
    assert [kind for _, kind in taken] == ["urgent-step"] * 3 + ["routine-step"] * 3, taken
