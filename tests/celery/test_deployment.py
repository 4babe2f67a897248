"""The Celery runtime on real processes: two workers, a scheduler, a broker (Redis or
RabbitMQ) and storage on SQLite or PostgreSQL. Workers and schedulers are killed with
SIGKILL (the whole process group) to show that nothing is lost."""

from __future__ import annotations

import asyncio
import time

import pytest

from pyworkflow import start
from tests.celery.cluster import completions_per_step, wait_all_terminal
from tests.celery.flows import pipeline, sleeper, slow_pipeline

pytestmark = pytest.mark.timeout(300)

DEPLOYMENTS = [
    pytest.param(("sqlite", "redis"), id="sqlite-redis"),
    pytest.param(("postgres", "redis"), id="postgres-redis"),
    pytest.param(("postgres", "rabbitmq"), id="postgres-rabbitmq"),
]


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
async def test_two_workers_complete_200_workflows(make_cluster, deployment):
    """200 runs of several steps and a durable sleep all complete, on both workers, and
    every step's completion is recorded exactly once."""
    storage_kind, broker = deployment
    cluster = await make_cluster(storage_kind, broker)
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.start_scheduler()
    run_ids = [await start(pipeline, i, nap="1s") for i in range(200)]
    runs = await wait_all_terminal(cluster.storage, run_ids, 180, cluster)
    assert [r.status.value for r in runs] == ["completed"] * 200
    assert [r.result for r in runs] == [i + 11 + 4 for i in range(200)]
    for run_id in run_ids:
        counts = await completions_per_step(cluster.storage, run_id)
        assert counts == {"step:add#1": 1, "step:add#2": 1, "step:inline_square#1": 1}
    groups = {cluster.worker_of_pid(int(line[3])) for line in cluster.ledger_lines()}
    assert groups == {"w1", "w2"}  # the work was shared


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
async def test_sigkill_worker_mid_step_run_completes_elsewhere(make_cluster, deployment):
    """A worker killed while running a step: its runs complete on the other worker, the
    interrupted step runs again, and each completion appears once in the log."""
    storage_kind, broker = deployment
    # A message the killed worker had taken but not started (Redis redelivers it only
    # after its visibility timeout) is re-sent by the sweep after dispatch_timeout.
    cluster = await make_cluster(storage_kind, broker, dispatch_timeout=8, SLOW_STEP_SECONDS="4")
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.start_scheduler()
    run_ids = [await start(slow_pipeline, i) for i in range(4)]
    # Wait until slow steps are running, then kill a worker that is running one.
    deadline = time.monotonic() + 60
    while not any(line[0] == "slow-start" for line in cluster.ledger_lines()):
        assert time.monotonic() < deadline, cluster.logs()
        await asyncio.sleep(0.05)
    victim_pid = next(int(line[3]) for line in cluster.ledger_lines() if line[0] == "slow-start")
    victim = cluster.worker_of_pid(victim_pid)
    cluster.kill_worker(victim)

    runs = await wait_all_terminal(cluster.storage, run_ids, 120, cluster)
    assert [r.status.value for r in runs] == ["completed"] * 4
    assert [r.result for r in runs] == [2 * (i + 1) for i in range(4)]
    for run_id in run_ids:
        counts = await completions_per_step(cluster.storage, run_id)
        assert counts == {"step:add#1": 1, "step:slow_double#1": 1, "step:add#2": 1}
    lines = cluster.ledger_lines()
    interrupted = [ln for ln in lines if ln[0] == "slow-start" and int(ln[3]) == victim_pid]
    assert interrupted, "the killed worker was running a slow step"
    for line in interrupted:  # the interrupted step ran again, to the end, elsewhere
        reruns = [ln for ln in lines if ln[0] == "slow-done" and ln[4] == line[4]]
        assert reruns and all(int(ln[3]) != victim_pid for ln in reruns)


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
async def test_scheduler_killed_and_restarted_every_sleeping_run_wakes(make_cluster, deployment):
    """Timers live in storage: with the scheduler dead nothing wakes (no broker countdown
    is used here), and a restarted scheduler wakes every overdue run."""
    storage_kind, broker = deployment
    cluster = await make_cluster(storage_kind, broker, PYWORKFLOW_CELERY_COUNTDOWN_WINDOW="0")
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    scheduler = cluster.start_scheduler()
    run_ids = [await start(sleeper, 2) for _ in range(20)]
    deadline = time.monotonic() + 60
    while True:  # every run has reached its sleep
        runs = [await cluster.storage.get_run(r) for r in run_ids]
        if all(r.status.value == "suspended" for r in runs):
            break
        assert time.monotonic() < deadline, cluster.logs()
        await asyncio.sleep(0.1)
    cluster.kill_scheduler(scheduler)
    await asyncio.sleep(4)  # all are overdue now
    runs = [await cluster.storage.get_run(r) for r in run_ids]
    assert {r.status.value for r in runs} == {"suspended"}  # nobody fires timers

    cluster.start_scheduler()
    cluster.start_scheduler()  # two at once: claims are atomic, nothing fires twice
    runs = await wait_all_terminal(cluster.storage, run_ids, 60, cluster)
    assert [r.result for r in runs] == ["woke"] * 20
    for run_id in run_ids:
        types = [e.type.value for e in await cluster.storage.get_events(run_id)]
        assert types.count("sleep.completed") == 1 and types.count("workflow.resumed") == 1
