"""The basics: a workflow made of steps, its result, and its event log.

A ``@workflow`` is a plain ``async`` function that calls ``@step`` functions. Started
with ``await start(...)``, it runs on the local runtime and every step's start and
completion (with its result) is appended to the run's event log in SQLite. The script
prints the stored run and its log, and asserts what it shows: the run completed, its
result is the workflow's return value, and each step completed exactly once.

Storage: ``$PYWORKFLOW_EXAMPLE_DB`` if set, else ``.pyworkflow/examples.db``.
"""

from __future__ import annotations

import asyncio
import os

from pyworkflow import (
    EventType,
    configure,
    get_workflow_events,
    get_workflow_run,
    start,
    step,
    workflow,
)


@step()
async def fetch_user(user_id: str) -> dict[str, str]:
    return {"id": user_id, "email": f"{user_id}@example.com"}


@step()
async def send_welcome_email(user: dict[str, str]) -> str:
    print(f"  (step body) sending welcome email to {user['email']}")
    return f"welcome email sent to {user['email']}"


@step()
async def record_signup(user_id: str) -> int:
    return len(user_id)  # pretend this is the id of a database row


@workflow(name="ex01_signup")
async def signup(user_id: str) -> dict[str, object]:
    user = await fetch_user(user_id)
    receipt = await send_welcome_email(user)
    row = await record_signup(user_id)
    return {"user": user, "receipt": receipt, "row": row}


async def main() -> None:
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", ".pyworkflow/examples.db")
    configure(storage=f"sqlite:///{db}")

    run_id = await start(signup, "user_123")
    run = await get_workflow_run(run_id)
    assert run is not None
    print(f"run {run_id}")
    print(f"  workflow={run.workflow_name} status={run.status.value}")
    print(f"  input args={run.input_args} kwargs={run.input_kwargs}")
    print(f"  result={run.result}")

    events = await get_workflow_events(run_id)
    print("\nevent log:")
    for event in events:
        print(f"  {event.sequence:>3}  {event.type.value:<20} {event.data}")

    # What this example demonstrates:
    assert run.status == "completed"
    assert run.result == {
        "user": {"id": "user_123", "email": "user_123@example.com"},
        "receipt": "welcome email sent to user_123@example.com",
        "row": 8,
    }
    types = [e.type for e in events]
    assert types[0] == EventType.WORKFLOW_STARTED
    assert types[-1] == EventType.WORKFLOW_COMPLETED
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    completed = [e.data["step_name"] for e in events if e.type == EventType.STEP_COMPLETED]
    assert completed == ["fetch_user", "send_welcome_email", "record_signup"]
    print("\nOK: 3 steps completed once each; the result is stored with the run")


if __name__ == "__main__":
    asyncio.run(main())
