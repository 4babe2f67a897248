"""Compensation (a saga): each step that changes the world names what undoes it.

``@step(compensate=undo)``: when the run fails or is cancelled, the undo of every call
that completed runs durably, newest first, with the call's result and arguments. Here
a trip books a room and takes a payment, then the confirmation fails: the payment is
refunded, then the room released, and the run ends ``failed``. A second trip is
cancelled while it waits: the same undos run and it ends ``cancelled``.

Storage: ``$PYWORKFLOW_EXAMPLE_DB`` if set, else ``.pyworkflow/examples.db``.
"""

from __future__ import annotations

import asyncio
import os

from pyworkflow import (
    FatalError,
    cancel_workflow,
    configure,
    get_workflow_events,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)

undone: list[str] = []


async def release_room(booking: str, room: str) -> None:
    print(f"  (compensation) releasing {booking} for room {room}")
    undone.append(f"released {booking}")


@step()
async def refund(payment: str, amount: int) -> None:
    print(f"  (compensation step) refunding {amount} of {payment}")
    undone.append(f"refunded {payment}")


@step(compensate=release_room)
async def book(room: str) -> str:
    return f"booking-{room}"


@step(compensate=refund)
async def pay(amount: int) -> str:
    return f"payment-{amount}"


@step(max_retries=0)
async def confirm(room: str) -> str:
    raise FatalError(f"room {room} was double-booked")


@workflow(name="ex18_trip")
async def trip(room: str, wait: bool = False) -> str:
    await book(room)
    await pay(90)
    if wait:
        await sleep("1h")  # cancelled here
    return await confirm(room)


async def main() -> None:
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", ".pyworkflow/examples.db")
    configure(storage=f"sqlite:///{db}")

    print("1) the confirmation fails: the completed steps are undone, newest first")
    run_id = await start(trip, "r7")
    run = await wait_for_run(run_id, timeout=10)
    print(f"finished: status={run.status.value} error={run.error}")
    assert run.status == "failed" and "double-booked" in (run.error or "")
    assert undone == ["refunded payment-90", "released booking-r7"]
    steps = [
        e.data["step_id"]
        for e in await get_workflow_events(run_id)
        if e.type.value == "step.completed"
    ]
    print(f"completed steps in the history: {steps}")
    assert steps[-2:] == ["step:refund#1", "step:book.compensate#1"]

    print("\n2) a waiting trip is cancelled: the same undos run, the run ends cancelled")
    undone.clear()
    run_id = await start(trip, "r8", True)
    await cancel_workflow(run_id, "plans changed")
    run = await wait_for_run(run_id, timeout=10)
    print(f"finished: status={run.status.value}")
    assert run.status == "cancelled"
    assert undone == ["refunded payment-90", "released booking-r8"]
    print("\nOK: payments refunded and rooms released, newest first, for a failure and a cancel")


if __name__ == "__main__":
    asyncio.run(main())
