"""Starting a workflow from plain synchronous code, as the seed README does::

    run_id = start(onboarding_workflow, user_id="user_123")

Called outside any event loop, ``start`` runs the workflow on a private loop and, with
the local runtime, returns the run id once the run has completed or suspended (this
workflow has no sleep, so it completes). The script is an ordinary ``def main()`` with
no ``asyncio.run`` around ``start``; it then reads the stored run with
``asyncio.run(get_workflow_run(run_id))``.

Storage: ``$PYWORKFLOW_EXAMPLE_DB`` if set, else ``.pyworkflow/examples.db``.
"""

from __future__ import annotations

import asyncio
import os

from pyworkflow import configure, get_workflow_events, get_workflow_run, start, step, workflow


@step()
async def send_welcome_email(user_id: str) -> str:
    print(f"Sending welcome email to user {user_id}")
    return f"Email sent to {user_id}"


@step()
async def send_tips_email(user_id: str) -> str:
    print(f"Sending tips email to user {user_id}")
    return f"Tips sent to {user_id}"


@workflow(name="ex08_onboarding_no_sleep")
async def onboarding_workflow(user_id: str) -> str:
    await send_welcome_email(user_id)
    await send_tips_email(user_id)
    return "Onboarding complete"


def main() -> None:
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", ".pyworkflow/examples.db")
    configure(storage=f"sqlite:///{db}")

    # Start workflow: a plain call from synchronous code
    run_id = start(onboarding_workflow, user_id="user_123")
    print(f"Workflow started: {run_id}")
    assert isinstance(run_id, str)

    run = asyncio.run(get_workflow_run(run_id))
    assert run is not None
    print(f"status={run.status.value} result={run.result!r} kwargs={run.input_kwargs}")
    events = asyncio.run(get_workflow_events(run_id))
    print("events: " + ", ".join(e.type.value for e in events))

    assert run.status == "completed"
    assert run.result == "Onboarding complete"
    assert run.input_kwargs == {"user_id": "user_123"}
    assert [e.data["step_name"] for e in events if e.type == "step.completed"] == [
        "send_welcome_email",
        "send_tips_email",
    ]

    # A second synchronous start in the same process works the same way.
    second = start(onboarding_workflow, user_id="user_456")
    run = asyncio.run(get_workflow_run(second))
    assert run is not None and run.status == "completed" and second != run_id
    print(f"second run {second}: status={run.status.value}")
    print("\nOK: synchronous start() returned a completed run's id")


if __name__ == "__main__":
    main()
