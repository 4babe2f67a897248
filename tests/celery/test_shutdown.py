"""Stopping a worker with SIGTERM, on real worker processes: its running tasks finish
within the grace (``celery_shutdown_grace``) or are handed back, and the other workers
pick its runs up at once, with no recovery attempt counted.

The lease TTL is 120 s here (a dead worker's runs would wait that long), so a run that
completes within a minute of the SIGTERM was handed back, not recovered."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from pyworkflow import start
from tests.celery.cluster import Cluster, wait_all_terminal
from tests.celery.flows import fragile, slow_pipeline

pytestmark = pytest.mark.timeout(240)

BROKERS = ["redis", "rabbitmq"]
LONG_LEASE = {"PYWORKFLOW_LEASE_TTL": "120"}
STEP = "12"  # seconds of the long steps: a worker that exits sooner handed its task back


async def _started(cluster: Cluster, kind: str, limit: float = 60) -> int:
    """Wait for the first ledger line of ``kind``; the pid of the process that wrote it."""
    deadline = time.monotonic() + limit
    while True:
        lines = [line for line in cluster.ledger_lines() if line[0] == kind]
        if lines:
            return int(lines[0][3])
        assert time.monotonic() < deadline, cluster.logs()
        await asyncio.sleep(0.05)


async def _assert_not_recovered(cluster: Cluster, run_id: str) -> None:
    run = await cluster.storage.get_run(run_id)
    assert run.recovery_attempts == 0
    types = [e.type.value for e in await cluster.storage.get_events(run_id)]
    assert "workflow.interrupted" not in types, types


def _pids_of(cluster: Cluster, kind: str) -> list[int]:
    return [int(line[3]) for line in cluster.ledger_lines() if line[0] == kind]


async def _busy_worker_a(
    make_cluster,
    flow,
    arg: int,
    started: str,
    *,
    broker: str = "redis",
    grace: str = "1",
    step: str = STEP,
) -> tuple[Cluster, str, int]:
    """Worker A (one process) running ``flow(arg)``'s long step (its ledger line
    ``started`` written), a scheduler, and an idle worker B; returns the cluster, the
    run id and the pid of A's pool process."""
    cluster = await make_cluster(
        broker=broker, SLOW_STEP_SECONDS=step, PYWORKFLOW_CELERY_SHUTDOWN_GRACE=grace,
        **LONG_LEASE,
    )  # fmt: skip
    cluster.start_worker("a", 1)
    cluster.start_scheduler()
    run_id = await start(flow, arg)
    a_pid = await _started(cluster, started)
    cluster.start_worker("b", 1)
    return cluster, run_id, a_pid


@pytest.mark.parametrize("broker", BROKERS)
async def test_sigterm_hands_a_long_dispatched_step_to_another_worker(make_cluster, broker):
    """A 12 s dispatched step on worker A, SIGTERM to A's main process (grace 1 s): A
    exits within seconds, worker B runs the step again and completes the run long before
    A's 120 s lease would have run out; no recovery attempt, A has left the registry."""
    cluster, run_id, a_pid = await _busy_worker_a(
        make_cluster, slow_pipeline, 1, "slow-start", broker=broker
    )
    began = time.monotonic()
    assert cluster.terminate_worker("a") == 0
    assert time.monotonic() - began < float(STEP), "A finished the step: it was not handed back"
    [run] = await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    assert (run.status.value, run.result) == ("completed", 4)
    assert time.monotonic() - began < 60  # not after the 120 s lease
    await _assert_not_recovered(cluster, run_id)
    done = _pids_of(cluster, "slow-done")
    assert a_pid not in done and len(done) == 1  # finished once, by B
    assert all(w.pid != a_pid for w in await cluster.storage.list_workers())


async def test_sigterm_hands_back_a_run_executing_a_long_inline_step(make_cluster):
    """A workflow task running a 12 s inline step (the run's lease is A's own), in a
    workflow that may not be recovered at all (max_recovery_attempts=0): after SIGTERM
    the run is released and resumed by B as a plain resume, and completes. (Storage and
    a message of our own do this: the broker matters only for the dispatched step above.)"""
    cluster, run_id, a_pid = await _busy_worker_a(make_cluster, fragile, 7, "slow-inline-start")
    began = time.monotonic()
    assert cluster.terminate_worker("a") == 0
    [run] = await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    assert (run.status.value, run.result) == ("completed", 7), run.error
    assert time.monotonic() - began < 60
    await _assert_not_recovered(cluster, run_id)
    starts = _pids_of(cluster, "slow-inline-start")
    assert starts[0] == a_pid and a_pid not in starts[1:] and len(starts) == 2
    assert "handed back" in cluster.logs()


async def test_a_task_shorter_than_the_grace_finishes_on_the_stopping_worker(make_cluster):
    """Grace 30 s, a 3 s step running on A when A gets SIGTERM: A finishes the step
    (the body runs once, on A), then exits; the run completes on B."""
    cluster, run_id, a_pid = await _busy_worker_a(
        make_cluster, slow_pipeline, 2, "slow-start", grace="30", step="3"
    )
    assert cluster.terminate_worker("a") == 0
    [run] = await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    assert (run.status.value, run.result) == ("completed", 6)
    assert _pids_of(cluster, "slow-start") == [a_pid] == _pids_of(cluster, "slow-done")
    await _assert_not_recovered(cluster, run_id)


async def test_sigterm_to_the_process_group_hands_back_at_once(make_cluster):
    """SIGTERM to every process of worker A (systemd's default) while its pool process
    runs a long inline step of a run that may not be recovered: the pool process hands
    the run back without waiting for the grace (60 s), and B completes it."""
    cluster, run_id, a_pid = await _busy_worker_a(
        make_cluster, fragile, 3, "slow-inline-start", grace="60"
    )
    began = time.monotonic()
    cluster.terminate_worker("a", group=True)
    assert time.monotonic() - began < float(STEP)
    [run] = await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    assert (run.status.value, run.result) == ("completed", 3), run.error
    await _assert_not_recovered(cluster, run_id)
    assert a_pid not in _pids_of(cluster, "slow-inline-start")[1:]


async def test_sigterm_with_nothing_running_exits_cleanly_and_leaves_the_registry(make_cluster):
    """An idle worker stops at once on SIGTERM (exit code 0) and its pool processes'
    records leave the worker registry."""
    cluster = await make_cluster(**LONG_LEASE)
    cluster.start_worker("a", 2)
    main_pid = cluster.workers["a"].pid
    deadline = time.monotonic() + 30
    while len(await cluster.storage.list_workers()) < 2:
        assert time.monotonic() < deadline, cluster.logs()
        await asyncio.sleep(0.2)
    workers = await cluster.storage.list_workers()
    assert {os.getpgid(w.pid) for w in workers} == {main_pid}
    began = time.monotonic()
    assert cluster.terminate_worker("a") == 0
    assert time.monotonic() - began < 15
    assert await cluster.storage.list_workers() == []
