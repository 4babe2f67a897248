"""Behaviour of the Celery runtime users rely on, on real worker processes (SQLite
storage; Redis broker, and RabbitMQ too for the main scenarios: start, dispatched steps,
sleep wake-ups, a worker killed with SIGKILL, hooks, cancellation): starts return at
once, parallel steps spread over workers, inline steps, retries, exactly-once under
duplicate delivery, unrecoverable runs, children, cancellation and transient runs."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time

import cloudpickle
import pytest

from pyworkflow import (
    QueryNotFoundError,
    cancel_workflow,
    query_workflow,
    resume_hook,
    send_signal,
    start,
)
from pyworkflow.celery.messages import send_step, send_transient
from pyworkflow.core.workflow import definition_of
from pyworkflow.engine.context import DispatchedStep
from pyworkflow.storage.schemas import utcnow
from tests.celery.cluster import completions_per_step, wait_all_terminal
from tests.celery.flows import (
    approval,
    blocking_pipeline,
    collector,
    fan_out,
    five_doubles,
    fragile,
    parent_flow,
    pipeline,
    retrying,
    sleeper,
    slow_pipeline,
    transient_flow,
    trip,
)

pytestmark = pytest.mark.timeout(240)

# The main scenarios run on both brokers; the rest on Redis (the default) only.
BROKERS = pytest.mark.parametrize("broker", ["redis", "rabbitmq"])


async def _events(cluster, run_id):
    return await cluster.storage.get_events(run_id)


async def _wait_for(predicate, cluster, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not await predicate():
        assert time.monotonic() < deadline, cluster.logs()
        await asyncio.sleep(0.05)


@BROKERS
async def test_start_returns_before_the_run_executes(make_cluster, broker):
    """start() with the celery runtime is a write and an enqueue: with no worker running
    the run is stored 'pending'; the first worker to come up executes it."""
    cluster = await make_cluster(broker=broker)
    began = time.perf_counter()
    run_id = await start(pipeline, 1, nap="1s")
    elapsed = time.perf_counter() - began
    run = await cluster.storage.get_run(run_id)
    assert run.status.value == "pending" and elapsed < 1.0
    cluster.start_worker("w1")
    cluster.start_scheduler()
    [run] = await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    assert run.result == 16


@BROKERS
async def test_parallel_steps_run_in_parallel_on_the_workers(make_cluster, broker):
    """Steps awaited together are dispatched together: four 2-second steps on two
    workers finish in about one step's time, not four."""
    cluster = await make_cluster(broker=broker, SLOW_STEP_SECONDS="2")
    cluster.start_worker("w1", 2)
    cluster.start_worker("w2", 2)
    began = time.monotonic()
    run_id = await start(fan_out, 4)
    [run] = await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    assert run.result == [0, 2, 4, 6]
    assert time.monotonic() - began < 7.5  # sequential would be >= 8 s
    pids = {line[3] for line in cluster.ledger_lines() if line[0] == "slow-start"}
    assert len(pids) == 4  # four pool processes ran one step each


async def test_force_local_steps_run_inside_the_workflow_task(make_cluster):
    """force_local steps are recorded without a 'dispatched' attempt; others are
    dispatched to the step queue."""
    cluster = await make_cluster()
    cluster.start_worker("w1")
    cluster.start_scheduler()
    run_id = await start(pipeline, 2, nap="0s")
    await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    started = {
        e.data["step_id"]: bool(e.data.get("dispatched"))
        for e in await _events(cluster, run_id)
        if e.type.value == "step.started"
    }
    assert started == {"step:add#1": True, "step:add#2": True, "step:inline_square#1": False}


