"""Child workflows: ``start_child_workflow()``, handles, failures, parent close policies.

A child workflow is a run of its own (its own event log, retries and timers) that
records ``parent_run_id``. Its run id derives from the parent's operation, so replaying
the parent never starts it twice.

1. An order workflow waits for a payment child: ``await start_child_workflow(payment,
   ...)`` suspends the parent durably until the child (which itself sleeps) ends and
   wakes it, then returns the child's result.
2. Fan-out: ``wait_for_completion=False`` returns a ``ChildWorkflowHandle`` per child;
   ``asyncio.gather(*(h.result() for h in handles))`` collects the results.
3. A child that fails raises ``ChildWorkflowFailedError`` in the parent, which
   compensates and completes.
4. ``parent_close_policy`` decides what happens to children still running when the
   parent ends: ``"terminate"`` (the default) ends them ``cancelled`` without running
   any more of their code, ``"request_cancel"`` cancels them so their cleanup runs, and
   ``"abandon"`` leaves them running (this script then cancels that one itself).

Storage: ``$PYWORKFLOW_EXAMPLE_DB`` if set, else ``.pyworkflow/examples.db``.
"""

from __future__ import annotations

import asyncio
import os

from pyworkflow import (
    CancellationError,
    ChildWorkflowFailedError,
    ChildWorkflowHandle,
    EventType,
    FatalError,
    cancel_workflow,
    configure,
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

calls: list[str] = []


@step()
async def charge(amount: int) -> int:
    print(f"  (step body) charging {amount}")
    calls.append(f"charge {amount}")
    if amount < 0:
        raise FatalError(f"card declined for amount {amount}")
    return amount


@step()
async def record(note: str) -> str:
    print(f"  (step body) {note}")
    calls.append(note)
    return note


@workflow(name="ex13_payment")
async def payment(amount: int) -> dict[str, int]:
    charged = await charge(amount)
    await sleep("200ms")  # the child suspends; the parent keeps waiting durably
    return {"charged": charged}


@workflow(name="ex13_order")
async def order(amount: int) -> dict[str, object]:
    receipt = await start_child_workflow(payment, amount)
    return {"receipt": receipt}


@workflow(name="ex13_fan_out")
async def fan_out(amounts: list[int]) -> list[object]:
    handles = [await start_child_workflow(payment, a, wait_for_completion=False) for a in amounts]
    assert all(isinstance(h, ChildWorkflowHandle) for h in handles)
    return list(await asyncio.gather(*(h.result() for h in handles)))


@workflow(name="ex13_compensating_order")
async def compensating_order(amount: int) -> str:
    try:
        await start_child_workflow(payment, amount)
    except ChildWorkflowFailedError as exc:
        await record(f"cancel order after child {exc.metadata['status']}")
        return f"compensated: {exc.metadata['error']}"
    return "paid"


@workflow(name="ex13_watcher")
async def watcher(label: str) -> str:
    try:
        await sleep("1h")
    except CancellationError:
        async with shield():
            await record(f"cleanup {label}")
        raise
    return label


@workflow(name="ex13_launcher")
async def launcher() -> dict[str, str]:
    ids = {}
    for policy in ("terminate", "request_cancel", "abandon"):
        handle = await start_child_workflow(
            watcher, policy, wait_for_completion=False, parent_close_policy=policy
        )
        ids[policy] = handle.child_run_id
    return ids  # the parent ends while its three children are still sleeping


async def wait_for_child() -> None:
    print("1) wait for a child's result")
    calls.clear()
    parent_id = await start(order, 21)
    parent = await wait_for_run(parent_id, timeout=10)
    print(f"parent: status={parent.status.value} result={parent.result}")
    assert parent.status == "completed" and parent.result == {"receipt": {"charged": 21}}

    events = await get_workflow_events(parent_id)
    for e in events:
        print(f"  {e.sequence:>3}  {e.type.value:<26} {e.data}")
    started = next(e for e in events if e.type == EventType.CHILD_WORKFLOW_STARTED)
    child = await get_workflow_run(started.data["child_run_id"])
    assert child is not None
    print(f"child: {child.run_id} parent_run_id={child.parent_run_id} depth={child.nesting_depth}")
    assert child.parent_run_id == parent_id and child.nesting_depth == 1
    assert [e.type for e in events].count(EventType.CHILD_WORKFLOW_COMPLETED) == 1
    assert calls == ["charge 21"]  # the parent's replay did not start a second child


async def fan_out_handles() -> None:
    print("\n2) fan out with handles, gather the results")
    parent_id = await start(fan_out, [1, 2, 3])
    parent = await wait_for_run(parent_id, timeout=10)
    print(f"parent: status={parent.status.value} result={parent.result}")
    assert parent.result == [{"charged": 1}, {"charged": 2}, {"charged": 3}]


async def failing_child() -> None:
    print("\n3) a failing child raises ChildWorkflowFailedError in the parent")
    calls.clear()
    parent_id = await start(compensating_order, -5)
    parent = await wait_for_run(parent_id, timeout=10)
    print(f"parent: status={parent.status.value} result={parent.result!r}")
    assert parent.status == "completed"
    assert parent.result.startswith("compensated:") and "card declined" in parent.result
    assert calls == ["charge -5", "cancel order after child failed"]
    types = [e.type for e in await get_workflow_events(parent_id)]
    assert EventType.CHILD_WORKFLOW_FAILED in types


async def close_policies() -> None:
    print("\n4) parent_close_policy when the parent ends first")
    calls.clear()
    parent_id = await start(launcher)
    parent = await wait_for_run(parent_id, timeout=10)
    ids: dict[str, str] = parent.result
    statuses = {}
    for policy, child_id in ids.items():
        if policy == "abandon":
            await asyncio.sleep(0.2)
            child = await get_workflow_run(child_id)
        else:
            child = await wait_for_run(child_id, timeout=10)
        assert child is not None
        statuses[policy] = child.status.value
        print(f"  {policy:<15} child status={child.status.value:<10} error={child.error!r}")
    assert statuses == {
        "terminate": "cancelled",
        "request_cancel": "cancelled",
        "abandon": "suspended",
    }
    assert calls == ["cleanup request_cancel"]  # terminate ran none of the child's code

    await cancel_workflow(ids["abandon"], "example finished", wait=True, timeout=10)
    assert calls == ["cleanup request_cancel", "cleanup abandon"]


async def main() -> None:
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", ".pyworkflow/examples.db")
    configure(storage=f"sqlite:///{db}")

    await wait_for_child()
    await fan_out_handles()
    await failing_child()
    await close_policies()
    print("\nOK: child results, fan-out handles, a failed child, three close policies")


if __name__ == "__main__":
    asyncio.run(main())
