"""Runs that suspended in this process resume from the cached event log; a cache that
is behind storage (another process advanced the run) is completed from storage."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pyworkflow import sleep, step, workflow
from pyworkflow.core.workflow import definition_of
from pyworkflow.engine import history_cache
from pyworkflow.engine.replay import History
from pyworkflow.engine.runner import execute_new, new_owner_id, resume_run
from pyworkflow.engine.runs import RunRequest, build_run
from pyworkflow.storage.schemas import EventType
from pyworkflow.storage.sqlite import SQLiteStorageBackend
from pyworkflow.testing.conformance import make_events

calls: list[int] = []


@step()
async def note(i: int) -> int:
    calls.append(i)
    return i


@workflow()
async def two_naps() -> int:
    a = await note(1)
    await sleep(0.2)
    b = await note(2)
    await sleep(0.2)
    return a + b + await note(3)


async def test_cached_log_matches_storage_and_a_stale_one_is_completed(tmp_path: Path) -> None:
    calls.clear()
    here = SQLiteStorageBackend(tmp_path / "wf.db")
    other = SQLiteStorageBackend(tmp_path / "wf.db")  # stands for another process
    request = RunRequest(definition=definition_of(two_naps), args=(), kwargs={})
    run, started = build_run(request, owner=new_owner_id(), lease_ttl=30)
    await here.create_run(run, [started])
    await execute_new(here, run, request, log=[started])

    cached = history_cache.take(here, run.run_id)
    stored = await here.get_events(run.run_id)
    assert cached is not None
    assert [(e.sequence, e.type, e.data) for e in cached.events] == [
        (e.sequence, e.type, e.data) for e in stored
    ]
    # The fold made while the run waits is the one a resume would make from storage.
    assert cached.history == History.from_events(run.run_id, stored)
    history_cache.remember(here, run.run_id, cached.events)

    await asyncio.sleep(0.25)
    await resume_run(other, run.run_id, owner=new_owner_id(), lease_ttl=30)  # second nap
    await asyncio.sleep(0.25)
    await resume_run(here, run.run_id, owner=new_owner_id(), lease_ttl=30)  # stale cache

    final = await here.get_run(run.run_id)
    assert final is not None and final.status.value == "completed" and final.result == 6
    events = await here.get_events(run.run_id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert calls == [1, 2, 3]  # no step re-ran: the cached part was not replayed wrongly
    await here.close()
    await other.close()


async def test_the_cache_is_bounded(tmp_path: Path) -> None:
    storage = SQLiteStorageBackend(tmp_path / "wf.db")
    events = make_events("a", 1, history_cache.MAX_EVENTS // 2 + 1, EventType.LOG_INFO)
    history_cache.remember(storage, "a", events)
    history_cache.remember(storage, "b", events)
    assert history_cache.take(storage, "a") is None  # evicted: the oldest goes first
    assert history_cache.take(storage, "b") is not None
