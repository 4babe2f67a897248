"""Routing on real worker processes: ``@step(queue=...)`` steps run only on workers
consuming that queue, a ``@workflow(queue=...)`` run waits for a worker consuming its
queue (start, scheduler wake and crash recovery all go there), and what monitors see of
each message (Flower, ``celery events``/``inspect``): ``workflow <name>`` / ``step <name>``
and the run (and operation) ids, never argument values.

Redis broker (the message tests read the broker's lists as Flower's broker view would),
SQLite storage."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pyworkflow import start, start_by_name
from pyworkflow.celery.app import STEPS_QUEUE, WORKFLOWS_QUEUE
from pyworkflow.celery.messages import send_step
from pyworkflow.engine.context import DispatchedStep
from pyworkflow.storage.schemas import RunStatus, WorkflowRun
from tests.celery.cluster import Cluster, wait_all_terminal
from tests.celery.flows import (
    BILLING_QUEUE,
    GPU_QUEUE,
    billing_flow,
    billing_slow,
    routed_pipeline,
    transient_flow,
)

pytestmark = pytest.mark.timeout(240)

SECRET = "s3cret-argument-value"


def _redis(cluster: Cluster):
    import redis

    return redis.Redis.from_url(cluster.broker)


def _queued(cluster: Cluster, queue: str) -> list[dict]:
    """The messages waiting in ``queue`` (Celery's Redis transport keeps each queue as a
    list of JSON envelopes: headers, properties, base64 body)."""
    client = _redis(cluster)
    try:
        return [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
    finally:
        client.close()


def _depth(cluster: Cluster, queue: str) -> int:
    """Messages waiting in ``queue``, on Redis or RabbitMQ (a passive declaration)."""
    from kombu import Connection

    with Connection(cluster.broker) as conn:
        return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)


async def _wait_for(predicate, cluster: Cluster, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not await predicate():
        assert time.monotonic() < deadline, cluster.logs()
        await asyncio.sleep(0.1)


async def test_messages_carry_readable_names_and_ids_only(make_cluster):
    """With no worker running, the broker holds each message in its queue with Celery's
    ``shadow`` name and ids-only ``argsrepr``/``kwargsrepr`` (what Flower and ``celery
    events`` display); no argument value appears in any header, not even for a transient
    run whose arguments travel in the body."""
    cluster = await make_cluster()
    run_id = await start(billing_flow, 42)
    transient_id = await start(transient_flow, SECRET, durable=False)
    send_step(DispatchedStep(run_id, "step:on_gpu#1", "on_gpu", 1, GPU_QUEUE), "round:x")

    [billing] = _queued(cluster, BILLING_QUEUE)
    assert billing["headers"]["task"] == "pyworkflow.run_workflow"  # what runs it
    assert billing["headers"]["shadow"] == "workflow billing_flow"  # what monitors show
    assert billing["headers"]["argsrepr"] == "()"
    assert billing["headers"]["kwargsrepr"] == repr({"run_id": run_id})
    body = json.loads(base64.b64decode(billing["body"]))
    assert body[1]["run_id"] == run_id

    [transient] = _queued(cluster, WORKFLOWS_QUEUE)
    assert transient["headers"]["shadow"] == "workflow transient_flow"
    assert transient["headers"]["kwargsrepr"] == repr({"run_id": transient_id})
    assert SECRET not in json.dumps(transient["headers"])
    assert SECRET in base64.b64decode(transient["body"]).decode()  # (it does travel)

    [gpu] = _queued(cluster, GPU_QUEUE)
    assert gpu["headers"]["task"] == "pyworkflow.run_step"
    assert gpu["headers"]["shadow"] == "step on_gpu"
    assert gpu["headers"]["kwargsrepr"] == repr({"run_id": run_id, "op_id": "step:on_gpu#1"})
    assert _queued(cluster, STEPS_QUEUE) == []

    stored = await cluster.storage.get_run(run_id)
    assert stored.queue == BILLING_QUEUE  # the scheduler and CLI route from this


async def test_start_by_name_routes_without_the_code(make_cluster):
    """A process without the workflow's code starts it by name onto the queue it names;
    a bad queue name is refused before anything is stored."""
    cluster = await make_cluster()
    run_id = await start_by_name("some_remote_flow", [1], queue="test.billing")
    [message] = _queued(cluster, BILLING_QUEUE)
    assert message["headers"]["shadow"] == "workflow some_remote_flow"
    assert (await cluster.storage.get_run(run_id)).queue == BILLING_QUEUE
    with pytest.raises(ValueError, match=r"invalid queue name 'no spaces'"):
        await start_by_name("some_remote_flow", [1], queue="no spaces")


async def test_steps_run_on_the_workers_of_their_queue(make_cluster):
    """A worker consuming only the gpu queue runs the gpu steps and nothing else; a
    default worker runs the workflow and the other steps. The worker logs name the tasks
    as monitors show them."""
    cluster = await make_cluster()
    cluster.start_worker("gpu", 1, f"--queues={GPU_QUEUE}")
    cluster.start_worker("main", 2, f"--queues={WORKFLOWS_QUEUE},{STEPS_QUEUE}")
    run_ids = [await start(routed_pipeline, x) for x in range(4)]
    runs = await wait_all_terminal(cluster.storage, run_ids, 90, cluster)
    for x, run in enumerate(runs):
        assert run.status == RunStatus.COMPLETED, run.error
        result = run.result
        assert result["gpu"]["value"] == x * 10 and result["default"]["value"] == x + 1
        assert cluster.worker_of_pid(result["gpu"]["pid"]) == "gpu"
        assert cluster.worker_of_pid(result["default"]["pid"]) == "main"
        assert cluster.worker_of_pid(result["workflow_pid"]) == "main"
    gpu_log = (cluster.tmp / "worker-gpu.log").read_text()
    assert "Task step on_gpu[" in gpu_log
    assert "Task workflow" not in gpu_log and "Task step on_default[" not in gpu_log
    main_log = (cluster.tmp / "worker-main.log").read_text()
    assert "Task workflow routed_pipeline[" in main_log and "Task step on_default[" in main_log


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
async def test_a_routed_workflow_waits_for_a_worker_of_its_queue(make_cluster, broker):
    """A billing run is not taken by a worker that does not consume the billing queue
    (its message waits in that queue, which the sender declared: RabbitMQ keeps it);
    once a billing worker comes it runs, and its wake-up after the sleep, sent by the
    scheduler (no countdown), goes to the billing queue too."""
    cluster = await make_cluster(broker=broker, PYWORKFLOW_CELERY_COUNTDOWN_WINDOW="0")
    cluster.start_worker("main", 2, f"--queues={WORKFLOWS_QUEUE},{STEPS_QUEUE}")
    cluster.start_scheduler()
    run_id = await start(billing_flow, 5)
    await asyncio.sleep(4)
    run = await cluster.storage.get_run(run_id)
    assert run.status == RunStatus.PENDING and run.last_sequence == 1
    assert _depth(cluster, BILLING_QUEUE) == 1

    cluster.start_worker("billing", 1, f"--queues={BILLING_QUEUE}")
    [run] = await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    assert run.status == RunStatus.COMPLETED, run.error
    assert cluster.worker_of_pid(run.result["first_pid"]) == "billing"
    assert cluster.worker_of_pid(run.result["last_pid"]) == "billing"  # woken there
    assert cluster.worker_of_pid(run.result["charged"]["pid"]) == "main"  # a default step
    assert "Task workflow billing_flow[" in (cluster.tmp / "worker-billing.log").read_text()
    assert "billing_flow" not in (cluster.tmp / "worker-main.log").read_text()


async def test_recovery_is_sent_to_the_runs_queue(make_cluster):
    """The billing worker dies mid-run: the scheduler's recovery message goes to the
    billing queue, where a second billing worker takes it (the default worker, idle all
    along, never does)."""
    cluster = await make_cluster(SLOW_STEP_SECONDS="30")
    cluster.start_worker("main", 2, f"--queues={WORKFLOWS_QUEUE},{STEPS_QUEUE}")
    cluster.start_worker("billing1", 1, f"--queues={BILLING_QUEUE}")
    cluster.start_scheduler()
    run_id = await start(billing_slow, 7)

    async def started() -> bool:
        return any(line[0] == "slow-local-start" for line in cluster.ledger_lines())

    await _wait_for(started, cluster)
    pid = next(int(ln[3]) for ln in cluster.ledger_lines() if ln[0] == "slow-local-start")
    assert cluster.worker_of_pid(pid) == "billing1"
    cluster.kill_worker("billing1")

    async def resent() -> bool:
        return len(_queued(cluster, BILLING_QUEUE)) == 1

    await _wait_for(resent, cluster, 60)
    cluster.env_extra["SLOW_STEP_SECONDS"] = "0"  # the new worker's attempt is quick
    cluster.start_worker("billing2", 1, f"--queues={BILLING_QUEUE}")
    [run] = await wait_all_terminal(cluster.storage, [run_id], 90, cluster)
    assert run.status == RunStatus.COMPLETED, run.error
    assert run.recovery_attempts == 1
    assert cluster.worker_of_pid(run.result) == "billing2"
    assert "billing_slow" not in (cluster.tmp / "worker-main.log").read_text()


async def test_a_retry_without_the_code_goes_to_the_runs_queue(make_cluster):
    """``pyworkflow runs retry`` in a directory without any workflow code: the new run
    gets the old run's queue (read from storage) and its message goes there."""
    cluster = await make_cluster()
    old = WorkflowRun(
        run_id="run_failed_billing",
        workflow_name="billing_elsewhere",
        status=RunStatus.FAILED,
        input_payload=json.dumps({"args": [1], "kwargs": {}}),
        queue=BILLING_QUEUE,
    )
    await cluster.storage.create_run(old)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    done = await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).parent / "pyworkflow"), "--storage", cluster.storage_url,
         "--runtime", "celery", "--broker", cluster.broker, "-o", "json",
         "runs", "retry", old.run_id],
        cwd=cluster.tmp, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    new_id = json.loads(done.stdout)["run_id"]
    assert (await cluster.storage.get_run(new_id)).queue == BILLING_QUEUE
    [message] = _queued(cluster, BILLING_QUEUE)
    assert message["headers"]["shadow"] == "workflow billing_elsewhere"
    assert message["headers"]["kwargsrepr"] == repr({"run_id": new_id})
    assert _queued(cluster, WORKFLOWS_QUEUE) == []


