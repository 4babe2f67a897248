"""What a dispatched step costs on Celery: one broker message and one storage write for
its outcome; the task recording a round's last step goes on with the run itself when
its worker also runs workflows (no second message, no lease write, no read of the log).

The task bodies run in this process on a real SQLite database, with storage calls
counted; the broker is replaced by a list of sent messages (which the test delivers in
order), because what is counted is what the task bodies send and write, not Celery's
transport (tests/celery runs the same workflows on real workers).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

import pyworkflow
from pyworkflow import step, workflow
from pyworkflow.celery import worker
from pyworkflow.celery.app import STEPS_QUEUE, WORKFLOWS_QUEUE
from pyworkflow.celery.messages import Route
from pyworkflow.engine.owners import QUEUED_OWNER
from pyworkflow.engine.runs import RunRequest, build_run

COUNTED = ("append_events", "acquire_lease", "renew_leases", "get_events", "get_run")


@step(name="mb_add")
async def add(x: int, y: int) -> int:
    return x + y


@workflow(name="mb_flow")
async def flow(x: int) -> int:
    x = await add(x, 1)
    x = await add(x, 10)
    pair = await asyncio.gather(add(x, 100), add(x, 1000))  # one round of two steps
    return await add(pair[0], pair[1])


Message = tuple[str, dict[str, Any]]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Message]]:
    messages: list[Message] = []

    def send_workflow(run_id: str, **options: Any) -> None:
        messages.append(("workflow", {"run_id": run_id, **options}))

    def send_step(step_: Any, round_owner: str, *, eta: datetime | None = None) -> None:
        body = {"run_id": step_.run_id, "op_id": step_.op_id, "round_owner": round_owner}
        messages.append(("step", body))

    monkeypatch.setattr(worker, "send_workflow", send_workflow)
    monkeypatch.setattr(worker, "send_step", send_step)
    yield messages
    worker.current().loop.close()  # the task shells' loop: unused when called from here
    worker._process = None


def _count_calls(storage: Any, counts: Counter[str]) -> None:
    for name in COUNTED:
        original = getattr(storage, name)

        async def counted(*args: Any, _name: str = name, _call: Any = original, **kw: Any) -> Any:
            counts[_name] += 1
            return await _call(*args, **kw)

        setattr(storage, name, counted)


@pytest.mark.parametrize("runs_workflows", [True, False], ids=["steps+workflows", "steps only"])
async def test_a_dispatched_step_costs_one_message_and_one_write(
    sent: list[Message], tmp_path: Any, monkeypatch: pytest.MonkeyPatch, runs_workflows: bool
) -> None:
    queues = (STEPS_QUEUE, WORKFLOWS_QUEUE) if runs_workflows else (STEPS_QUEUE,)
    monkeypatch.setattr(worker, "consumed_queues", queues)
    pyworkflow.configure(storage=f"sqlite:///{tmp_path}/wf.db")
    storage = await worker.current().storage()
    run, started = build_run(
        RunRequest(definition=flow.__workflow__, args=(1,), kwargs={}), owner=None, lease_ttl=0
    )
    run.lease_owner = QUEUED_OWNER
    await storage.create_run(run, [started])
    sent.append(("workflow", {"run_id": run.run_id, "steal_from": QUEUED_OWNER}))

    counts: Counter[str] = Counter()
    _count_calls(storage, counts)
    delivered: list[tuple[str, Counter[str]]] = []
    resumed: list[Message] = []  # what the tasks sent
    while sent:
        kind, body = sent.pop(0)
        resumed.append((kind, body))
        counts.clear()
        if kind == "workflow":
            await worker.execute_workflow(
                body["run_id"], steal_from=body.get("steal_from"), recovery=False, force=False
            )
        else:
            await worker.execute_step(body["run_id"], body["op_id"], body["round_owner"])
        delivered.append((kind, Counter(counts)))

    stored = await storage.get_run(run.run_id)
    assert (stored.status, stored.result_payload) == ("completed", str((12 + 100) + (12 + 1000)))
    kinds = [kind for kind, _ in delivered]
    steps = [c for kind, c in delivered if kind == "step"]
    assert len(steps) == 5  # one message per dispatched step
    if runs_workflows:
        # The start, then the steps: the last step of each round resumed the run in its
        # own task (4 rounds; the gather's first finisher only records its outcome).
        assert kinds == ["workflow"] + ["step"] * 5
        for counted in steps:
            assert counted["acquire_lease"] == 0 and counted["renew_leases"] == 0
            assert counted["get_events"] == 0  # the log was in memory: no replay from storage
        # Each step: its outcome (one write); a round's last step: + the run's next write.
        assert sorted(c["append_events"] for c in steps) == [1, 2, 2, 2, 2]
    else:
        # A step worker that does not run workflows sends one message per round.
        assert kinds == ["workflow", "step", "workflow", "step", "workflow"] + [
            "step",
            "step",
            "workflow",
            "step",
            "workflow",
        ]
        for counted in steps:
            assert counted["append_events"] == 1  # the outcome and the lease hand-over
            assert counted["acquire_lease"] == 0 and counted["renew_leases"] == 0
            assert counted["get_run"] == 1  # routed from that read: no second one
        routes = [body["route"] for kind, body in resumed[1:] if kind == "workflow"]
        assert routes == [Route("mb_flow", None)] * 4  # the run's name and queue
    await storage.close()
