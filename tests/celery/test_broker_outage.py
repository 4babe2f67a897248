"""The broker fails under a running Celery deployment: a private Redis broker (its own
temporary directory and port, append-only file on, so queued messages survive) is
killed while runs with dispatched steps are in flight, and comes back a few seconds later.
Every run completes with the right result, each step's completion recorded once, and no
run fails: a broker outage is the infrastructure's fault, never a run's."""

from __future__ import annotations

import asyncio

import pytest

from pyworkflow import start
from tests.celery.cluster import completions_per_step, wait_all_terminal
from tests.celery.flows import five_doubles
from tests.private_servers import PrivateRedis, unavailable

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
async def private_broker():
    try:
        server = PrivateRedis()
        await server.setup()
    except Exception as exc:  # noqa: BLE001 - a machine without redis-server
        unavailable(f"cannot start a private redis-server as broker: {exc}")
    yield server
    await server.destroy()


async def test_runs_survive_a_broker_killed_for_five_seconds(make_cluster, private_broker):
    # Messages a worker had reserved when the broker died come back only after Redis's
    # visibility timeout: the short dispatch_timeout lets the sweep re-send those runs.
    cluster = await make_cluster(
        broker=private_broker.url, dispatch_timeout=10, SLOW_STEP_SECONDS="0.2"
    )
    cluster.start_worker("w1", 2)
    cluster.start_worker("w2", 2)
    cluster.start_scheduler()
    run_ids = [await start(five_doubles, i) for i in range(20)]
    await asyncio.sleep(1.5)  # runs are mid-way through their steps
    await private_broker.stop(crash=True)
    await asyncio.sleep(5)
    await private_broker.start()
    runs = await wait_all_terminal(cluster.storage, run_ids, 200, cluster)
    assert [(run.status.value, run.result) for run in runs] == [
        ("completed", 32 * i) for i in range(20)
    ]
    for run_id in run_ids:
        assert set((await completions_per_step(cluster.storage, run_id)).values()) == {1}
        events = await cluster.storage.get_events(run_id)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
