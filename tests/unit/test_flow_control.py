"""Flow control: ``@workflow(concurrency_limit=, concurrency_key=, rate_limit=)``, kept in
storage. At most N runs per key execute at once and the others wait ``pending`` in start
order; a sleeping run holds no slot; a crashed holder's slot frees when its lease
expires; a lost hand-off is found again by recovery; a cancelled waiter ends at once;
starts beyond a rate are delayed, not refused. On the in-memory backend, SQLite on disk
and PostgreSQL, with the local runtime (the Celery tests run the same on real workers)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

import pyworkflow
from pyworkflow import (
    cancel_workflow,
    configure,
    get_workflow_run,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.core.exceptions import DefinitionError
from pyworkflow.core.workflow import parse_rate
from pyworkflow.engine import flow
from pyworkflow.engine.diagnosis import diagnose
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import GateRecord, RunStatus, RunUpdate, utcnow
from tests.unit.conftest import ENGINE_BACKENDS, open_storage

pytestmark = pytest.mark.timeout(120)

running: set[str] = set()
peak: dict[str, int] = {}
entered: list[str] = []


@step(name="flow_work")
async def work(label: str, seconds: float) -> str:
    """Counts how many calls of each group run at once (the limit under test)."""
    group = label.split("-")[0]
    running.add(label)
    peak[group] = max(peak.get(group, 0), sum(r.split("-")[0] == group for r in running))
    try:
        await asyncio.sleep(seconds)
    finally:
        running.discard(label)
    return label


@workflow(name="flow_two_at_a_time", concurrency_limit=2)
async def two_at_a_time(label: str) -> str:
    entered.append(label)
    return await work(label, 0.15)


@workflow(name="flow_per_customer", concurrency_limit=1, concurrency_key=lambda c, i: c)
async def per_customer(customer: str, i: int) -> str:
    return await work(f"{customer}-{i}", 0.2)


@workflow(name="flow_sleeper", concurrency_limit=1)
async def sleeper(label: str, nap: float) -> str:
    await work(label, 0.05)
    await sleep(nap)
    return await work(label, 0.05)


@workflow(name="flow_rated", rate_limit="3/s")
async def rated(i: int) -> float:
    return time.time()


@pytest.fixture(params=ENGINE_BACKENDS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageBackend]:
    async with open_storage(request.param, tmp_path) as backend:
        configure(storage=backend, timer_poll_interval=0.05)
        running.clear()
        peak.clear()
        entered.clear()
        yield backend


async def finished(run_ids: list[str], limit: float = 30) -> list[pyworkflow.WorkflowRun]:
    return list(await asyncio.gather(*(wait_for_run(r, timeout=limit) for r in run_ids)))


async def test_at_most_n_runs_execute_at_once_and_the_rest_wait_in_start_order(storage):
    # Every waiter must be handed its slot: none may rely on the queue recheck.
    configure(queue_recheck_interval=3600)
    labels = [f"two-{i:02d}" for i in range(40)]
    run_ids = await asyncio.gather(*(start(two_at_a_time, label) for label in labels))
    queued = [await get_workflow_run(r) for r in run_ids]
    waiting = [r for r in queued if r.lease_owner == flow.QUEUED_LIMIT]
    assert len(waiting) >= 10 and all(r.status == RunStatus.PENDING for r in waiting)
    last = max(waiting, key=lambda r: r.created_at)
    found = await diagnose(storage, last.run_id, now=utcnow(), lease_ttl=30)
    [cause] = [c for c in found.causes if c.kind == "concurrency"]
    assert "workflow 'flow_two_at_a_time' (limit 2): held by " in cause.message
    assert "runs wait ahead of it" in cause.message and not found.stuck
    assert "; 0 runs wait" not in cause.message  # the newest waits behind the others
    runs = await finished(run_ids)
    assert [r.status for r in runs] == [RunStatus.COMPLETED] * 40
    assert peak["two"] == 2
    # The waiting runs are let in by start time, not by who reached the gate first.
    by_label = dict(zip(run_ids, labels, strict=True))
    waited = {by_label[r.run_id] for r in waiting}
    in_start_order = [by_label[r.run_id] for r in sorted(waiting, key=lambda r: r.created_at)]
    # (two slots may free at once: the two runs let in then enter in either order)
    order = [label for label in entered if label in waited]
    assert all(abs(order.index(label) - i) <= 1 for i, label in enumerate(in_start_order))
    gate = await storage.get_gate(flow.gate_key("flow_two_at_a_time", None))
    assert gate is not None and json.loads(gate.data)["holders"] == []


@workflow(name="flow_ten_at_a_time", concurrency_limit=10)
async def ten_at_a_time(label: str) -> str:
    return await work(label, 0.01)


async def test_a_crowd_of_short_runs_is_handed_every_slot_without_rechecks(storage):
    """Slots free while refused runs are still storing themselves as waiting: none of
    them may be dropped from the queue or miss its hand-off (each would then wait for
    the queue recheck, an hour here)."""
    configure(queue_recheck_interval=3600)
    run_ids = await asyncio.gather(*(start(ten_at_a_time, f"ten-{i}") for i in range(100)))
    runs = await finished(run_ids, limit=30)
    assert [r.status for r in runs] == [RunStatus.COMPLETED] * 100
    assert 2 <= peak["ten"] <= 10


async def test_each_concurrency_key_has_its_own_limit(storage):
    run_ids = [
        await asyncio.create_task(start(per_customer, customer, i))
        for customer in ("acme", "globex")
        for i in range(3)
    ]
    runs = await finished(run_ids)
    assert all(r.status == RunStatus.COMPLETED for r in runs)
    assert peak == {"acme": 1, "globex": 1}
    started = await pyworkflow.get_workflow_events(run_ids[0])
    assert started[0].data["concurrency_key"] == "acme"
    assert await storage.get_gate(flow.gate_key("flow_per_customer", "globex")) is not None


async def test_the_keys_of_two_customers_run_side_by_side(storage):
    began = time.monotonic()
    run_ids = await asyncio.gather(
        *(start(per_customer, customer, 0) for customer in ("a", "b", "c", "d"))
    )
    await finished(run_ids)
    assert time.monotonic() - began < 0.2 * 4  # not one after the other


async def test_a_sleeping_run_holds_no_slot(storage):
    first = await start(sleeper, "nap-1", 1.0)
    assert (await get_workflow_run(first)).status == RunStatus.SUSPENDED
    began = time.monotonic()
    second = await start(sleeper, "nap-2", 0.0)
    second_run = await wait_for_run(second, timeout=30)
    assert second_run.status == RunStatus.COMPLETED
    assert time.monotonic() - began < 0.9  # did not wait for the first one's sleep
    assert (await wait_for_run(first, timeout=30)).status == RunStatus.COMPLETED


async def test_a_crashed_holders_slot_frees_when_its_lease_expires(storage):
    # A holder whose process died: its gate entry and its lease stay behind.
    dead = await start(sleeper, "dead-1", 30.0)
    run = await get_workflow_run(dead)
    expires = utcnow() + timedelta(seconds=1)
    await storage.append_events(
        dead,
        [],
        expected_last_sequence=run.last_sequence,
        update=RunUpdate(
            {
                "status": RunStatus.RUNNING,
                "lease_owner": "otherhost:1:x",
                "lease_expires_at": expires,
            }
        ),
    )
    key = flow.gate_key("flow_sleeper", None)
    gate = await storage.get_gate(key)
    assert gate is not None
    await storage.save_gate(
        GateRecord(key, json.dumps({"limit": 1, "holders": [dead], "waiting": []})),
        expected_version=gate.version,
    )
    configure(queue_recheck_interval=0.5)
    waiter = await start(sleeper, "dead-2", 0.0)
    assert (await get_workflow_run(waiter)).lease_owner == flow.QUEUED_LIMIT
    done = await wait_for_run(waiter, timeout=30)
    assert done.status == RunStatus.COMPLETED
    assert done.completed_at is not None and done.completed_at >= expires


async def test_a_lost_hand_off_is_found_by_recovery(storage):
    configure(queue_recheck_interval=0.3)
    holder = await start(sleeper, "lost-1", 0.5)  # sleeping: no slot held
    gate_name = flow.gate_key("flow_sleeper", None)
    # Another run queued behind a holder that then vanished without handing it on.
    waiter = await start(sleeper, "lost-2", 0.0)
    gate = await storage.get_gate(gate_name)
    assert gate is not None
    data = json.loads(gate.data)
    await storage.save_gate(
        GateRecord(gate_name, json.dumps({**data, "holders": ["run_vanished"]})),
        expected_version=gate.version,
    )
    run = await get_workflow_run(waiter)
    if run.status != RunStatus.COMPLETED:  # (it may have gone in before the edit)
        assert (await wait_for_run(waiter, timeout=30)).status == RunStatus.COMPLETED
    assert (await wait_for_run(holder, timeout=30)).status == RunStatus.COMPLETED


async def test_cancelling_a_waiting_run_ends_it_without_waiting_for_a_slot(storage):
    holder = await start(sleeper, "hold-1", 0.0)
    # Keep the slot busy: a holder with a live lease that never finishes.
    run = await get_workflow_run(holder)
    await wait_for_run(holder, timeout=30)
    key = flow.gate_key("flow_sleeper", None)
    blocker = await start(sleeper, "hold-2", 30.0)
    blocker_run = await get_workflow_run(blocker)
    await storage.append_events(
        blocker,
        [],
        expected_last_sequence=blocker_run.last_sequence,
        update=RunUpdate(
            {
                "status": RunStatus.RUNNING,
                "lease_owner": "otherhost:1:y",
                "lease_expires_at": utcnow() + timedelta(minutes=5),
            }
        ),
    )
    gate = await storage.get_gate(key)
    assert gate is not None
    await storage.save_gate(
        GateRecord(key, json.dumps({"limit": 1, "holders": [blocker], "waiting": []})),
        expected_version=gate.version,
    )
    waiter = await start(sleeper, "hold-3", 0.0)
    assert (await get_workflow_run(waiter)).lease_owner == flow.QUEUED_LIMIT
    found = await diagnose(storage, waiter, now=utcnow(), lease_ttl=30)
    [cause] = [c for c in found.causes if c.kind == "concurrency"]
    assert "flow_sleeper" in cause.message and blocker in cause.message
    await cancel_workflow(waiter, reason="not needed")
    assert (await wait_for_run(waiter, timeout=10)).status == RunStatus.CANCELLED
    assert run.run_id == holder


async def test_starts_beyond_the_rate_are_delayed_not_refused(storage):
    began = time.time()
    run_ids = await asyncio.gather(*(start(rated, i) for i in range(7)))
    delayed = [await get_workflow_run(r) for r in run_ids]
    assert sum(r.lease_owner == flow.QUEUED_RATE for r in delayed) == 4
    last = max(delayed, key=lambda r: r.wake_at or r.created_at)
    found = await diagnose(storage, last.run_id, now=utcnow(), lease_ttl=30)
    [cause] = [c for c in found.causes if c.kind == "rate_limit"]
    assert "flow_rated" in cause.message and cause.until == last.wake_at and not found.stuck
    runs = await finished(run_ids)
    starts = sorted(r.result - began for r in runs)
    # 3 at once, 3 a second later, the 7th a second after those.
    assert starts[2] < 0.5 and 0.9 < starts[3] < 1.6 and 1.9 < starts[6] < 2.8
    for i in range(len(starts) - 3):  # never more than 3 in any second
        assert starts[i + 3] - starts[i] >= 0.95


async def test_runs_started_before_the_key_existed_get_it_from_their_arguments(storage):
    """Upgrade: a run stored by a version without flow control (no concurrency_key in
    its workflow.started) is counted under the key its arguments give."""
    from pyworkflow.core.workflow import definition_of
    from pyworkflow.engine.runs import RunRequest, build_run

    request = RunRequest(definition=definition_of(per_customer), args=("old", 1), kwargs={})
    run, started = build_run(request, owner=None, lease_ttl=0)
    del started.data["concurrency_key"]
    await storage.create_run(run, [started])
    await pyworkflow.resume(run.run_id)
    done = await wait_for_run(run.run_id, timeout=30)
    assert done.status == RunStatus.COMPLETED
    assert await storage.get_gate(flow.gate_key("flow_per_customer", "old")) is not None


async def test_an_unreadable_gate_frees_its_slots(storage):
    key = flow.gate_key("flow_two_at_a_time", None)
    assert await storage.save_gate(GateRecord(key, "not json"), expected_version=None)
    run = await wait_for_run(await start(two_at_a_time, "two-x"), timeout=30)
    assert run.status == RunStatus.COMPLETED


def test_bad_options_are_refused_when_the_workflow_is_defined():
    with pytest.raises(DefinitionError, match="concurrency_limit must be an int >= 1"):
        workflow(name="flow_bad_limit", concurrency_limit=0)(rated.__wrapped__)
    with pytest.raises(DefinitionError, match="concurrency_key needs a concurrency_limit"):
        workflow(name="flow_bad_key", concurrency_key=str)(rated.__wrapped__)
    with pytest.raises(DefinitionError, match="invalid rate_limit '100 per minute'"):
        workflow(name="flow_bad_rate", rate_limit="100 per minute")(rated.__wrapped__)
    assert parse_rate("100/m", "x").period == 60.0
    assert parse_rate("5/30s", "x") == parse_rate("5/30s", "x")
    assert parse_rate("2/h", "x").count == 2


async def test_a_failing_key_function_fails_the_start_with_its_reason(storage):
    @workflow(name="flow_bad_keyer", concurrency_limit=1, concurrency_key=lambda x: x["id"])
    async def bad_keyer(x: dict) -> None:
        return None

    with pytest.raises(DefinitionError, match="concurrency_key failed: KeyError"):
        await start(bad_keyer, {})
    assert await storage.list_runs(workflow_name="flow_bad_keyer") == []


def test_priorities_are_sent_only_when_turned_on_and_inverted_for_redis():
    from pyworkflow.celery.messages import broker_priority

    assert broker_priority(8, "redis://localhost:6379/0") is None  # off by default
    configure(celery_priorities=True)
    assert broker_priority(8, "redis://localhost:6379/0") == 1  # kombu serves 0 first
    assert broker_priority(None, "rediss://h:6380/0") == 9  # none: last, as on RabbitMQ
    assert broker_priority(8, "amqp://guest@localhost//") == 8
    assert broker_priority(None, "amqp://guest@localhost//") == 0
    with pytest.raises(DefinitionError, match="priority must be an int from 0 to 9"):
        workflow(name="flow_bad_priority", priority=10)(rated.__wrapped__)
    with pytest.raises(DefinitionError, match="priority must be an int from 0 to 9"):
        step(name="flow_bad_step_priority", priority=-1)(work.__wrapped__)


async def test_a_backend_without_gates_refuses_a_limited_start_before_storing_it():
    from pyworkflow.core.exceptions import ConfigurationError
    from pyworkflow.storage.memory import InMemoryStorageBackend as Memory

    class NoGates(Memory):
        get_gate = StorageBackend.get_gate  # type: ignore[assignment]
        save_gate = StorageBackend.save_gate  # type: ignore[assignment]

    backend = NoGates()
    with pytest.raises(ConfigurationError, match="does not support flow_control"):
        await start(two_at_a_time, "x", storage=backend)
    assert await backend.list_runs() == []
