"""Parallel steps with ``asyncio.gather`` (the seed README's ``dashboard_data`` example).

Three independent steps are awaited together. Their bodies run concurrently on the
event loop (each waits 0.3 s; the script tracks how many are in flight at once), and
each is still recorded separately in the event log with its own result.

Storage: ``$PYWORKFLOW_EXAMPLE_DB`` if set, else ``.pyworkflow/examples.db``.
"""

from __future__ import annotations

import asyncio
import os
import time

from pyworkflow import (
    EventType,
    configure,
    get_workflow_events,
    start,
    step,
    wait_for_run,
    workflow,
)

in_flight = 0
max_in_flight = 0


async def pretend_io(seconds: float) -> None:
    """Simulated network call that records how many steps overlap."""
    global in_flight, max_in_flight
    in_flight += 1
    max_in_flight = max(max_in_flight, in_flight)
    try:
        await asyncio.sleep(seconds)
    finally:
        in_flight -= 1


@step()
async def fetch_user(user_id: str) -> dict[str, str]:
    await pretend_io(0.3)
    return {"id": user_id, "name": "Alice"}


@step()
async def fetch_orders(user_id: str) -> list[dict[str, str]]:
    await pretend_io(0.3)
    return [{"id": "ORD-1"}, {"id": "ORD-2"}]


@step()
async def fetch_recommendations(user_id: str) -> list[str]:
    await pretend_io(0.3)
    return ["Product A", "Product B"]


@workflow(name="ex04_dashboard_data")
async def dashboard_data(user_id: str) -> dict[str, object]:
    # Fetch all data in parallel
    user, orders, recommendations = await asyncio.gather(
        fetch_user(user_id),
        fetch_orders(user_id),
        fetch_recommendations(user_id),
    )
    return {"user": user, "orders": orders, "recommendations": recommendations}


async def main() -> None:
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", ".pyworkflow/examples.db")
    configure(storage=f"sqlite:///{db}")

    began = time.monotonic()
    run_id = await start(dashboard_data, "user_123")
    run = await wait_for_run(run_id, timeout=30)
    elapsed = time.monotonic() - began
    print(f"run {run_id}: status={run.status.value} in {elapsed:.2f}s")
    print(f"result: {run.result}")
    print(f"steps in flight at once: {max_in_flight}")

    events = await get_workflow_events(run_id)
    print("\nevent log:")
    for e in events:
        name = e.data.get("step_name", "")
        print(f"  {e.sequence:>3}  {e.timestamp:%H:%M:%S.%f}  {e.type.value:<20} {name}")

    assert run.status == "completed"
    assert run.result == {
        "user": {"id": "user_123", "name": "Alice"},
        "orders": [{"id": "ORD-1"}, {"id": "ORD-2"}],
        "recommendations": ["Product A", "Product B"],
    }
    assert max_in_flight == 3, max_in_flight  # all three bodies overlapped
    completed = sorted(e.data["step_name"] for e in events if e.type == EventType.STEP_COMPLETED)
    assert completed == ["fetch_orders", "fetch_recommendations", "fetch_user"]
    print("\nOK: the three steps ran concurrently and each was recorded once")


if __name__ == "__main__":
    asyncio.run(main())
