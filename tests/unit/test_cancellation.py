"""Cancellation: requested from outside, seen at the next durable operation, cleanup
under shield(), runs end ``cancelled``; parent close policies reach children."""

from __future__ import annotations

import asyncio

from pyworkflow import (
    CancellationError,
    EventType,
    cancel_workflow,
    get_workflow_events,
    get_workflow_run,
    shield,
    sleep,
    start,
    start_child_workflow,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.storage.memory import InMemoryStorageBackend

calls: list[str] = []


@step(name="cx_work")
async def work(label: str) -> str:
    calls.append(label)
    return label


@step(name="cx_slow")
async def slow(label: str) -> str:
    calls.append(label)
    await asyncio.sleep(0.3)
    return label


@workflow(name="cx_sleeper")
async def sleeper() -> str:
    await work("before")
    try:
        await sleep("1h")
    except CancellationError:
        async with shield():
            await work("cleanup")  # a durable step inside the shield still runs
            await sleep(0.05)  # so does a durable wait
        raise
    return "never"


async def test_cancel_a_suspended_run_runs_its_cleanup() -> None:
    calls.clear()
    storage = InMemoryStorageBackend()
    run_id = await start(sleeper, storage=storage)
    assert (await get_workflow_run(run_id, storage=storage)).status == "suspended"

    assert await cancel_workflow(run_id, reason="customer left", storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)

    assert run.status == "cancelled"
    assert "customer left" in (run.error or "")
    assert calls == ["before", "cleanup"]
    types = [e.type for e in await get_workflow_events(run_id, storage=storage)]
    assert types.count(EventType.CANCELLATION_REQUESTED) == 1
    assert types[-1] == EventType.WORKFLOW_CANCELLED
    # A run that already ended cannot be cancelled again.
    assert not await cancel_workflow(run_id, storage=storage)


@workflow(name="cx_busy")
async def busy() -> list[str]:
    done = []
    for i in range(20):
        done.append(await slow(f"s{i}"))
    return done


async def test_cancel_a_running_run_at_its_next_step() -> None:
    calls.clear()
    storage = InMemoryStorageBackend()
    task = asyncio.ensure_future(start(busy, storage=storage))
    await asyncio.sleep(0.45)  # inside the second step
    run_id = (await storage.list_runs(workflow_name="cx_busy"))[0].run_id
    assert await cancel_workflow(run_id, "stop", storage=storage)
    await task
    run = await get_workflow_run(run_id, storage=storage)
    assert run is not None and run.status == "cancelled"
    assert calls == ["s0", "s1"]  # the step in flight finished; no new one started
    events = await get_workflow_events(run_id, storage=storage)
    completed = [e for e in events if e.type == EventType.STEP_COMPLETED]
    assert len(completed) == 2


@workflow(name="cx_swallow")
async def swallow() -> str:
    try:
        await sleep("1h")
    except CancellationError:
        return "handled"
    return "slept"


async def test_a_workflow_may_handle_cancellation_and_complete() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(swallow, storage=storage)
    await cancel_workflow(run_id, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == "completed" and run.result == "handled"


@workflow(name="cx_child_sleeper")
async def child_sleeper(tag: str) -> str:
    try:
        await sleep("1h")
    except CancellationError:
        async with shield():
            await work(f"child-cleanup-{tag}")
        raise
    return tag


@workflow(name="cx_parent")
async def parent(policy: str) -> str:
    await start_child_workflow(
        child_sleeper, policy, wait_for_completion=False, parent_close_policy=policy
    )
    return "parent done"


async def _child_of(storage: InMemoryStorageBackend, parent_id: str):  # type: ignore[no-untyped-def]
    return (await storage.list_runs(parent_run_id=parent_id))[0]


async def test_parent_close_policies() -> None:
    calls.clear()
    storage = InMemoryStorageBackend()
    outcomes = {}
    for policy in ("request_cancel", "terminate", "abandon"):
        parent_id = await start(parent, policy, storage=storage)
        await wait_for_run(parent_id, storage=storage, timeout=5)
        child = await _child_of(storage, parent_id)
        if policy != "abandon":
            child = await wait_for_run(child.run_id, storage=storage, timeout=5)
        else:
            await asyncio.sleep(0.2)
            child = await get_workflow_run(child.run_id, storage=storage)
        outcomes[policy] = child.status.value
    assert outcomes == {
        "request_cancel": "cancelled",
        "terminate": "cancelled",
        "abandon": "suspended",
    }
    # request_cancel lets the child clean up; terminate does not run its code again.
    assert calls == ["child-cleanup-request_cancel"]


async def test_cancel_unknown_run_raises() -> None:
    import pytest

    from pyworkflow import WorkflowNotFoundError

    with pytest.raises(WorkflowNotFoundError):
        await cancel_workflow("nope", storage=InMemoryStorageBackend())
