"""A message lost between broker and worker (dropped here on purpose by purging its
queue) loses no run: the recovery sweep sends the run again once the run's queue
allowance (``dispatch_timeout``) has run out, and the run completes without a recovery
attempt counted. On real workers, a scheduler and both brokers.

The bound measured in ``benchmarks/lost_messages.py``: a lost message's run is sent
again within ``dispatch_timeout + timer_poll_interval`` of being queued."""

from __future__ import annotations

import asyncio
import time

import pytest
from kombu import Connection, Queue

from pyworkflow import start
from pyworkflow.celery.app import STEPS_QUEUE, WORKFLOWS_QUEUE
from pyworkflow.engine.owners import OwnerKind, owner_kind
from tests.celery.cluster import Cluster, wait_all_terminal
from tests.celery.flows import pipeline, slow_pipeline

pytestmark = pytest.mark.timeout(180)

BROKERS = ["redis", "rabbitmq"]
DISPATCH_TIMEOUT = 6.0


def _drop_messages(cluster: Cluster, queue: str) -> int:
    """Purge ``queue``: every message in it is lost; returns how many there were."""
    with Connection(cluster.broker) as conn:
        return int(Queue(queue, channel=conn.default_channel).purge() or 0)


async def _assert_plain_delivery(cluster: Cluster, run_ids: list[str]) -> None:
    for run_id in run_ids:
        run = await cluster.storage.get_run(run_id)
        assert run.recovery_attempts == 0
        types = [e.type.value for e in await cluster.storage.get_events(run_id)]
        assert "workflow.interrupted" not in types, types


@pytest.mark.parametrize("broker", BROKERS)
async def test_lost_start_messages_are_sent_again_after_dispatch_timeout(make_cluster, broker):
    """Three runs started with no worker up, their messages purged: the sweep sends each
    again once its queue allowance runs out; all complete, no sooner than the
    allowance and well within twice it, with no recovery attempt."""
    cluster = await make_cluster(broker=broker, dispatch_timeout=DISPATCH_TIMEOUT)
    began = time.monotonic()
    run_ids = [await start(pipeline, i, nap="0s") for i in range(3)]
    assert _drop_messages(cluster, WORKFLOWS_QUEUE) == 3
    cluster.start_worker("w1", 2)
    cluster.start_scheduler()
    runs = await wait_all_terminal(cluster.storage, run_ids, 90, cluster)
    elapsed = time.monotonic() - began
    assert [run.result for run in runs] == [i + 11 + 4 for i in range(3)]
    assert DISPATCH_TIMEOUT <= elapsed < 2 * DISPATCH_TIMEOUT + 10, elapsed
    await _assert_plain_delivery(cluster, run_ids)


async def test_a_lost_step_message_is_dispatched_again(make_cluster):
    """A dispatched step's message is purged before any step worker took it: the sweep
    finds the round whose allowance ran out and sends its step again; the step body
    runs once and the run completes without a recovery attempt. (The sweep does this
    from storage alone: one broker is enough here.)"""
    cluster = await make_cluster(dispatch_timeout=DISPATCH_TIMEOUT, SLOW_STEP_SECONDS="0.1")
    # No consumer of the step queue yet: the first step's message waits there.
    cluster.start_worker("orchestration", 1, "--queues=pyworkflow.workflows,pyworkflow.schedules")
    cluster.start_scheduler()
    run_id = await start(slow_pipeline, 5)
    deadline = time.monotonic() + 60
    while not _drop_messages(cluster, STEPS_QUEUE):  # the step's message, once sent
        assert time.monotonic() < deadline, cluster.logs()
        await asyncio.sleep(0.05)
    dispatched = time.monotonic()
    run = await cluster.storage.get_run(run_id)
    assert owner_kind(run.lease_owner) is OwnerKind.ROUND  # held by the step's round
    cluster.start_worker("steps", 1, "--queues=pyworkflow.steps")
    [run] = await wait_all_terminal(cluster.storage, [run_id], 90, cluster)
    assert (run.status.value, run.result) == ("completed", 12)
    assert time.monotonic() - dispatched >= DISPATCH_TIMEOUT - 1
    assert [line[0] for line in cluster.ledger_lines()].count("add") == 2
    assert "lost its step messages; sending them again" in cluster.logs()
    await _assert_plain_delivery(cluster, [run_id])
