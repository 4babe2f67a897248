"""Storage faults around flow control are never a workflow's failure: whichever write of
three runs sharing a concurrency limit of 1 fails (a gate's compare-and-set, or a run's
append; lost, or landed with the answer lost), every run completes with its step
recorded once, and no two ever run at once, on SQLite and PostgreSQL. Faults are injected around the
real backend (:class:`StorageFaults`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pyworkflow import (
    EventType,
    configure,
    get_workflow_events,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.storage.base import StorageBackend
from pyworkflow.testing.faults import StorageFaults
from tests.storage import backend_postgres, backend_sqlite

pytestmark = pytest.mark.timeout(300)

calls: list[str] = []
running: set[str] = set()
overlaps: list[set[str]] = []


@step(name="ffl_work")
async def work(label: str) -> str:
    calls.append(label)
    running.add(label)
    if len(running) > 1:
        overlaps.append(set(running))
    await asyncio.sleep(0.02)
    running.discard(label)
    return label


@workflow(name="ffl_one_at_a_time", concurrency_limit=1)
async def one_at_a_time(label: str) -> str:
    return await work(label)


BACKENDS = {"sqlite": backend_sqlite, "postgres": backend_postgres}


@pytest.fixture(params=list(BACKENDS))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    async with BACKENDS[request.param].open_backend(tmp_path) as (backend, _):
        # A lost hand-off is found again by the queue recheck: keep it short here.
        configure(storage=backend, queue_recheck_interval=0.3, timer_poll_interval=0.05)
        yield backend


async def _three(storage: StorageBackend, round_: int) -> None:
    calls.clear()
    overlaps.clear()
    labels = [f"r{round_}-{i}" for i in range(3)]
    run_ids = await asyncio.gather(*(start(one_at_a_time, label) for label in labels))
    runs = [await wait_for_run(r, timeout=60) for r in run_ids]
    assert [(r.status, r.result) for r in runs] == [("completed", x) for x in labels]
    assert set(calls) == set(labels)  # (a lost completion runs its step again)
    for run_id in run_ids:  # ... but it is recorded once
        events = await get_workflow_events(run_id)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert sum(e.type == EventType.STEP_COMPLETED for e in events) == 1
    assert overlaps == []  # never two at once, whatever failed


# Each write of the engine that can fail: its counter and fault option on StorageFaults.
WRITES = {"gate save": ("gate_saves", "fail_gate_saves"), "append": ("appends", "fail_appends")}


@pytest.mark.parametrize("write", list(WRITES))
@pytest.mark.parametrize("landed", [False, True], ids=["lost", "landed"])
async def test_any_failed_write_leaves_the_limit_and_every_run_whole(
    storage: StorageBackend, landed: bool, write: str
) -> None:
    counted, option = WRITES[write]
    with StorageFaults(storage) as counter:
        await _three(storage, 0)
    total = getattr(counter, counted)
    if write == "gate save":
        assert total >= 6  # three runs in and out, at least
    for n in range(1, total + 1):
        with StorageFaults(storage, **{option: {n}}, landed=landed) as faults:
            await _three(storage, n)
        # (how many writes a round makes depends on who meets whom at the gate)
        assert faults.injected == 1 or getattr(faults, counted) < n, n
