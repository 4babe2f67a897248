"""Cancellation: ``cancel_workflow()``, cleanup under ``shield()``, and handling it.

1. A subscription workflow provisions an account and sleeps for an hour. While it is
   suspended, ``cancel_workflow(run_id, reason, wait=True)`` wakes it: the ``sleep``
   raises ``CancellationError``, the workflow releases the account in an
   ``async with shield():`` block (a durable step and a short durable sleep, which run
   normally), and re-raises. The run ends ``cancelled`` with the reason in its error.
   A second ``cancel_workflow`` on the ended run returns ``False``.
2. A batch workflow catches ``CancellationError`` and returns its partial result: the
   run ends ``completed``.
3. A payment workflow charges and captures inside ``shield()`` with a durable sleep
   between them. A cancellation that arrives during that sleep waits for the shielded
   block to finish, then surfaces at the next durable operation after it.

Storage: ``$PYWORKFLOW_EXAMPLE_DB`` if set, else ``.pyworkflow/examples.db``.
"""

from __future__ import annotations

import asyncio
import os

from pyworkflow import (
    CancellationError,
    EventType,
    cancel_workflow,
    configure,
    get_workflow_events,
    get_workflow_run,
    shield,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)

calls: list[str] = []


@step()
async def do(action: str) -> str:
    print(f"  (step body) {action}")
    calls.append(action)
    return action


@workflow(name="ex12_subscription")
async def subscription(account: str) -> str:
    await do(f"provision {account}")
    try:
        await sleep("1h")  # the trial period
    except CancellationError as exc:
        async with shield():
            await do(f"release {account} ({exc.reason})")
            await sleep("100ms")  # durable waits work during cleanup too
            await do(f"notify owner of {account}")
        raise  # let the run end as cancelled
    return await do(f"bill {account}")


@workflow(name="ex12_batch")
async def batch(items: int) -> dict[str, object]:
    done = [await do(f"item {i}") for i in range(items)]
    try:
        await sleep("1h")  # waiting for the next batch window
    except CancellationError:
        return {"processed": len(done), "stopped": "cancelled, partial result kept"}
    return {"processed": len(done), "stopped": "finished"}


@workflow(name="ex12_payment")
async def payment(order: str) -> str:
    async with shield():  # charge and capture belong together
        await do(f"charge {order}")
        await sleep("500ms")
        await do(f"capture {order}")
    await do(f"ship {order}")  # a cancellation requested meanwhile is raised here
    return "shipped"


async def cancel_sleeping_run() -> None:
    print("1) cancel a suspended run; its cleanup runs under shield()")
    calls.clear()
    run_id = await start(subscription, "acct-1")
    run = await get_workflow_run(run_id)
    assert run is not None and run.status == "suspended"
    print(f"after start(): status={run.status.value} wake_at={run.wake_at}")

    accepted = await cancel_workflow(run_id, "customer churned", wait=True, timeout=10)
    run = await get_workflow_run(run_id)
    assert run is not None
    print(f"cancel_workflow() -> {accepted}; status={run.status.value} error={run.error!r}")
    assert accepted and run.status == "cancelled"
    assert "customer churned" in (run.error or "")
    assert calls == [
        "provision acct-1",
        "release acct-1 (customer churned)",
        "notify owner of acct-1",
    ]

    events = await get_workflow_events(run_id)
    for e in events:
        print(f"  {e.sequence:>3}  {e.type.value:<24} {e.data}")
    types = [e.type for e in events]
    assert types.count(EventType.CANCELLATION_REQUESTED) == 1
    assert types[-1] == EventType.WORKFLOW_CANCELLED

    again = await cancel_workflow(run_id, "twice")
    print(f"cancel_workflow() on the ended run -> {again}")
    assert again is False


async def handle_cancellation() -> None:
    print("\n2) a workflow that handles the cancellation and completes")
    calls.clear()
    run_id = await start(batch, 2)
    await cancel_workflow(run_id, "shutting down")
    run = await wait_for_run(run_id, timeout=10)
    print(f"finished: status={run.status.value} result={run.result}")
    assert run.status == "completed"
    assert run.result == {"processed": 2, "stopped": "cancelled, partial result kept"}


async def shielded_section() -> None:
    print("\n3) a cancellation waits for a shielded section to finish")
    calls.clear()
    run_id = await start(payment, "order-9")
    run = await get_workflow_run(run_id)
    assert run is not None and run.status == "suspended"  # inside the shielded sleep
    await cancel_workflow(run_id, "order withdrawn")
    run = await wait_for_run(run_id, timeout=10)
    print(f"finished: status={run.status.value} error={run.error!r}")
    assert run.status == "cancelled"
    assert calls == ["charge order-9", "capture order-9"]  # captured, never shipped


async def main() -> None:
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", ".pyworkflow/examples.db")
    configure(storage=f"sqlite:///{db}")

    await cancel_sleeping_run()
    await handle_cancellation()
    await shielded_section()
    print("\nOK: cancelled with cleanup, handled cancellation, shielded section completed")


if __name__ == "__main__":
    asyncio.run(main())
