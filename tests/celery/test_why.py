"""``runs why`` on Celery runs stuck for real, with real worker processes (SQLite storage,
Redis broker): a step routed to a queue no worker consumes, a workflow no live worker
has registered, and a run whose worker was killed (its beats stopped) while no scheduler
runs to recover it."""

from __future__ import annotations

import asyncio
import time

import pytest

import pyworkflow
from pyworkflow import start, start_by_name
from pyworkflow.engine.diagnosis import Diagnosis, diagnose
from pyworkflow.storage.schemas import utcnow
from tests.celery.flows import GPU_QUEUE, routed_pipeline, slow_pipeline

pytestmark = pytest.mark.timeout(180)


async def _eventually(cluster, run_id: str, wanted: set[str], limit: float = 60) -> Diagnosis:  # noqa: ANN001
    """Diagnose ``run_id`` until its causes include every kind in ``wanted``."""
    deadline = time.monotonic() + limit
    while True:
        found = await diagnose(
            cluster.storage, run_id, now=utcnow(), lease_ttl=pyworkflow.get_config().lease_ttl
        )
        if wanted <= {c.kind for c in found.causes}:
            return found
        assert time.monotonic() < deadline, (found, cluster.logs())
        await asyncio.sleep(0.2)


async def _registered(cluster, count: int = 1) -> None:  # noqa: ANN001
    deadline = time.monotonic() + 30
    while len([w for w in await cluster.storage.list_workers() if w.workflows]) < count:
        assert time.monotonic() < deadline, cluster.logs()
        await asyncio.sleep(0.1)


async def _listed(cluster, run_id: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + 30
    while not any(run_id in w.runs for w in await cluster.storage.list_workers()):
        assert time.monotonic() < deadline, cluster.logs()
        await asyncio.sleep(0.1)


async def test_a_step_on_a_queue_nobody_consumes(make_cluster):
    cluster = await make_cluster()
    cluster.start_worker("w1")  # the default queues only: nobody consumes the gpu queue
    await _registered(cluster)
    run_id = await start(routed_pipeline, 3)
    found = await _eventually(cluster, run_id, {"step", "no_consumer"})
    assert found.stuck and found.status.value == "running"
    [waiting] = [c for c in found.causes if c.kind == "no_consumer"]
    assert f"no live worker consumes queue {GPU_QUEUE}" in waiting.message
    assert waiting.fix == f"pyworkflow worker --queues {GPU_QUEUE}"
    [step] = [c for c in found.causes if c.kind == "step"]
    assert "on_gpu" in step.message and step.since is not None


async def test_a_workflow_no_live_worker_has(make_cluster):
    cluster = await make_cluster()
    cluster.start_worker("w1")
    await _registered(cluster)
    run_id = await start_by_name("not_deployed_anywhere", detached=True)
    found = await _eventually(cluster, run_id, {"queued", "no_worker"})
    [missing] = [c for c in found.causes if c.kind == "no_worker"]
    assert "'not_deployed_anywhere'" in missing.message and "--module" in (missing.fix or "")


async def test_a_run_whose_worker_died(make_cluster):
    cluster = await make_cluster(SLOW_STEP_SECONDS="60")
    cluster.start_worker("w1", 1)
    await _registered(cluster)
    run_id = await start(slow_pipeline, 2)

    deadline = time.monotonic() + 60
    while not any(line[0] == "slow-start" for line in cluster.ledger_lines()):
        assert time.monotonic() < deadline, cluster.logs()
        await asyncio.sleep(0.1)
    pid = next(int(ln[3]) for ln in cluster.ledger_lines() if ln[0] == "slow-start")
    await _listed(cluster, run_id)  # its worker's beat says it runs the step
    cluster.kill_worker(cluster.worker_of_pid(pid))  # no scheduler: nobody recovers it
    found = await _eventually(cluster, run_id, {"dead_owner"})
    [dead] = [c for c in found.causes if c.kind == "dead_owner"]
    assert f"pid {pid}" in dead.message and "scheduler" in (dead.fix or "")
    assert found.stuck