def _capture_task_events(count: int, ready: threading.Event) -> list[dict]:
    """The first ``count`` ``task-received`` events the workers send (what Flower and
    ``celery events`` consume), or fewer if none comes for 60 s."""
    from pyworkflow.celery.app import sending_app

    app = sending_app()
    received: list[dict] = []
    with app.connection_for_read() as conn:
        receiver = app.events.Receiver(conn, handlers={"task-received": received.append})
        receiver.on_consume_ready = lambda *_args, **_kwargs: ready.set()
        with contextlib.suppress(TimeoutError):
            for _ in receiver.itercapture(timeout=60, wakeup=False):
                if len(received) >= count:
                    break
    return received


async def test_task_events_show_names_and_ids(make_cluster):
    """A worker sending task events (``-E``, as Flower asks for) reports each task under
    its readable name with the ids only: what Flower lists."""
    cluster = await make_cluster()
    cluster.start_worker("main", 2, "-E", f"--queues={WORKFLOWS_QUEUE},{STEPS_QUEUE},{GPU_QUEUE}")
    ready = threading.Event()
    # One run: its start and its two parallel steps (the task recording the round's last
    # step goes on with the run itself: this worker also runs workflows).
    capture = asyncio.ensure_future(asyncio.to_thread(_capture_task_events, 3, ready))
    assert await asyncio.to_thread(ready.wait, 30)
    run_id = await start(routed_pipeline, 3)
    events = await capture
    [run] = await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    assert run.status == RunStatus.COMPLETED, run.error
    shown = sorted((e["name"], e["args"], e["kwargs"]) for e in events)
    assert shown == [
        ("step on_default", "()", repr({"run_id": run_id, "op_id": "step:on_default#1"})),
        ("step on_gpu", "()", repr({"run_id": run_id, "op_id": "step:on_gpu#1"})),
        ("workflow routed_pipeline", "()", repr({"run_id": run_id})),
    ]


