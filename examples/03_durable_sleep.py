"""Durable sleep: ``sleep("1s")``, ``sleep(timedelta(...))`` and ``sleep(<datetime>)``.

Each ``sleep`` in a durable run records its wake-up time and suspends the run: ``start``
returns while the run is stored ``suspended`` with ``wake_at`` set, and nothing holds it
in memory. Calling ``resume()`` before the wake-up time does not end the sleep early.
The local runtime's timer wakes the run when due (``wait_for_run`` keeps it serviced),
and the run replays its history up to the next sleep, three times, until it completes.

The datetime target is passed in as a workflow argument (computed once, outside the
workflow), so replays see the same value. Total sleeping: about 2 s.

Storage: ``$PYWORKFLOW_EXAMPLE_DB`` if set, else ``.pyworkflow/examples.db``.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta

from pyworkflow import (
    EventType,
    configure,
    get_workflow_events,
    get_workflow_run,
    resume,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)


@step()
async def remind(user_id: str, label: str) -> str:
    stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
    print(f"  [{stamp}] reminder for {user_id}: {label}")
    return label


@workflow(name="ex03_reminders")
async def reminders(user_id: str, final_at: datetime) -> list[str]:
    sent = [await remind(user_id, "immediately")]
    await sleep("1s")  # duration string
    sent.append(await remind(user_id, "after 1s"))
    await sleep(timedelta(milliseconds=500))  # timedelta
    sent.append(await remind(user_id, "after another 0.5s"))
    await sleep(final_at)  # an absolute (aware or naive-UTC) datetime
    sent.append(await remind(user_id, f"at {final_at:%H:%M:%S.%f}"[:-3]))
    return sent


async def main() -> None:
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", ".pyworkflow/examples.db")
    configure(storage=f"sqlite:///{db}")

    began = time.monotonic()
    final_at = datetime.now(UTC) + timedelta(seconds=2)
    run_id = await start(reminders, "user_123", final_at)

    run = await get_workflow_run(run_id)
    assert run is not None
    print(f"after start(): status={run.status.value} wake_at={run.wake_at}")
    assert run.status == "suspended"
    assert run.wake_at is not None and run.wake_at > datetime.now(UTC)
    first_wake = run.wake_at

    await resume(run_id)  # too early: the sleep is not cut short
    run = await get_workflow_run(run_id)
    assert run is not None
    print(f"after an early resume(): status={run.status.value} wake_at={run.wake_at}")
    assert run.status == "suspended" and run.wake_at == first_wake

    run = await wait_for_run(run_id, timeout=30)
    elapsed = time.monotonic() - began
    print(f"finished after {elapsed:.2f}s: status={run.status.value} result={run.result}")

    events = await get_workflow_events(run_id)
    print("\nevent log:")
    for e in events:
        print(f"  {e.sequence:>3}  {e.timestamp:%H:%M:%S.%f}  {e.type.value:<20} {e.data}")

    assert run.status == "completed"
    assert len(run.result) == 4
    types = [e.type for e in events]
    assert types.count(EventType.SLEEP_STARTED) == 3
    assert types.count(EventType.SLEEP_COMPLETED) == 3
    assert types.count(EventType.WORKFLOW_SUSPENDED) >= 3
    assert types.count(EventType.STEP_COMPLETED) == 4  # no step ran twice across replays
    assert elapsed >= 1.9, elapsed  # the datetime target was 2 s after the start
    durations = [e.data["duration_seconds"] for e in events if e.type == EventType.SLEEP_STARTED]
    assert durations[:2] == [1.0, 0.5], durations
    print("\nOK: three durable sleeps, suspended in between, completed by the local runtime")


if __name__ == "__main__":
    asyncio.run(main())
