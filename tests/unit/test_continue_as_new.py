"""continue_as_new: a run ends ``continued_as_new`` and a fresh, linked run carries on."""

from __future__ import annotations

import asyncio

import pytest

from pyworkflow import (
    EventType,
    continue_as_new,
    get_workflow_chain,
    get_workflow_events,
    get_workflow_run,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.storage.memory import InMemoryStorageBackend


@step(name="can_work")
async def work(n: int) -> int:
    return n


@workflow(name="can_counter")
async def counter(n: int, stop: int) -> int:
    await work(n)
    if n < stop:
        continue_as_new(n + 1, stop)  # not awaited
    return n


@workflow(name="can_awaited")
async def awaited(n: int) -> str:
    if n == 0:
        await continue_as_new(n + 1)  # awaited form works too
    return f"done at {n}"


async def _last_of_chain(storage: InMemoryStorageBackend, run_id: str, length: int) -> list:
    async with asyncio.timeout(10):
        while True:
            chain = await get_workflow_chain(run_id, storage=storage)
            if len(chain) == length and chain[-1].status.is_terminal:
                return chain
            await asyncio.sleep(0.02)


async def test_chain_of_runs_is_linked_both_ways() -> None:
    storage = InMemoryStorageBackend()
    first = await start(counter, 0, 3, storage=storage)
    chain = await _last_of_chain(storage, first, 4)

    assert [r.status.value for r in chain] == ["continued_as_new"] * 3 + ["completed"]
    assert chain[-1].result == 3
    assert [r.input_args for r in chain] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    for older, newer in zip(chain, chain[1:], strict=False):
        assert older.continued_to_run_id == newer.run_id
        assert newer.continued_from_run_id == older.run_id
    # Any member finds the whole chain.
    middle = await get_workflow_chain(chain[2].run_id, storage=storage)
    assert [r.run_id for r in middle] == [r.run_id for r in chain]
    # Each run keeps a short history of its own.
    events = await get_workflow_events(first, storage=storage)
    assert events[-1].type == EventType.WORKFLOW_CONTINUED_AS_NEW
    assert events[-1].data["new_run_id"] == chain[1].run_id
    assert len(events) == 4  # started, step.started, step.completed, continued_as_new


async def test_awaited_continue_as_new() -> None:
    storage = InMemoryStorageBackend()
    first = await start(awaited, 0, storage=storage)
    chain = await _last_of_chain(storage, first, 2)
    assert chain[-1].result == "done at 1"


def test_outside_a_workflow_it_raises() -> None:
    with pytest.raises(RuntimeError, match="inside a workflow"):
        continue_as_new(1)


@workflow(name="can_after_sleep")
async def after_sleep(n: int) -> int:
    await sleep(0.05)
    if n == 0:
        continue_as_new(1)
    return n


async def test_continue_after_a_durable_sleep_replays_once() -> None:
    storage = InMemoryStorageBackend()
    first = await start(after_sleep, 0, storage=storage)
    assert (await get_workflow_run(first, storage=storage)).status == "suspended"
    chain = await _last_of_chain(storage, first, 2)
    assert chain[-1].result == 1
    # The continuation id is derived from its origin: resuming the first run again
    # (as a crash-recovery would) cannot create a second continuation.
    assert chain[1].run_id.startswith("run_")
    runs = await storage.list_runs(workflow_name="can_after_sleep")
    assert len(runs) == 2


async def test_continuation_started_by_a_dead_process_is_picked_up() -> None:
    """The process that continued a run died before starting the new run: the next
    process's runtime starts it (a fresh pending run, not a recovery)."""
    storage = InMemoryStorageBackend()
    from pyworkflow.core.workflow import definition_of
    from pyworkflow.engine.runs import RunRequest, build_run

    run, started = build_run(
        RunRequest(definition_of(counter), (5, 5), {}), owner=None, lease_ttl=0
    )
    await storage.create_run(run, [started])
    finished = await wait_for_run(run.run_id, storage=storage, timeout=5)
    assert finished.status == "completed" and finished.result == 5
    assert finished.recovery_attempts == 0


@workflow(name="can_transient", durable=False)
async def transient_loop(n: int) -> int:
    if n < 3:
        continue_as_new(n + 1)
    return n


async def test_transient_runs_continue_in_memory() -> None:
    run_id = await start(transient_loop, 0)
    run = await get_workflow_run(run_id)
    assert run is not None and run.status == "completed" and run.result == 3
