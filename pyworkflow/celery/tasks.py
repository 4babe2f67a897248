"""pyworkflow's Celery tasks: thin shells that run the engine on the process's loop.

Each validates its message first (:mod:`.messages`): a malformed one is refused with a
``SerializationError`` before anything runs.
"""

from __future__ import annotations

from typing import Any

from celery.signals import celeryd_after_setup, worker_process_init, worker_process_shutdown

from pyworkflow.celery import worker
from pyworkflow.celery.app import FIRE_TIMERS, RUN_STEP, RUN_TRANSIENT, RUN_WORKFLOW, app
from pyworkflow.celery.messages import (
    StepMessage,
    TransientMessage,
    WorkflowMessage,
    read_message,
)
from pyworkflow.celery.scheduler import TimerSweeper

_sweeper: TimerSweeper | None = None
_sweeps = 0


@app.task(name=RUN_WORKFLOW)
def run_workflow(
    run_id: str, steal_from: str | None = None, recovery: bool = False, force: bool = False
) -> None:
    """Start, resume or recover a run (its lease decides whether this delivery acts)."""
    fields = {"run_id": run_id, "steal_from": steal_from, "recovery": recovery, "force": force}
    msg = read_message(WorkflowMessage, RUN_WORKFLOW, fields)
    proc = worker.current()
    proc.run(
        worker.execute_workflow(
            msg.run_id, steal_from=msg.steal_from, recovery=msg.recovery, force=msg.force
        )
    )


@app.task(name=RUN_STEP)
def run_step(run_id: str, op_id: str, round_owner: str) -> None:
    """Run one dispatched step attempt and record its outcome."""
    fields = {"run_id": run_id, "op_id": op_id, "round_owner": round_owner}
    msg = read_message(StepMessage, RUN_STEP, fields)
    proc = worker.current()
    proc.run(worker.execute_step(msg.run_id, msg.op_id, msg.round_owner))


@app.task(name=RUN_TRANSIENT)
def run_transient(workflow_name: str, run_id: str, payload: str) -> None:
    """Run a ``durable=False`` workflow in this process."""
    fields = {"workflow_name": workflow_name, "run_id": run_id, "payload": payload}
    msg = read_message(TransientMessage, RUN_TRANSIENT, fields)
    proc = worker.current()
    proc.run(worker.execute_transient(msg.workflow_name, msg.run_id, msg.payload))


@app.task(name=FIRE_TIMERS)
def fire_timers() -> None:
    """Beat's periodic task: fire due timers, recover runs of dead workers."""
    global _sweeper, _sweeps
    proc = worker.current()

    async def sweep() -> None:
        global _sweeper
        storage = await proc.storage()
        if _sweeper is None or _sweeper.storage is not storage:
            _sweeper = TimerSweeper(storage)
        await _sweeper.tick(full=_sweeps % 5 == 0)

    proc.run(sweep())
    _sweeps += 1


@celeryd_after_setup.connect
def _remember_queues(instance: Any = None, **_: Any) -> None:
    # In the main process: the queues it consumes, shown in the worker registry.
    queues = getattr(getattr(getattr(instance, "app", None), "amqp", None), "queues", None)
    consumed = getattr(queues, "consume_from", None) or {}
    worker.consumed_queues = tuple(sorted(consumed))


@worker_process_init.connect
def _fresh_process(**_: Any) -> None:
    worker.current()


@worker_process_shutdown.connect
def _close_process(**_: Any) -> None:
    proc = worker.current()
    proc.close()
