"""Queries: ``query_workflow`` answers from a run's replayed state (during a sleep, while
it waits for signals, after it ended) without running a step or writing anything; bad
names, unknown queries and failing handlers get clear errors. Memory and SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pyworkflow import (
    QueryFailedError,
    QueryNotFoundError,
    RunNotFoundError,
    WorkflowNotFoundError,
    get_workflow_events,
    query_workflow,
    send_signal,
    set_query_handler,
    sleep,
    start,
    step,
    wait_for_run,
    wait_for_signal,
    workflow,
)
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.config import storage_from_url
from pyworkflow.storage.memory import InMemoryStorageBackend

calls: list[str] = []


@step(name="qy_pack")
async def pack(item: str) -> str:
    calls.append(item)
    return item.upper()


@workflow(name="qy_order")
async def order(items: list[str]) -> list[str]:
    packed: list[str] = []
    stage = {"now": "packing"}
    set_query_handler("progress", lambda: {"stage": stage["now"], "packed": list(packed)})
    set_query_handler("has", lambda item: item.upper() in packed)
    for item in items[:2]:
        packed.append(await pack(item))
    stage["now"] = "waiting for the courier"
    await sleep("1h")
    stage["now"] = "shipped"
    return packed


@workflow(name="qy_cart")
async def cart() -> list[str]:
    items: list[str] = []

    async def count() -> int:
        return len(items)

    set_query_handler("items", lambda: list(items))
    set_query_handler("count", count)
    set_query_handler("broken", lambda: 1 / 0)
    set_query_handler("opaque", lambda: object())
    while (event := await wait_for_signal("qy_cart")) != "checkout":
        items.append(event)
    return items


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageBackend]:
    backend: StorageBackend = (
        InMemoryStorageBackend()
        if request.param == "memory"
        else storage_from_url(f"sqlite:///{tmp_path / 'q.db'}")
    )
    await backend.connect()
    yield backend
    await backend.close()


async def test_a_query_during_a_sleep_runs_no_step_and_writes_nothing(
    storage: StorageBackend,
) -> None:
    calls.clear()
    run_id = await start(order, ["mug", "tea", "pot"], storage=storage)
    before = await get_workflow_events(run_id, storage=storage)
    answer = await query_workflow(run_id, "progress", storage=storage)
    assert answer == {"stage": "waiting for the courier", "packed": ["MUG", "TEA"]}
    assert await query_workflow(run_id, "has", "tea", storage=storage) is True
    assert await query_workflow(run_id, "has", "pot", storage=storage) is False
    assert calls == ["mug", "tea"]  # replayed, not run again
    assert await get_workflow_events(run_id, storage=storage) == before


async def test_queries_follow_signals_and_outlive_the_run(storage: StorageBackend) -> None:
    run_id = await start(cart, storage=storage)
    assert await query_workflow(run_id, "items", storage=storage) == []
    await send_signal(run_id, "qy_cart", "apple", storage=storage)
    await send_signal(run_id, "qy_cart", "pear", storage=storage)
    answer: Any = None
    for _ in range(100):  # the run takes the signals in the background
        answer = await query_workflow(run_id, "items", storage=storage)
        if answer == ["apple", "pear"]:
            break
    assert answer == ["apple", "pear"]
    assert await query_workflow(run_id, "count", storage=storage) == 2  # an async handler
    await send_signal(run_id, "qy_cart", "checkout", storage=storage)
    await wait_for_run(run_id, storage=storage, timeout=10)
    assert await query_workflow(run_id, "items", storage=storage) == ["apple", "pear"]


async def test_bad_queries_get_clear_errors(storage: StorageBackend) -> None:
    run_id = await start(cart, storage=storage)
    with pytest.raises(QueryNotFoundError, match=r"has no query 'nope' \(it has: broken, count"):
        await query_workflow(run_id, "nope", storage=storage)
    with pytest.raises(QueryFailedError, match="raised ZeroDivisionError"):
        await query_workflow(run_id, "broken", storage=storage)
    with pytest.raises(QueryFailedError, match="not JSON"):
        await query_workflow(run_id, "opaque", storage=storage)
    with pytest.raises(RunNotFoundError):
        await query_workflow("run_nope", "items", storage=storage)
    with pytest.raises(ValueError, match="query name"):
        await query_workflow(run_id, "bad name", storage=storage)


def test_set_query_handler_outside_a_workflow_is_refused() -> None:
    with pytest.raises(RuntimeError, match="only be called in workflow code"):
        set_query_handler("x", lambda: 1)


async def test_without_the_code_and_without_workers_nobody_can_answer(
    storage: StorageBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local runtime has no workers to ask: a process without the workflow's module
    is told to import it."""
    import pyworkflow.queries

    run_id = await start(cart, storage=storage)
    monkeypatch.setattr(pyworkflow.queries, "find_workflow", lambda name: None)
    monkeypatch.setattr(pyworkflow.queries, "discover_workflows", lambda: None)
    with pytest.raises(WorkflowNotFoundError, match="import its module here"):
        await query_workflow(run_id, "items", storage=storage)
