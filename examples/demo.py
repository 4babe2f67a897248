"""A real durable workflow on the embedded default (local runtime + SQLite, no servers).

Run it with ``make demo``. The run executes two steps, retries a flaky one, sleeps
durably for 3 seconds (the run is stored ``suspended`` with its wake-up time; nothing
holds it in memory), is woken by the local runtime's timer, finishes, and the run's
event log is printed from storage at the end.
"""

from __future__ import annotations

import asyncio
import os

from pyworkflow import (
    RetryableError,
    configure,
    get_workflow_events,
    get_workflow_run,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)

attempts = {"charge": 0}


@step()
async def reserve_stock(order_id: str) -> dict[str, str]:
    return {"order_id": order_id, "reservation": f"R-{order_id}"}


@step(max_retries=3, retry_delay="1s")
async def charge_card(order_id: str, amount: float) -> dict[str, object]:
    attempts["charge"] += 1
    if attempts["charge"] == 1:
        raise RetryableError("payment gateway timeout")  # the retry wait is durable too
    return {"order_id": order_id, "charged": amount}


@step()
async def send_receipt(order_id: str) -> str:
    return f"receipt sent for {order_id}"


@workflow(name="demo_order")
async def process_order(order_id: str, amount: float) -> dict[str, object]:
    reservation = await reserve_stock(order_id)
    payment = await charge_card(order_id, amount)
    await sleep("3s")  # suspends: the wake-up time is stored in SQLite
    receipt = await send_receipt(order_id)
    return {"reservation": reservation, "payment": payment, "receipt": receipt}


async def main() -> None:
    db = os.environ.get("PYWORKFLOW_DEMO_DB", ".pyworkflow/demo.db")
    configure(storage=f"sqlite:///{db}")
    run_id = await start(process_order, "ORD-42", 99.5)
    run = await get_workflow_run(run_id)
    assert run is not None
    print(f"started {run_id}: status={run.status.value} (will wake at {run.wake_at})")

    run = await wait_for_run(run_id, timeout=60)
    print(f"finished: status={run.status.value} result={run.result}")
    print("\nevent log:")
    for event in await get_workflow_events(run_id):
        detail = {k: v for k, v in event.data.items() if k not in ("error",)}
        print(
            f"  {event.sequence:>3}  {event.timestamp:%H:%M:%S.%f}  {event.type.value:<20} {detail}"
        )


if __name__ == "__main__":
    asyncio.run(main())
