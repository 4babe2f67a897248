"""A Celery worker survives storage faults: the workflow and step task bodies retry a
failed storage call after a backoff, and past their in-task budget send the message
again for later; the run completes once storage answers, with no recovery counted.

The task bodies run in this process on a real SQLite database; the broker is replaced
by a list of sent messages (which the test then delivers), because what is tested is
the task bodies' answer to a fault, not Celery's transport (tests/celery covers that).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

import pyworkflow
from pyworkflow import EventType, get_workflow_events, step, workflow
from pyworkflow.celery import worker
from pyworkflow.celery.app import STEPS_QUEUE, WORKFLOWS_QUEUE
from pyworkflow.engine import recovery
from pyworkflow.engine.owners import QUEUED_OWNER
from pyworkflow.engine.runs import RunRequest, build_run
from pyworkflow.testing.faults import StorageFaults


@step(name="csf_double")
async def double(x: int) -> int:
    return 2 * x


@workflow(name="csf_flow")
async def flow(x: int) -> int:
    return await double(await double(x))


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    messages: list[tuple[str, dict[str, Any]]] = []

    def send_workflow(run_id: str, **options: Any) -> None:
        messages.append(("workflow", {"run_id": run_id, **options}))

    def send_step(step_: Any, round_owner: str, *, eta: datetime | None = None) -> None:
        messages.append(
            (
                "step",
                {
                    "run_id": step_.run_id,
                    "op_id": step_.op_id,
                    "round_owner": round_owner,
                    "eta": eta,
                },
            )
        )

    monkeypatch.setattr(worker, "send_workflow", send_workflow)
    monkeypatch.setattr(worker, "send_step", send_step)
    monkeypatch.setattr(recovery, "BACKOFF_BASE", 0.01)
    return messages


async def _deliver_all(messages: list[tuple[str, dict[str, Any]]]) -> None:
    while messages:
        kind, body = messages.pop(0)
        body.pop("eta", None)
        if kind == "workflow":
            await worker.execute_workflow(
                body["run_id"],
                steal_from=body.get("steal_from"),
                recovery=body.get("recovery", False),
                force=body.get("force", False),
            )
        else:
            await worker.execute_step(body["run_id"], body["op_id"], body["round_owner"])


@pytest.mark.parametrize("runs_workflows", [False, True], ids=["steps-only", "steps+workflows"])
@pytest.mark.parametrize("landed", [False, True], ids=["lost", "landed"])
@pytest.mark.parametrize("failing", [{1}, {2}, {3}, {4}, {1, 2, 3, 4, 5, 6, 7, 8, 9}])
async def test_storage_faults_in_tasks_never_fail_or_recover_a_run(
    sent: list[tuple[str, dict[str, Any]]],
    tmp_path: Any,
    landed: bool,
    failing: set[int],
    runs_workflows: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``steps+workflows``: the worker also runs workflows, so the task recording a
    round's last step goes on with the run (its writes fail too)."""
    queues = (STEPS_QUEUE, WORKFLOWS_QUEUE) if runs_workflows else (STEPS_QUEUE,)
    monkeypatch.setattr(worker, "consumed_queues", queues)
    pyworkflow.configure(storage=f"sqlite:///{tmp_path}/wf.db")
    storage = await worker.current().storage()
    request = RunRequest(definition=flow.__workflow__, args=(3,), kwargs={})
    run, started = build_run(request, owner=None, lease_ttl=0)
    run.lease_owner = QUEUED_OWNER
    await storage.create_run(run, [started])
    sent.append(("workflow", {"run_id": run.run_id, "steal_from": QUEUED_OWNER}))
    with StorageFaults(storage, fail_appends=failing, landed=landed):
        await _deliver_all(sent)
    stored = await storage.get_run(run.run_id)
    assert (stored.status, stored.result_payload) == ("completed", "12")
    assert stored.recovery_attempts == 0
    events = await get_workflow_events(run.run_id, storage=storage)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert not any(e.type == EventType.WORKFLOW_INTERRUPTED for e in events)
    await storage.close()
    worker.current().loop.close()  # the task shells' loop: unused when called from here
    worker._process = None


async def test_start_returns_the_stored_run_when_the_broker_is_down(tmp_path: Any) -> None:
    """A broker nobody listens on (a real connection refused): the run is stored, so
    start() returns its id instead of raising (a caller retrying would start it twice);
    the scheduler sends its message once the queue lease runs out."""
    import socket
    import time

    with socket.socket() as sock:  # a free port with nothing listening on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pyworkflow.configure(
        storage=f"sqlite:///{tmp_path}/wf.db", celery_broker=f"redis://127.0.0.1:{port}/0"
    )
    began = time.monotonic()
    run_id = await pyworkflow.start(flow, 1, runtime="celery")
    assert time.monotonic() - began < 30
    storage = pyworkflow.get_storage()
    run = await storage.get_run(run_id)
    await storage.close()
    assert run is not None and run.status == "pending"