async def test_inline_steps_option_skips_the_step_queue(make_cluster):
    """celery_inline_steps=True: every step runs in the workflow task."""
    cluster = await make_cluster(PYWORKFLOW_CELERY_INLINE_STEPS="true")
    cluster.start_worker("w1", "1", "--queues=pyworkflow.workflows,pyworkflow.schedules")
    cluster.start_scheduler()
    run_id = await start(pipeline, 3, nap="0s")
    [run] = await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    assert run.result == 18  # no worker consumes the step queue, yet it completed
    events = await _events(cluster, run_id)
    assert not any(e.data.get("dispatched") for e in events)


async def test_failed_step_is_retried_after_its_delay(make_cluster):
    """A dispatched step that fails is retried (durably, after retry_delay) and the
    run completes; both attempts are in the log."""
    cluster = await make_cluster()
    cluster.start_worker("w1")
    cluster.start_scheduler()
    run_id = await start(retrying, 5)
    [run] = await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    assert run.result == 1005
    types = [(e.type.value, e.data.get("attempt")) for e in await _events(cluster, run_id)]
    assert ("step.failed", 1) in types and ("step.completed", 2) in types
    assert [line[2] for line in cluster.ledger_lines() if line[0] == "flaky"] == ["1", "2"]


async def test_duplicate_step_delivery_records_one_completion(make_cluster):
    """A broker redelivery of a step message (sent here by hand while the step runs):
    the body may run twice, its completion is recorded once and the run advances once."""
    cluster = await make_cluster(SLOW_STEP_SECONDS="2")
    cluster.start_worker("w1", 2)
    cluster.start_worker("w2", 2)
    run_id = await start(slow_pipeline, 7)

    async def slow_started() -> bool:
        return any(line[0] == "slow-start" for line in cluster.ledger_lines())

    await _wait_for(slow_started, cluster)
    run = await cluster.storage.get_run(run_id)
    started = [e for e in await _events(cluster, run_id) if e.type.value == "step.started"]
    op = started[-1].data
    send_step(DispatchedStep(run_id, op["step_id"], op["step_name"], op["attempt"]), op["round"])
    [run] = await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    assert run.result == 16
    assert await completions_per_step(cluster.storage, run_id) == {
        "step:add#1": 1,
        "step:slow_double#1": 1,
        "step:add#2": 1,
    }
    await asyncio.sleep(1)  # let the duplicate finish: it must not append anything
    events = await _events(cluster, run_id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[-1].type.value == "workflow.completed"


@BROKERS
async def test_run_beyond_max_recovery_attempts_fails_with_reason(make_cluster, broker):
    """A run whose worker dies and that may not be recovered (max_recovery_attempts=0)
    ends 'failed' with a message saying why; the attempt is recorded."""
    cluster = await make_cluster(broker=broker, SLOW_STEP_SECONDS="30")
    cluster.start_worker("w1", 1)
    cluster.start_worker("w2", 1)
    cluster.start_scheduler()
    run_id = await start(fragile, 1)

    async def inline_started() -> bool:
        return any(line[0] == "slow-inline-start" for line in cluster.ledger_lines())

    await _wait_for(inline_started, cluster)
    pid = next(int(ln[3]) for ln in cluster.ledger_lines() if ln[0] == "slow-inline-start")
    cluster.kill_worker(cluster.worker_of_pid(pid))
    [run] = await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    assert run.status.value == "failed"
    assert "max_recovery_attempts (0)" in run.error
    interrupted = [
        e for e in await _events(cluster, run_id) if e.type.value == "workflow.interrupted"
    ]
    assert [e.data["recovery_attempt"] for e in interrupted] == [1]


async def test_child_workflow_runs_on_the_workers(make_cluster):
    """A child started by a parent is executed by the workers and wakes its parent."""
    cluster = await make_cluster()
    cluster.start_worker("w1")
    cluster.start_scheduler()
    run_id = await start(parent_flow, 5)
    [run] = await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    assert run.result == 106


@BROKERS
async def test_a_hook_payload_wakes_its_run_on_a_worker(make_cluster, broker):
    """A run waits on a hook (suspended, holding no worker); the payload delivered from
    this process (the application) wakes it on a worker, and it completes with it."""
    cluster = await make_cluster(broker=broker)
    cluster.start_worker("w1")
    cluster.start_scheduler()
    run_id = await start(approval, 10)

    async def waiting() -> bool:
        run = await cluster.storage.get_run(run_id)
        tokens = [ln for ln in cluster.ledger_lines() if ln[0] == "hook-token"]
        return run.status.value == "suspended" and bool(tokens)

    await _wait_for(waiting, cluster)
    token = next(ln[4] for ln in cluster.ledger_lines() if ln[0] == "hook-token")
    await resume_hook(token, {"amount": 5})
    [run] = await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    assert (run.status.value, run.result) == ("completed", 15), run.error


@pytest.mark.parametrize(
    ("storage", "broker"), [("sqlite", "redis"), ("sqlite", "rabbitmq"), ("postgres", "redis")]
)
async def test_signals_reach_a_run_on_the_workers_in_order(make_cluster, storage, broker):
    """Signals sent from the application: those sent before the run waits are buffered,
    a later one wakes the suspended run on a worker; each is taken once, in order."""
    cluster = await make_cluster(storage=storage, broker=broker)
    run_id = await start(collector, 4)
    await send_signal(run_id, "number", 1)  # no worker yet: buffered in the inbox
    await send_signal(run_id, "number", 2)
    cluster.start_worker("w1")
    cluster.start_scheduler()

    async def waiting_for_the_third() -> bool:
        events = await _events(cluster, run_id)
        run = await cluster.storage.get_run(run_id)
        return run.status.value == "suspended" and any(
            e.type.value == "signal.waiting" for e in events
        )

    await _wait_for(waiting_for_the_third, cluster)
    await send_signal(run_id, "number", 3)
    await send_signal(run_id, "number", 4)
    [run] = await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    assert (run.status.value, run.result) == ("completed", [1, 2, 3, 4]), run.error
    events = await _events(cluster, run_id)
    received = [e.data["sequence"] for e in events if e.type.value == "signal.received"]
    assert received == [1, 2, 3, 4]
    assert len([e for e in events if e.type.value == "signal.consumed"]) == 4


@BROKERS
async def test_a_query_is_answered_by_a_worker(make_cluster, broker, monkeypatch):
    """This process has not the workflow's code: a worker answers the query from the
    run's replayed state over a reply queue (no result backend), while the run waits for
    a signal; an unknown query is the worker's QueryNotFoundError; with no worker on the
    run's queue the query times out."""
    import pyworkflow.queries

    cluster = await make_cluster(broker=broker)
    cluster.start_worker("w1")
    run_id = await start(collector, 3)
    await send_signal(run_id, "number", 4)
    await send_signal(run_id, "number", 5)

    async def took_both() -> bool:
        events = await _events(cluster, run_id)
        return sum(e.type.value == "signal.consumed" for e in events) == 2 and any(
            e.type.value == "signal.waiting" for e in events
        )

    await _wait_for(took_both, cluster)
    # As in an application without the workflow's module: the worker must answer.
    monkeypatch.setattr(pyworkflow.queries, "find_workflow", lambda name: None)
    monkeypatch.setattr(pyworkflow.queries, "discover_workflows", lambda: None)
    before = len(await _events(cluster, run_id))
    assert await query_workflow(run_id, "total", timeout=30) == {"taken": [4, 5], "sum": 9}
    with pytest.raises(QueryNotFoundError, match="has no query 'nope'"):
        await query_workflow(run_id, "nope", timeout=30)
    assert len(await _events(cluster, run_id)) == before  # the query wrote nothing
    cluster.kill_worker("w1")
    with pytest.raises(TimeoutError, match="no worker answered"):
        await query_workflow(run_id, "total", timeout=1)


@pytest.mark.parametrize("storage", ["sqlite", "postgres"])
async def test_a_failed_saga_is_compensated_on_the_workers(make_cluster, storage):
    """A run whose third step fails: the two completed steps are undone newest first (a
    plain compensation in the workflow task, a step compensation on a step worker), each
    recorded once, and the run ends failed."""
    cluster = await make_cluster(storage=storage)
    cluster.start_worker("w1")
    cluster.start_scheduler()
    run_id = await start(trip, "r7")
    [run] = await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    assert run.status.value == "failed" and "room r7 is gone" in run.error
    undone = [[ln[0], ln[4]] for ln in cluster.ledger_lines() if ln[0] in ("void", "unbook")]
    assert undone == [["void", "payment-90"], ["unbook", "booking-r7"]]
    completed = await completions_per_step(cluster.storage, run_id)
    assert completed["step:void_payment#1"] == 1 and completed["step:book.compensate#1"] == 1


@BROKERS
async def test_cancel_a_sleeping_run(make_cluster, broker):
    """cancel_workflow on a run sleeping for an hour: a worker wakes it and it ends
    'cancelled' at once."""
    cluster = await make_cluster(broker=broker)
    cluster.start_worker("w1")
    cluster.start_scheduler()
    run_id = await start(sleeper, 3600)

    async def suspended() -> bool:
        run = await cluster.storage.get_run(run_id)
        return run.status.value == "suspended"

    await _wait_for(suspended, cluster)
    assert await cancel_workflow(run_id, reason="no longer needed")
    [run] = await wait_all_terminal(cluster.storage, [run_id], 30, cluster)
    assert run.status.value == "cancelled"


async def test_transient_workflow_runs_on_a_worker(make_cluster):
    """durable=False on Celery: the run executes in a worker process; nothing is stored."""
    cluster = await make_cluster()
    cluster.start_worker("w1")
    run_id = await start(transient_flow, "m-1", durable=False)

    async def ran() -> bool:
        return any(line[0] == "transient" and line[4] == "m-1" for line in cluster.ledger_lines())

    await _wait_for(ran, cluster, 30)
    assert await cluster.storage.get_run(run_id) is None


class _CreatesFile:
    """Unpickling this creates a file: what a forged message would make a worker do."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


async def test_a_forged_transient_message_with_a_pickle_is_refused(make_cluster):
    """Whoever can write to the broker cannot make a worker unpickle: a run_transient
    message carrying a pickled argument is refused, even with allow_pickle on."""
    cluster = await make_cluster(PYWORKFLOW_ALLOW_PICKLE="1")
    marker = cluster.tmp / "pwned"
    pickled = base64.b64encode(cloudpickle.dumps(_CreatesFile(str(marker)))).decode("ascii")
    payload = json.dumps({"args": [{"__pw__": "pickle", "v": pickled}], "kwargs": {}})
    send_transient(definition_of(transient_flow).name, "run_forged", payload)
    cluster.start_worker("w1", 1)  # one process: the forged message is handled first
    await start(transient_flow, "after-forged", durable=False)

    async def ran() -> bool:
        return any(
            line[0] == "transient" and line[4] == "after-forged" for line in cluster.ledger_lines()
        )

    await _wait_for(ran, cluster, 30)
    assert not marker.exists()
    assert "refused pyworkflow.run_transient message" in cluster.logs()


@BROKERS
async def test_celery_beat_fires_timers(make_cluster, broker):
    """`celery beat` (embedded here with --beat) is enough to wake sleeping runs: its
    timer task claims due runs from storage (no scheduler process, no countdown)."""
    cluster = await make_cluster(broker=broker, PYWORKFLOW_CELERY_COUNTDOWN_WINDOW="0")
    cluster.start_worker("w1", 2, "--beat", "--schedule=" + str(cluster.tmp / "beat-schedule"))
    run_ids = [await start(sleeper, 1) for _ in range(3)]
    runs = await wait_all_terminal(cluster.storage, run_ids, 60, cluster)
    assert [r.result for r in runs] == ["woke"] * 3


async def test_a_queue_backlog_is_not_a_lost_worker(make_cluster):
    """One worker with one slot, 50 runs of 5 dispatched 0.1 s steps, a 3 s lease: a
    run's next message waits behind up to 50 others (about 5 s, longer than a lease)
    while the sweeper runs all along. Every run completes and none records a recovery:
    waiting in a queue is not being lost."""
    cluster = await make_cluster(SLOW_STEP_SECONDS="0.1")
    cluster.start_worker("w1", 1)
    cluster.start_scheduler()
    run_ids = [await start(five_doubles, i) for i in range(50)]
    runs = await wait_all_terminal(cluster.storage, run_ids, 200, cluster)
    assert [run.result for run in runs] == [32 * i for i in range(50)]
    assert [run.recovery_attempts for run in runs] == [0] * 50
    for run_id in run_ids:
        types = {e.type.value for e in await _events(cluster, run_id)}
        assert "workflow.interrupted" not in types


async def test_a_step_three_leases_long_on_a_live_worker_is_never_taken_over(make_cluster):
    """A 9 s step with a 3 s lease: its worker renews the lease while the body runs, so
    the sweeper (running all along) never recovers the run and the body runs once."""
    cluster = await make_cluster(SLOW_STEP_SECONDS="9")
    cluster.start_worker("w1", 2)
    cluster.start_scheduler()
    run_id = await start(slow_pipeline, 1)
    [run] = await wait_all_terminal(cluster.storage, [run_id], 90, cluster)
    assert (run.result, run.recovery_attempts) == (4, 0)
    starts = [line for line in cluster.ledger_lines() if line[0] == "slow-start"]
    assert len(starts) == 1
    types = {e.type.value for e in await _events(cluster, run_id)}
    assert "workflow.interrupted" not in types


async def test_a_step_blocking_its_event_loop_for_three_leases_is_never_taken_over(make_cluster):
    """A 9 s step that blocks its process's event loop (no lease renewal can run) with a
    3 s lease: the worker's beat thread keeps listing the run in the worker registry, so
    the sweeper never recovers it and the body runs once."""
    cluster = await make_cluster(SLOW_STEP_SECONDS="9")
    cluster.start_worker("w1", 2)
    cluster.start_scheduler()
    run_id = await start(blocking_pipeline, 1)
    [run] = await wait_all_terminal(cluster.storage, [run_id], 90, cluster)
    assert (run.result, run.recovery_attempts) == (4, 0)
    starts = [line for line in cluster.ledger_lines() if line[0] == "blocking-start"]
    assert len(starts) == 1
    types = {e.type.value for e in await _events(cluster, run_id)}
    assert "workflow.interrupted" not in types


async def test_workers_appear_in_the_registry_and_leave_it_on_shutdown(make_cluster):
    """Each pool process of a running worker has a record (host, pid, queues, a recent
    beat, the runs it is on); a worker stopped cleanly removes its records."""
    cluster = await make_cluster(SLOW_STEP_SECONDS="6")
    cluster.start_worker("w1", 2)
    run_id = await start(slow_pipeline, 1)
    deadline = time.monotonic() + 30
    workers = []
    while time.monotonic() < deadline:
        workers = await cluster.storage.list_workers()
        if any(run_id in w.runs for w in workers):
            break
        await asyncio.sleep(0.2)
    assert len(workers) == 2, workers
    pids = {w.pid for w in workers}
    assert all(cluster.worker_of_pid(pid) == "w1" for pid in pids)
    for w in workers:
        assert w.kind == "celery" and w.host == socket.gethostname()
        assert "pyworkflow.workflows" in w.queues and "pyworkflow.steps" in w.queues
        assert (utcnow() - w.last_beat).total_seconds() < 3
    assert any(run_id in w.runs for w in workers), "the step's run is listed while it runs"
    await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    cluster.stop()
    assert await cluster.storage.list_workers() == []
