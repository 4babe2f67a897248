"""A process without a run's workflow code: it records what an operator asks (a
cancellation) and leaves the run to a process with the code; its local runtime never
spins on, nor keeps the lease of, a due run it cannot resume.

The "other process" is simulated in one interpreter: the run is created while its
workflow is registered, then the workflow is taken out of the registry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from loguru import logger

import pyworkflow
from pyworkflow import (
    cancel_workflow,
    get_workflow_run,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.core import registry
from pyworkflow.core.exceptions import StorageUnavailableError
from pyworkflow.core.workflow import definition_of
from pyworkflow.runtime import get_runtime
from pyworkflow.runtime import local as local_runtime
from pyworkflow.runtime.local import LocalRuntime
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.schemas import RunStatus, utcnow


@workflow(name="ncu_napper")
async def napper(seconds: float) -> str:
    await sleep(seconds)
    return "woke"


@step(name="ncu_slow")
async def slow(n: int) -> int:
    await asyncio.sleep(0.2)
    return n


@workflow(name="ncu_worker")
async def busy() -> int:
    total = 0
    for n in range(50):
        total += await slow(n)
    return total


class CountingStorage(InMemoryStorageBackend):
    """Counts lease writes (a batch claim here leases one by one): what a spinning timer
    loop would multiply."""

    def __init__(self) -> None:
        super().__init__()
        self.lease_writes = 0

    async def acquire_lease(self, run_id: str, owner: str, *args: Any, **kwargs: Any) -> bool:
        self.lease_writes += 1
        return await super().acquire_lease(run_id, owner, *args, **kwargs)


@pytest.fixture
def records(pyworkflow_debug_logs: None) -> Iterator[list[Any]]:
    found: list[Any] = []
    sink = logger.add(lambda message: found.append(message.record), level="DEBUG")
    yield found
    logger.remove(sink)


def _without_code(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """This process no longer has the workflow (as an operator's script never had)."""
    monkeypatch.delitem(registry._workflows, name)


async def _sleeping_run(storage: InMemoryStorageBackend, seconds: float) -> str:
    run_id = await start(napper, seconds, storage=storage)
    await get_runtime("local").shutdown()  # the process that started it is gone
    return run_id


async def test_cancel_without_the_code_records_the_request_quietly(
    monkeypatch: pytest.MonkeyPatch, records: list[Any]
) -> None:
    storage = InMemoryStorageBackend()
    run_id = await _sleeping_run(storage, 3600)
    _without_code(monkeypatch, "ncu_napper")
    records.clear()

    assert await cancel_workflow(run_id, "not needed", storage=storage)

    run = await get_workflow_run(run_id, storage=storage)
    assert run is not None and run.status == "suspended"
    assert run.cancel_requested_at is not None and run.cancel_reason == "not needed"
    assert [r["level"].name for r in records] == ["DEBUG"]  # one quiet line, no traceback
    services = LocalRuntime.default()._services.values()
    assert all(s.storage is not storage for s in services)  # nothing started to serve it here


async def test_the_serving_process_acts_on_it_within_its_poll_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pyworkflow.configure(timer_poll_interval=0.2)
    storage = InMemoryStorageBackend()
    run_id = await _sleeping_run(storage, 3600)
    serving = asyncio.ensure_future(LocalRuntime.default().serve(storage))
    await asyncio.sleep(0.3)  # past its start-up recovery pass
    await storage.request_cancellation(run_id, "from elsewhere", utcnow())  # as another process
    try:
        run = await wait_for_run(run_id, storage=storage, timeout=0.6)
    finally:
        serving.cancel()
    assert run.status == "cancelled" and run.error == "CancellationError: from elsewhere"


async def test_a_run_executing_here_sees_a_request_from_elsewhere_within_a_poll() -> None:
    """The heartbeat passes requests on only every lease_ttl / 3 (10 s here); the timer
    loop's check reaches a run between two of its steps within a poll interval."""
    pyworkflow.configure(timer_poll_interval=0.2)
    storage = InMemoryStorageBackend()
    task = asyncio.ensure_future(start(busy, storage=storage))
    await asyncio.sleep(0.3)  # a step or two in
    (run,) = await storage.list_runs(workflow_name="ncu_worker")
    await storage.request_cancellation(run.run_id, "from elsewhere", utcnow())

    run_id = await asyncio.wait_for(task, 2.0)
    run = await get_workflow_run(run_id, storage=storage)
    assert run is not None and run.status == "cancelled"


async def test_timer_loop_leaves_a_due_run_of_missing_code_alone(
    monkeypatch: pytest.MonkeyPatch, records: list[Any]
) -> None:
    pyworkflow.configure(timer_poll_interval=0.1)
    storage = CountingStorage()
    run_id = await _sleeping_run(storage, 0.05)
    _without_code(monkeypatch, "ncu_napper")
    await asyncio.sleep(0.1)  # due now
    records.clear()

    serving = asyncio.ensure_future(LocalRuntime.default().serve(storage))
    await asyncio.sleep(1.5)
    run = await get_workflow_run(run_id, storage=storage)
    assert run is not None and run.status == "suspended"
    assert run.lease_owner is None  # released at once: a process with the code takes it
    # Backoff (at least a poll interval, doubling): a few tries, not one per pass.
    assert 1 <= storage.lease_writes <= 6, storage.lease_writes
    about = [r for r in records if run_id in r["message"]]
    assert [r["level"].name for r in about] == ["INFO"]  # one line per run, not per try
    assert "is due but 'ncu_napper' is not registered here" in about[0]["message"]

    # The code arrives (a deploy, an import): the next try after the backoff resumes it.
    monkeypatch.setitem(registry._workflows, "ncu_napper", definition_of(napper))
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    serving.cancel()
    assert (run.status, run.result) == ("completed", "woke")


async def test_timer_loop_still_serves_its_own_runs_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A due run left to others sits first in the due order: runs this process can
    resume, due later, are still reached and woken on time."""
    pyworkflow.configure(timer_poll_interval=0.5)
    storage = InMemoryStorageBackend()
    orphan = await _sleeping_run(storage, 0.01)
    _without_code(monkeypatch, "ncu_napper")
    await asyncio.sleep(0.05)

    @workflow(name="ncu_own")
    async def own() -> str:
        await sleep(0.3)
        return "mine"

    serving = asyncio.ensure_future(LocalRuntime.default().serve(storage))
    await asyncio.sleep(0.2)  # the orphan has been seen and left alone
    begun = asyncio.get_running_loop().time()
    run_id = await start(own, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    serving.cancel()
    assert run.result == "mine"
    assert asyncio.get_running_loop().time() - begun < 0.6  # woken on time, not a poll late
    still = await get_workflow_run(orphan, storage=storage)
    assert still is not None and still.status == "suspended" and still.lease_owner is None


class CancelSwallowingStorage(InMemoryStorageBackend):
    """A driver that, cancelled mid-call, raises its own connection error instead."""

    async def next_wake_time(self) -> datetime | None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise StorageUnavailableError("connection lost: Cancelled during execution") from None
        return None


async def test_a_stopped_service_stops_even_if_storage_swallows_the_cancellation() -> None:
    """Seen at a test's teardown on MySQL: the timer loop took the driver's error for an
    outage and retried forever, so stopping the service (and closing the loop) hung."""
    storage = CancelSwallowingStorage()
    serving = asyncio.ensure_future(LocalRuntime.default().serve(storage))
    await asyncio.sleep(0.1)  # the timer loop now waits in next_wake_time
    serving.cancel()
    await asyncio.wait_for(LocalRuntime.default().shutdown(), 2.0)


async def test_a_run_left_to_others_is_not_held_when_it_starts_waiting(
    monkeypatch: pytest.MonkeyPatch, records: list[Any]
) -> None:
    """First seen mid-execution (recovery found it), then waiting and due: the timer
    loop's batch claim takes it, and gives it back at once."""
    pyworkflow.configure(timer_poll_interval=0.1)
    monkeypatch.setattr(local_runtime, "backoff_delay", lambda attempt: 5.0)  # one try here
    storage = CountingStorage()
    run_id = await _sleeping_run(storage, 3600)
    _without_code(monkeypatch, "ncu_napper")
    stored = storage._runs[run_id]
    stored.status, stored.wake_at = RunStatus.RUNNING, None  # its executor died

    serving = asyncio.ensure_future(LocalRuntime.default().serve(storage))
    await asyncio.sleep(0.2)  # recovery tried it and left it to others
    stored.status, stored.wake_at = RunStatus.SUSPENDED, utcnow()  # another process moved it
    await asyncio.sleep(0.5)
    serving.cancel()

    run = await get_workflow_run(run_id, storage=storage)
    assert run is not None and run.lease_owner is None
    assert storage.lease_writes <= 1  # at most claimed once in a batch and given back
    lifecycle = "pyworkflow.observability.lifecycle"  # the run's own started/suspended lines
    about = [r for r in records if run_id in r["message"] and r["name"] != lifecycle]
    assert [r["level"].name for r in about] == ["INFO"]
    assert "needs resuming" in about[0]["message"]
