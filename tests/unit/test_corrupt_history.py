"""A run whose stored history cannot be replayed is parked, not failed and not retried in
a loop: one ERROR line, its error field names the run and the sequence, and resume()
tries again once the history is repaired."""

from __future__ import annotations

import asyncio

from loguru import logger

from pyworkflow import (
    HistoryCorruptedError,
    get_workflow_run,
    resume,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.engine import history_cache
from pyworkflow.engine.runner import is_parked
from pyworkflow.storage.memory import InMemoryStorageBackend

ran: list[int] = []


@step(name="ch_count")
async def count(x: int) -> int:
    ran.append(x)
    return x


@workflow(name="ch_flow")
async def flow() -> int:
    a = await count(1)
    b = await count(2)
    await sleep(0.1)
    return a + b + await count(3)


async def _errors_while(seconds: float) -> list[str]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="ERROR")
    try:
        await asyncio.sleep(seconds)
    finally:
        logger.remove(sink)
    return lines


async def test_a_gap_parks_the_run_until_it_is_repaired() -> None:
    ran.clear()
    storage = InMemoryStorageBackend()
    run_id = await start(flow, storage=storage)
    history_cache.forget(storage, run_id)  # as in another process, or after a restart
    events = storage._events[run_id]
    removed = events.pop(3)  # the first step.completed: replay would run it again
    errors = await _errors_while(0.5)  # the sleep comes due: the runtime tries once
    run = await get_workflow_run(run_id, storage=storage)
    assert is_parked(run) and run.status == "suspended" and run.wake_at is None
    assert f"run {run_id!r}" in run.error and "sequence 4" in run.error
    assert len([line for line in errors if "parked" in line]) == 1 == len(errors)
    assert ran == [1, 2]  # nothing ran again on a broken history
    events.insert(3, removed)  # repaired by an operator
    await resume(run_id, storage=storage)
    done = await wait_for_run(run_id, timeout=5, storage=storage)
    assert (done.status, done.result, done.error) == ("completed", 6, None)
    assert ran == [1, 2, 3]


async def test_an_event_that_cannot_be_replayed_names_its_sequence() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(flow, storage=storage)
    history_cache.forget(storage, run_id)
    storage._events[run_id][1].data.pop("step_id")  # the first step.started
    await asyncio.sleep(0.3)
    run = await get_workflow_run(run_id, storage=storage)
    assert is_parked(run)
    assert "sequence 2" in run.error and "step.started" in run.error
    assert HistoryCorruptedError.__name__ in run.error


async def test_an_event_type_from_a_newer_version_parks_the_run_on_sqlite(tmp_path) -> None:
    """The shape a rolling deploy produces: a newer version wrote an event type this one
    does not know. The run is parked (not failed, not retried in a loop)."""
    from pyworkflow.storage.sqlite import SQLiteStorageBackend
    from tests.storage.backend_sqlite import corrupt_event

    storage = SQLiteStorageBackend(tmp_path / "wf.db")
    run_id = await start(flow, storage=storage)
    history_cache.forget(storage, run_id)
    await corrupt_event(storage, run_id, 3, "type")
    errors = await _errors_while(0.5)
    run = await get_workflow_run(run_id, storage=storage)
    assert is_parked(run) and "sequence 3" in run.error
    assert len(errors) == 1