async def test_pyworkflow_worker_consumes_custom_queues(make_cluster):
    """``pyworkflow worker --queues gpu-queue,workflows,steps`` runs the gpu steps, and its
    pool processes list those queues in the worker registry; a bad queue name is refused
    naming it, before any worker starts."""
    cluster = await make_cluster()
    script = str(Path(sys.executable).parent / "pyworkflow")
    bad = await asyncio.to_thread(
        subprocess.run,
        [script, "worker", "--queues", "workflows,gpu/1"],
        cwd=cluster.tmp, env=cluster.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "invalid queue name 'gpu/1'" in bad.stderr, bad.stderr

    log = (cluster.tmp / "worker-cli.log").open("ab")
    proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the worker runs on
        [script, "worker", "--queues", f"{GPU_QUEUE},workflows,steps", "-c", "1",
         "--hostname", "cli@%h"],
        cwd=cluster.tmp, env=cluster.env(), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    cluster.workers["cli"] = proc  # stopped with the cluster
    run_id = await start(routed_pipeline, 1)
    [run] = await wait_all_terminal(cluster.storage, [run_id], 90, cluster)
    assert run.status == RunStatus.COMPLETED, run.error
    assert cluster.worker_of_pid(run.result["gpu"]["pid"]) == "cli"
    celery_workers = [w for w in await cluster.storage.list_workers() if w.kind == "celery"]
    assert celery_workers, cluster.logs()
    assert all(
        sorted(w.queues) == sorted([GPU_QUEUE, WORKFLOWS_QUEUE, STEPS_QUEUE])
        for w in celery_workers
    )
