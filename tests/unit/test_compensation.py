"""Compensation (sagas): ``@step(compensate=undo)``. When a run fails or is cancelled the
undo of each completed call runs durably, newest first, with the call's result and
arguments, retried with the step's policy, shielded from a second cancel, recorded in the
history; the run still ends failed / cancelled. Across crashes (a crash after every
write) each compensation is recorded once; continue_as_new starts a fresh scope. On the
in-memory backend, SQLite on disk and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pyworkflow import (
    ChildWorkflowFailedError,
    FatalError,
    RetryableError,
    cancel_workflow,
    continue_as_new,
    get_workflow_events,
    sleep,
    start,
    start_child_workflow,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.storage.base import StorageBackend
from pyworkflow.testing import check_crash_points
from tests.unit.conftest import ENGINE_BACKENDS, open_storage

undone: list[str] = []
flaky_refunds: dict[str, int] = {}


async def release(result: str, item: str) -> None:
    undone.append(f"release {item} ({result})")


@step(name="saga_refund", max_retries=2, retry_delay=0.05)
async def refund(result: str, order: str, amount: int) -> None:
    """A compensation that is a step of its own (its first attempt fails for 'flaky')."""
    flaky_refunds[order] = flaky_refunds.get(order, 0) + 1
    if order == "flaky" and flaky_refunds[order] == 1:
        raise RetryableError("the bank is busy")
    undone.append(f"refund {amount} for {order} ({result})")


@step(name="saga_reserve", compensate=release)
async def reserve(item: str) -> str:
    return f"hold-{item}"


@step(name="saga_charge", compensate=refund)
async def charge(order: str, amount: int) -> str:
    return f"charge-{order}"


@step(name="saga_ship", max_retries=0)
async def ship(order: str) -> str:
    raise FatalError(f"no courier for {order}")


@workflow(name="saga_saga")
async def saga(order: str) -> str:
    await asyncio.gather(reserve("lamp"), reserve("desk"))
    await charge(order, 40)
    return await ship(order)


@workflow(name="saga_waiting_saga")
async def waiting_saga(order: str) -> str:
    await reserve("chair")
    await charge(order, 15)
    await sleep("1h")  # cancelled here
    return "never"


@workflow(name="saga_parent")
async def parent(order: str) -> str:
    try:
        return await start_child_workflow(saga, order)
    except ChildWorkflowFailedError as exc:
        return f"child failed: {str(exc).split(': ', 1)[1]}"


@workflow(name="saga_chain")
async def chain(round_: int) -> str:
    await reserve(f"round-{round_}")
    if round_ == 1:
        await continue_as_new(2)
    raise FatalError("round 2 gives up")


@pytest.fixture(params=ENGINE_BACKENDS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageBackend]:
    async with open_storage(request.param, tmp_path) as backend:
        undone.clear()
        flaky_refunds.clear()
        yield backend


def step_ids(events: list[Any], kind: str) -> list[str]:
    return [e.data["step_id"] for e in events if e.type.value == kind]


async def test_a_failed_saga_undoes_its_completed_steps_newest_first(
    storage: StorageBackend,
) -> None:
    run_id = await start(saga, "o-1", storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=10)
    assert run.status == "failed" and "no courier for o-1" in (run.error or "")
    # reserve(desk) was started after reserve(lamp) (the gather's order), so it is undone first.
    assert undone == [
        "refund 40 for o-1 (charge-o-1)",
        "release desk (hold-desk)",
        "release lamp (hold-lamp)",
    ]
    events = await get_workflow_events(run_id, storage=storage)
    assert step_ids(events, "step.completed")[-3:] == [
        "step:saga_refund#1",
        "step:saga_reserve.compensate#1",
        "step:saga_reserve.compensate#2",
    ]
    assert events[-1].type.value == "workflow.failed"


async def test_a_compensation_is_retried_with_its_policy(storage: StorageBackend) -> None:
    run_id = await start(saga, "flaky", storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=10)
    assert run.status == "failed"
    assert flaky_refunds["flaky"] == 2 and undone[0] == "refund 40 for flaky (charge-flaky)"
    events = await get_workflow_events(run_id, storage=storage)
    assert "step:saga_refund#1" in [
        e.data["step_id"] for e in events if e.type.value == "step.retrying"
    ]


async def test_a_cancelled_saga_is_undone_and_ends_cancelled(storage: StorageBackend) -> None:
    run_id = await start(waiting_saga, "o-2", storage=storage)
    assert await cancel_workflow(run_id, "customer left", storage=storage)
    await cancel_workflow(run_id, "again", storage=storage)  # a second cancel changes nothing
    run = await wait_for_run(run_id, storage=storage, timeout=10)
    assert run.status == "cancelled"
    assert undone == ["refund 15 for o-2 (charge-o-2)", "release chair (hold-chair)"]


async def test_continue_as_new_starts_a_fresh_scope(storage: StorageBackend) -> None:
    run_id = await start(chain, 1, storage=storage)
    first = await wait_for_run(run_id, storage=storage, timeout=10)
    assert first.status == "continued_as_new" and first.continued_to_run_id
    second = await wait_for_run(first.continued_to_run_id, storage=storage, timeout=10)
    assert second.status == "failed"
    assert undone == ["release round-2 (hold-round-2)"]  # round 1's reservation is kept


async def test_each_compensation_is_recorded_once_across_crashes() -> None:
    """A crash after every write of the saga (run as a child, so the parent completes):
    every crash point recovers to the same result, with each step's completion (the undo
    steps included) recorded once. A body that ran just before a crash runs again after
    it (at least once, as for any step); uninterrupted, each runs exactly once."""
    expected = [
        "refund 40 for o-3 (charge-o-3)",
        "release desk (hold-desk)",
        "release lamp (hold-lamp)",
    ]

    def reset() -> None:
        undone.clear()

    def check(point: object) -> None:
        if point is None:
            assert undone == expected  # newest first, once each
        else:
            assert set(undone) == set(expected), (point, undone)

    report = await check_crash_points(parent, "o-3", reset=reset, check=check)
    assert report.result == "child failed: FatalError: no courier for o-3"
    assert len(report.points) == 12  # every write but the last, of both runs
    assert report.executions["saga_reserve.compensate"] == 2
    assert report.executions["saga_refund"] == 1


def test_bad_compensate_options_are_refused_at_definition() -> None:
    from pyworkflow import DefinitionError

    def not_async(result: str) -> None:
        return None

    with pytest.raises(DefinitionError, match="compensate= needs an 'async def' function"):

        @step(name="saga_bad", compensate=not_async)  # type: ignore[arg-type]
        async def bad() -> None:
            return None
