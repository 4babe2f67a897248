"""Lost broker messages: how long until the recovery sweep sends a lost message's run again.

For each broker (Redis, RabbitMQ) and each ``(dispatch_timeout, timer_poll_interval)``:
one worker (consuming every queue but the workflow queue) and one ``pyworkflow scheduler``
are started first; then ``RUNS`` runs are started and their start messages purged from the
workflow queue (lost between broker and worker), and the worker is told to consume the
workflow queue (Celery's ``add_consumer`` remote control). A queued run holds a
placeholder lease for ``dispatch_timeout``; once it ran out, the scheduler's next pass
sends the run again (no recovery attempt counted).

Reported per configuration: the time from ``start()`` to the run's first execution
(its first event after ``workflow.started``), and the *detection delay*: that time minus
``dispatch_timeout`` (p50 / max). The bound it checks: detection delay <=
``timer_poll_interval`` + one sweep pass + one broker hop. Lost step messages (a round's
allowance), fired timers (a claim's allowance) and a resumed run's message (the round's
queued holder) use the same allowance and the same sweep, so the same bound holds.

Run: ``.venv/bin/python benchmarks/lost_messages.py`` (Redis and RabbitMQ on localhost;
``PYWORKFLOW_TEST_BROKER_DB`` picks the Redis database, default 14;
``PYWORKFLOW_TEST_RABBITMQ_URL`` the RabbitMQ vhost). Writes
``benchmarks/results/lost_messages.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import pyworkflow  # noqa: E402
from pyworkflow import start  # noqa: E402
from tests.celery.cluster import Cluster, wait_all_terminal  # noqa: E402
from tests.celery.flows import pipeline  # noqa: E402
from tests.services import service_url  # noqa: E402

RUNS = 20
CONFIGS = [(5.0, 1.0), (10.0, 0.25), (10.0, 2.0), (20.0, 1.0)]


def _brokers() -> dict[str, str]:
    redis = service_url("redis").rsplit("/", 1)[0]
    db = os.environ.get("PYWORKFLOW_TEST_BROKER_DB", "14")
    return {"redis": f"{redis}/{db}", "rabbitmq": service_url("rabbitmq")}


def _purge(broker: str, *, flush: bool = False) -> int:
    from kombu import Connection, Queue

    from pyworkflow.celery.app import QUEUES

    dropped = 0
    with Connection(broker) as conn:
        for name in QUEUES:
            queue = Queue(name, channel=conn.default_channel)
            queue.declare()
            dropped += int(queue.purge() or 0)
        if flush and broker.startswith("redis"):
            conn.default_channel.client.flushdb()
    return dropped


def _consume_workflows(worker: str) -> None:
    from pyworkflow.celery.app import WORKFLOWS_QUEUE, sending_app

    replies = sending_app().control.add_consumer(
        WORKFLOWS_QUEUE, destination=[worker], reply=True, timeout=10
    )
    if not replies:
        raise RuntimeError(f"worker {worker} did not answer add_consumer")


async def measure(broker: str, dispatch_timeout: float, poll: float) -> dict[str, Any]:
    _purge(broker, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        storage_url = f"sqlite:///{Path(tmp) / 'workflows.db'}"
        env = {
            "PYWORKFLOW_DISPATCH_TIMEOUT": str(dispatch_timeout),
            "PYWORKFLOW_TIMER_POLL_INTERVAL": str(poll),
        }
        cluster = Cluster(tmp=Path(tmp), broker=broker, storage_url=storage_url, env_extra=env)
        pyworkflow.reset_config()
        pyworkflow.configure(
            storage=storage_url,
            celery_broker=broker,
            default_runtime="celery",
            modules=["tests.celery.flows"],
            dispatch_timeout=dispatch_timeout,
        )
        storage = pyworkflow.get_storage()
        await storage.connect()
        try:
            cluster.start_worker("w1", 2, "--queues=pyworkflow.steps,pyworkflow.schedules")
            cluster.start_scheduler()
            run_ids = [await start(pipeline, i, nap="0s") for i in range(RUNS)]
            lost = _purge(broker)
            _consume_workflows(f"w1@{socket.gethostname()}")
            runs = await wait_all_terminal(storage, run_ids, dispatch_timeout + 120, cluster)
            pickup, recoveries = [], 0
            for run in runs:
                events = await storage.get_events(run.run_id)
                first = next(e for e in events if e.sequence == 2)
                pickup.append((first.timestamp - run.created_at).total_seconds())
                recoveries += run.recovery_attempts
        finally:
            cluster.stop()
            await storage.close()
    delay = [p - dispatch_timeout for p in pickup]
    return {
        "dispatch_timeout": dispatch_timeout,
        "timer_poll_interval": poll,
        "runs": RUNS,
        "messages_lost": lost,
        "recovery_attempts": recoveries,
        "pickup_p50": statistics.median(pickup),
        "pickup_max": max(pickup),
        "delay_p50": statistics.median(delay),
        "delay_min": min(delay),
        "delay_max": max(delay),
    }


async def main() -> None:
    rows: list[dict[str, Any]] = []
    for name, url in _brokers().items():
        for dispatch_timeout, poll in CONFIGS:
            began = time.monotonic()
            row = {"broker": name, **await measure(url, dispatch_timeout, poll)}
            rows.append(row)
            print(
                f"{name:9} dispatch_timeout={dispatch_timeout:5.1f}s poll={poll:4.2f}s  "
                f"lost={row['messages_lost']:3}  pickup p50={row['pickup_p50']:6.2f}s "
                f"max={row['pickup_max']:6.2f}s  delay beyond dispatch_timeout "
                f"p50={row['delay_p50']:5.2f}s max={row['delay_max']:5.2f}s  "
                f"recoveries={row['recovery_attempts']}  ({time.monotonic() - began:.0f}s)",
                flush=True,
            )
    out = HERE / "results" / "lost_messages.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    asyncio.run(main())
