"""Child workflows: started as runs of their own, waited on durably, never started twice."""

from __future__ import annotations

import asyncio

import pytest

from pyworkflow import (
    ChildWorkflowFailedError,
    ChildWorkflowHandle,
    EventType,
    MaxNestingDepthError,
    configure,
    get_workflow_events,
    get_workflow_run,
    sleep,
    start,
    start_child_workflow,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.storage.memory import InMemoryStorageBackend

executions: dict[str, int] = {}


@step(name="cw_charge")
async def charge(amount: int) -> int:
    executions["charge"] = executions.get("charge", 0) + 1
    return amount * 2


@workflow(name="cw_payment")
async def payment(amount: int) -> dict[str, int]:
    charged = await charge(amount)
    await sleep(0.05)  # the child suspends too: the parent must wait durably
    return {"charged": charged}


@workflow(name="cw_order")
async def order(amount: int) -> dict[str, object]:
    receipt = await start_child_workflow(payment, amount)
    return {"receipt": receipt}


async def test_parent_waits_for_child_result() -> None:
    executions.clear()
    storage = InMemoryStorageBackend()
    parent_id = await start(order, 21, storage=storage)
    parent = await wait_for_run(parent_id, storage=storage, timeout=10)
    assert parent.status == "completed", parent.error
    assert parent.result == {"receipt": {"charged": 42}}

    children = await storage.list_runs(parent_run_id=parent_id)
    assert len(children) == 1
    child = children[0]
    assert child.workflow_name == "cw_payment" and child.nesting_depth == 1
    assert child.status == "completed"
    events = await get_workflow_events(parent_id, storage=storage)
    types = [e.type for e in events]
    assert types.count(EventType.CHILD_WORKFLOW_STARTED) == 1
    assert types.count(EventType.CHILD_WORKFLOW_COMPLETED) == 1
    started = next(e for e in events if e.type == EventType.CHILD_WORKFLOW_STARTED)
    assert started.data["child_run_id"] == child.run_id
    # The parent was replayed after the child woke it; the child ran once.
    assert executions == {"charge": 1}
    assert EventType.WORKFLOW_SUSPENDED in types


@step(name="cw_fail", max_retries=0)
async def fail_step() -> None:
    raise ValueError("card declined")


@workflow(name="cw_failing_child")
async def failing_child() -> None:
    await fail_step()


@workflow(name="cw_handles_failure")
async def handles_failure() -> str:
    try:
        await start_child_workflow(failing_child)
    except ChildWorkflowFailedError as exc:
        return f"compensated: {exc.metadata['status']}"
    return "unreachable"


async def test_failed_child_raises_in_parent() -> None:
    storage = InMemoryStorageBackend()
    parent_id = await start(handles_failure, storage=storage)
    parent = await wait_for_run(parent_id, storage=storage, timeout=10)
    assert parent.result == "compensated: failed"
    events = await get_workflow_events(parent_id, storage=storage)
    failed = [e for e in events if e.type == EventType.CHILD_WORKFLOW_FAILED]
    assert len(failed) == 1 and "card declined" in failed[0].data["error"]


@workflow(name="cw_fan_out")
async def fan_out(n: int) -> list[object]:
    handles = [await start_child_workflow(payment, i, wait_for_completion=False) for i in range(n)]
    assert all(isinstance(h, ChildWorkflowHandle) for h in handles)
    return list(await asyncio.gather(*(h.result() for h in handles)))


async def test_handles_fan_out_and_collect() -> None:
    storage = InMemoryStorageBackend()
    parent_id = await start(fan_out, 3, storage=storage)
    parent = await wait_for_run(parent_id, storage=storage, timeout=10)
    assert parent.status == "completed", parent.error
    assert parent.result == [{"charged": 0}, {"charged": 2}, {"charged": 4}]
    assert len(await storage.list_runs(parent_run_id=parent_id)) == 3


async def test_handle_outside_the_workflow() -> None:
    storage = InMemoryStorageBackend()

    @workflow(name="cw_handle_out")
    async def starter() -> str:
        handle = await start_child_workflow(
            payment, 5, wait_for_completion=False, parent_close_policy="abandon"
        )
        return handle.child_run_id

    parent_id = await start(starter, storage=storage)
    parent = await wait_for_run(parent_id, storage=storage, timeout=10)
    child_id = parent.result
    handle = ChildWorkflowHandle(child_id, "child:cw_payment#1", parent_id, storage)
    assert await handle.result(timeout=10) == {"charged": 10}
    assert await handle.is_terminal() and not await handle.is_running()
    assert await handle.get_status() == "completed"


@workflow(name="cw_nest")
async def nest(depth: int) -> int:
    if depth == 0:
        return 0
    return 1 + await start_child_workflow(nest, depth - 1)


async def test_nesting_limit() -> None:
    storage = InMemoryStorageBackend()
    ok = await start(nest, 3, storage=storage)
    assert (await wait_for_run(ok, storage=storage, timeout=10)).result == 3

    before = {r.run_id for r in await storage.list_runs(workflow_name="cw_nest")}
    configure(max_nesting_depth=2)
    too_deep = await start(nest, 3, storage=storage)
    run = await wait_for_run(too_deep, storage=storage, timeout=10)
    assert run.status == "failed"
    assert "max_nesting_depth=2" in (run.error or "")
    # The grandchild that would be too deep was never created.
    new = [r for r in await storage.list_runs(workflow_name="cw_nest") if r.run_id not in before]
    assert sorted(r.nesting_depth for r in new) == [0, 1, 2]


async def test_invalid_parent_close_policy_is_refused() -> None:
    storage = InMemoryStorageBackend()

    @workflow(name="cw_bad_policy")
    async def bad_policy() -> None:
        await start_child_workflow(payment, 1, parent_close_policy="explode")

    run_id = await start(bad_policy, storage=storage)
    run = await get_workflow_run(run_id, storage=storage)
    assert run is not None and run.status == "failed"
    assert "parent_close_policy" in (run.error or "")


async def test_outside_a_workflow_it_raises() -> None:
    with pytest.raises(RuntimeError, match="workflow code"):
        await start_child_workflow(payment, 1)


async def test_max_nesting_error_is_exported() -> None:
    assert issubclass(MaxNestingDepthError, Exception)


@workflow(name="cw_napper")
async def napper() -> str:
    await sleep("1h")
    return "woke"


@workflow(name="cw_canceller")
async def canceller() -> str:
    handle = await start_child_workflow(napper, wait_for_completion=False)
    await sleep(0.05)  # the child is suspended in its hour-long sleep by now
    assert await handle.cancel("no longer needed")
    try:
        await handle.result()
    except ChildWorkflowFailedError as exc:
        return f"child {exc.metadata['status']}"
    return "child finished"


async def test_handle_cancel_from_the_parent() -> None:
    """The parent cancels its sleeping child through the handle; the child is woken,
    ends 'cancelled', and the parent sees that."""
    storage = InMemoryStorageBackend()
    parent_id = await start(canceller, storage=storage)
    parent = await wait_for_run(parent_id, storage=storage, timeout=10)
    assert parent.status == "completed", parent.error
    assert parent.result == "child cancelled"
    [child] = await storage.list_runs(parent_run_id=parent_id)
    assert child.status == "cancelled" and child.cancel_reason == "no longer needed"


async def test_handle_cancel_outside_and_after_the_end() -> None:
    storage = InMemoryStorageBackend()

    @workflow(name="cw_cancel_out")
    async def starter() -> str:
        handle = await start_child_workflow(
            napper, wait_for_completion=False, parent_close_policy="abandon"
        )
        return handle.child_run_id

    parent_id = await start(starter, storage=storage)
    child_id = (await wait_for_run(parent_id, storage=storage, timeout=10)).result
    handle = ChildWorkflowHandle(child_id, "child:cw_napper#1", parent_id, storage)
    assert await handle.cancel()  # the runtime's recovery pass delivers it
    from pyworkflow.runtime import get_runtime

    await get_runtime("local").service(storage).recover()
    assert (await wait_for_run(child_id, storage=storage, timeout=10)).status == "cancelled"
    assert not await handle.cancel()  # already ended
