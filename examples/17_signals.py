"""Signals: a running workflow receives a stream of messages (a shopping cart).

``wait_for_signal("cart", CartEvent)`` returns the next ``cart`` signal the run has not
taken, waiting (suspended, nothing held in memory) until one is sent. Signals sent with
``send_signal(run_id, "cart", payload)`` before the workflow waits are buffered in the
run's inbox and taken in the order they were sent, each exactly once.

``define_signal("cart", CartEvent)`` types the signal: a sender in a process that knows
the model validates first, and a refused payload is never stored. ``start(...,
signal=("cart", ...))`` starts a run with its first signal already received (one write),
and ``timeout=`` turns a long silence into ``SignalTimeoutError`` (a ``TimeoutError``).

Storage: ``$PYWORKFLOW_EXAMPLE_DB`` if set, else ``.pyworkflow/examples.db``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Literal

from pydantic import BaseModel, ValidationError

from pyworkflow import (
    EventType,
    RunEndedError,
    SignalTimeoutError,
    configure,
    define_signal,
    get_workflow_events,
    get_workflow_run,
    send_signal,
    start,
    step,
    wait_for_run,
    wait_for_signal,
    workflow,
)


class CartEvent(BaseModel):
    kind: Literal["add", "remove", "checkout"]
    sku: str = ""


define_signal("ex17_cart", CartEvent)


@step()
async def charge(items: list[str]) -> str:
    print(f"  (step body) charging for {items}")
    return f"charged {len(items)} items"


@workflow(name="ex17_cart")
async def shopping_cart(customer: str) -> dict[str, object]:
    items: list[str] = []
    while True:
        try:
            event = await wait_for_signal("ex17_cart", CartEvent, timeout="1h")
        except SignalTimeoutError:
            return {"customer": customer, "abandoned": items}
        if event.kind == "add":
            items.append(event.sku)
        elif event.kind == "remove" and event.sku in items:
            items.remove(event.sku)
        else:
            return {"customer": customer, "items": items, "payment": await charge(items)}


async def main() -> None:
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", ".pyworkflow/examples.db")
    configure(storage=f"sqlite:///{db}")

    print("1) signal-with-start: the run begins with its first signal received")
    run_id = await start(shopping_cart, "ada", signal=("ex17_cart", {"kind": "add", "sku": "tea"}))
    run = await get_workflow_run(run_id)
    assert run is not None
    print(f"after start(): status={run.status.value}")
    assert run.status == "suspended"  # waiting for the next signal, holding nothing

    print("2) more signals: buffered, then taken in order")
    for payload in ({"kind": "add", "sku": "mug"}, {"kind": "add", "sku": "pot"}):
        sent = await send_signal(run_id, "ex17_cart", payload)
        print(f"  sent #{sent.sequence}: {payload}")
    await send_signal(run_id, "ex17_cart", CartEvent(kind="remove", sku="mug"))

    try:
        await send_signal(run_id, "ex17_cart", {"kind": "teleport"})
    except ValidationError as exc:
        print(f"invalid payload refused before it was stored: {exc.error_count()} error")
    else:
        raise AssertionError("an invalid payload was sent")

    await send_signal(run_id, "ex17_cart", {"kind": "checkout"})
    run = await wait_for_run(run_id, timeout=10)
    print(f"finished: status={run.status.value} result={run.result}")
    assert run.result == {"customer": "ada", "items": ["tea", "pot"], "payment": "charged 2 items"}

    try:
        await send_signal(run_id, "ex17_cart", {"kind": "add", "sku": "late"})
    except RunEndedError as exc:
        print(f"signal to an ended run refused: {exc}")
    else:
        raise AssertionError("an ended run took a signal")

    events = await get_workflow_events(run_id)
    print("signals in the event log:")
    for e in events:
        if e.type.value.startswith("signal."):
            print(f"  {e.sequence:>3}  {e.type.value:<16} {e.data}")
    types = [e.type for e in events]
    assert types.count(EventType.SIGNAL_RECEIVED) == 4  # the start's signal is in its first event
    assert types.count(EventType.SIGNAL_CONSUMED) == 5
    print("\nOK: five signals taken in order, one refused before storing, late one refused")


if __name__ == "__main__":
    asyncio.run(main())
