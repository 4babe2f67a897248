"""Replay after a suspension: recorded steps are not re-run, changed code is detected
(``NonDeterminismError``), and event limits stop runaway histories."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from loguru import logger

from pyworkflow import (
    configure,
    get_workflow_events,
    get_workflow_run,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.storage.memory import InMemoryStorageBackend

calls: dict[str, int] = {}
# Which version of the "deployed" workflow code runs: tests flip this between the first
# execution and the replay, as a deploy of changed code would.
code_version: dict[str, str] = {}


def _count(name: str) -> None:
    calls[name] = calls.get(name, 0) + 1


@pytest.fixture(autouse=True)
def _reset_state() -> Iterator[None]:
    calls.clear()
    code_version.clear()
    yield
    code_version.clear()


@step(name="rp_fetch")
async def fetch(x: int) -> int:
    _count("rp_fetch")
    return x * 2


@step(name="rp_store")
async def store(x: int) -> str:
    _count("rp_store")
    return f"stored {x}"


@workflow(name="rp_fetch_sleep_store")
async def fetch_sleep_store(x: int) -> dict[str, Any]:
    doubled = await fetch(x)
    await sleep(0.1)
    second = await fetch(doubled)  # same step again after the sleep: a new operation
    return {"doubled": doubled, "second": second, "stored": await store(second)}


async def test_completed_steps_are_not_reexecuted_after_sleep() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(fetch_sleep_store, 5, storage=storage)
    suspended = await get_workflow_run(run_id, storage=storage)
    assert suspended is not None
    assert suspended.status == "suspended"
    assert calls == {"rp_fetch": 1}

    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == "completed", run.error
    assert run.result == {"doubled": 10, "second": 20, "stored": "stored 20"}
    assert calls == {"rp_fetch": 2, "rp_store": 1}

    events = await get_workflow_events(run_id, storage=storage)
    types = [e.type.value for e in events]
    assert types.count("workflow.resumed") == 1
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    started = [e.data["step_id"] for e in events if e.type == "step.started"]
    assert started == ["step:rp_fetch#1", "step:rp_fetch#2", "step:rp_store#1"]


# -- non-determinism ----------------------------------------------------------------------


@step(name="rp_charge_v1")
async def charge_v1() -> str:
    _count("rp_charge_v1")
    return "v1"


@step(name="rp_charge_v2")
async def charge_v2() -> str:
    _count("rp_charge_v2")
    return "v2"


@workflow(name="rp_changing_code")
async def changing_code() -> str:
    if code_version.get("charge") == "v2":
        receipt = await charge_v2()
    else:
        receipt = await charge_v1()
    await sleep(0.1)
    return receipt


async def test_changed_step_at_recorded_position_fails_with_non_determinism() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(changing_code, storage=storage)
    code_version["charge"] = "v2"  # "deploy" new code while the run sleeps

    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == "failed"
    assert run.error is not None
    assert "NonDeterminismError" in run.error
    assert "step:rp_charge_v1#1" in run.error  # what the history recorded
    assert "step:rp_charge_v2#1" in run.error  # what the code asks for now
    assert "rp_charge_v2" not in calls  # the new step never ran
    assert calls == {"rp_charge_v1": 1}

    events = await get_workflow_events(run_id, storage=storage)
    assert events[-1].type == "workflow.failed"
    assert events[-1].data["error_type"].endswith("NonDeterminismError")


@step(name="rp_prepare")
async def prepare() -> str:
    _count("rp_prepare")
    return "prepared"


@workflow(name="rp_dropping_sleep")
async def dropping_sleep() -> str:
    result = await prepare()
    if code_version.get("sleep") != "removed":
        await sleep(0.1)
    return result


async def test_removed_trailing_operation_fails_with_non_determinism() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(dropping_sleep, storage=storage)
    first = await get_workflow_run(run_id, storage=storage)
    assert first is not None
    assert first.status == "suspended"
    code_version["sleep"] = "removed"  # the new code no longer sleeps

    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == "failed"
    assert run.error is not None
    assert "NonDeterminismError" in run.error
    assert "sleep:sleep#1" in run.error  # the recorded operation the code no longer reaches
    assert calls == {"rp_prepare": 1}


async def test_unchanged_code_replays_without_non_determinism() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(changing_code, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == "completed", run.error
    assert run.result == "v1"
    assert calls == {"rp_charge_v1": 1}


# -- event limits -------------------------------------------------------------------------


@step(name="rp_tiny")
async def tiny(i: int) -> int:
    _count("rp_tiny")
    return i


@workflow(name="rp_twenty_steps")
async def twenty_steps() -> int:
    total = 0
    for i in range(20):
        total += await tiny(i)
    return total


async def test_event_hard_limit_fails_run_and_soft_limit_warns() -> None:
    configure(event_soft_limit=5, event_hard_limit=12, event_warning_interval=2)
    messages: list[Any] = []
    sink_id = logger.add(messages.append, level="WARNING", format="{message}")
    try:
        storage = InMemoryStorageBackend()
        run_id = await start(twenty_steps, storage=storage)
        run = await wait_for_run(run_id, storage=storage, timeout=5)
    finally:
        logger.remove(sink_id)

    assert run.status == "failed"
    assert run.error is not None
    assert "EventLimitExceededError" in run.error
    assert calls["rp_tiny"] < 20  # stopped early

    events = await get_workflow_events(run_id, storage=storage)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert len(events) <= 13  # the hard limit, plus the workflow.failed that reports it
    assert events[-1].type == "workflow.failed"

    warnings = [m for m in messages if m.record["level"].name == "WARNING"]
    limit_warnings = [m for m in warnings if "soft limit" in m.record["message"]]
    assert limit_warnings, [m.record["message"] for m in warnings]
    assert run_id in limit_warnings[0].record["message"]


async def test_history_under_the_soft_limit_does_not_warn() -> None:
    configure(event_soft_limit=100, event_hard_limit=200)
    messages: list[Any] = []
    sink_id = logger.add(messages.append, level="WARNING", format="{message}")
    try:
        storage = InMemoryStorageBackend()
        run_id = await start(twenty_steps, storage=storage)
        run = await wait_for_run(run_id, storage=storage, timeout=5)
    finally:
        logger.remove(sink_id)
    assert run.status == "completed"
    assert run.result == sum(range(20))
    assert not [m for m in messages if "soft limit" in m.record["message"]]
