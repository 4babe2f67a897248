"""Two timer sweepers at once (as two ``pyworkflow scheduler`` processes run them), each
on its own storage connection, drain 800 due timers: every due run is sent to the
workflow queue exactly once, and both sweepers claim a share. And a sweeper stops
claiming while the workflow queues (routed ones included) hold its backlog limit.

The sweepers run in this process (two :class:`TimerSweeper` instances, two storage
backends) so the test can pass them in lock step; what they send goes to the real Redis
broker, and the test reads the messages back from the queue. No worker runs: the
messages are what is checked.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from datetime import timedelta

import pytest

from pyworkflow.celery.app import WORKFLOWS_QUEUE
from pyworkflow.celery.scheduler import TimerSweeper
from pyworkflow.storage.config import storage_from_url
from pyworkflow.storage.schemas import RunStatus, WorkflowRun, utcnow

pytestmark = pytest.mark.timeout(180)

DUE = 800  # under the sweepers' backlog limit (1,000 queued messages), as no worker takes any


def _queued_run_ids(broker: str, queue: str = WORKFLOWS_QUEUE) -> list[str]:
    """The run ids of the ``run_workflow`` messages waiting in ``queue``."""
    import redis

    client = redis.Redis.from_url(broker)
    try:
        raw = client.lrange(queue, 0, -1)
    finally:
        client.close()
    ids = []
    for item in raw:
        message = json.loads(item)
        _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        ids.append(kwargs["run_id"])
    return ids


def _take(broker: str, queue: str, count: int) -> None:
    """Take ``count`` messages off ``queue``, as a worker would."""
    import redis

    client = redis.Redis.from_url(broker)
    try:
        for _ in range(count):
            client.rpop(queue)
    finally:
        client.close()


async def _due_runs(storage, count: int, queues: tuple[str | None, ...] = (None,)) -> list[str]:
    """``count`` runs due a minute ago, stored with ``queues`` in turn."""
    past = utcnow() - timedelta(minutes=1)
    due = [f"due-{i:04d}" for i in range(count)]
    for i, run_id in enumerate(due):
        await storage.create_run(
            WorkflowRun(
                run_id=run_id,
                workflow_name="stamp",
                status=RunStatus.SUSPENDED,
                created_at=past,
                updated_at=past,
                wake_at=past,
                queue=queues[i % len(queues)],
            )
        )
    return due


@pytest.mark.parametrize("storage", ["sqlite", "postgres"])
async def test_two_sweepers_never_fire_a_timer_twice_and_share_the_work(make_cluster, storage):
    cluster = await make_cluster(storage=storage)
    due = await _due_runs(cluster.storage, DUE)
    other = storage_from_url(cluster.storage_url)  # a second connection, as a second process has
    first, second = TimerSweeper(cluster.storage), TimerSweeper(other)
    try:
        deadline = time.monotonic() + 120
        while first.claimed_total + second.claimed_total < DUE and time.monotonic() < deadline:
            await asyncio.gather(first.tick(full=False), second.tick(full=False))
        # Nothing is left to claim, by either.
        assert await first.fire_due() == 0
        assert await second.fire_due() == 0
    finally:
        await other.close()

    sent = _queued_run_ids(cluster.broker)
    twice = [run_id for run_id, n in Counter(sent).items() if n > 1]
    assert not twice, f"sent more than once: {twice[:10]}"
    assert sorted(sent) == due
    assert first.claimed_total + second.claimed_total == DUE
    assert first.claimed_total > 0 and second.claimed_total > 0, (
        first.claimed_total,
        second.claimed_total,
    )
    # Each run is held by the claim of the sweeper that sent it, until a worker takes it.
    owners = Counter()
    for run_id in due:
        run = await cluster.storage.get_run(run_id)
        owners[run.lease_owner.rsplit("/", 1)[0]] += 1
    assert owners == {first.owner: first.claimed_total, second.owner: second.claimed_total}


async def test_a_sweeper_stops_claiming_while_the_queue_holds_its_backlog(make_cluster):
    cluster = await make_cluster()
    await _due_runs(cluster.storage, 400)
    sweeper = TimerSweeper(cluster.storage, max_backlog=150)
    assert await sweeper.tick(full=False) == 0.0  # a full batch: more are due at once
    assert await sweeper.tick(full=False) == 0.0  # 100 queued: room for 50 more
    assert sweeper.claimed_total == 150
    assert await sweeper.tick(full=False) > 0  # the queue is full: it waits
    assert sweeper.claimed_total == 150
    assert len(_queued_run_ids(cluster.broker)) == 150
    # A worker takes messages: the sweeper claims again, up to the limit.
    _take(cluster.broker, WORKFLOWS_QUEUE, 60)
    await sweeper.tick(full=False)
    assert sweeper.claimed_total == 210
    assert len(_queued_run_ids(cluster.broker)) == 150


async def test_routed_queues_count_towards_the_backlog(make_cluster):
    """Runs of ``@workflow(queue=...)`` go to their own queue; the backlog limit covers
    it too, and the sweeper says which queue holds the messages when it holds back."""
    from loguru import logger

    routed = "bp-routed"
    cluster = await make_cluster()
    await _due_runs(cluster.storage, 400, queues=(None, routed))
    sweeper = TimerSweeper(cluster.storage, max_backlog=150)
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING")
    try:
        for _ in range(4):
            await sweeper.tick(full=False)
    finally:
        logger.remove(sink)
    default_queue = _queued_run_ids(cluster.broker)
    routed_queue = _queued_run_ids(cluster.broker, routed)
    assert sweeper.claimed_total == len(default_queue) + len(routed_queue) == 150
    assert len(routed_queue) > 50  # both queues got their share of the due runs
    held_back = [line for line in lines if "holds back due runs" in line]
    assert len(held_back) == 1 and f"{routed}=" in held_back[0]
    # Workers of the routed queue take some: the sweeper claims again, up to the limit.
    _take(cluster.broker, routed, 60)
    await sweeper.tick(full=False)
    assert sweeper.claimed_total == 210
