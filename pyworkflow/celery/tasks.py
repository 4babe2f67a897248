"""pyworkflow's Celery tasks: thin shells that run the engine on the process's loop.

Each validates its message first (:mod:`.messages`): a malformed one is refused with a
``SerializationError`` before anything runs.
"""

from __future__ import annotations

import time
from typing import Any

from celery.signals import (
    celeryd_after_setup,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
    worker_shutting_down,
)

from pyworkflow.celery import metrics_server, shutdown, worker
from pyworkflow.celery.app import (
    FIRE_TIMERS,
    QUERY_RUN,
    RUN_STEP,
    RUN_TRANSIENT,
    RUN_WORKFLOW,
    ack_timeout_warnings,
    app,
)
from pyworkflow.celery.messages import (
    Delivery,
    QueryMessage,
    StepMessage,
    TransientMessage,
    WorkflowMessage,
    current_delivery,
    read_message,
)
from pyworkflow.celery.queries import publish_reply
from pyworkflow.celery.scheduler import TimerSweeper
from pyworkflow.core.config import get_config
from pyworkflow.observability import lifecycle
from pyworkflow.utils.log import logger

_sweeper: TimerSweeper | None = None
_sweeps = 0
# The worker (Celery's WorkController) of this main process, once set up.
_worker: Any = None


def _waited(kind: str) -> Delivery:
    """Report how long this task's message waited in the broker (queue lag); what its
    headers said."""
    delivery = current_delivery()
    if delivery.waited is not None:
        lifecycle.message_waited(kind, delivery.name, delivery.waited)
    return delivery


@app.task(name=RUN_WORKFLOW)
def run_workflow(
    run_id: str, steal_from: str | None = None, recovery: bool = False, force: bool = False
) -> None:
    """Start, resume or recover a run (its lease decides whether this delivery acts)."""
    fields = {"run_id": run_id, "steal_from": steal_from, "recovery": recovery, "force": force}
    msg = read_message(WorkflowMessage, RUN_WORKFLOW, fields)
    _waited("workflow")
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
    trace = _waited("step").trace_context
    proc = worker.current()
    proc.run(worker.execute_step(msg.run_id, msg.op_id, msg.round_owner, trace_context=trace))


@app.task(name=RUN_TRANSIENT)
def run_transient(workflow_name: str, run_id: str, payload: str) -> None:
    """Run a ``durable=False`` workflow in this process."""
    fields = {"workflow_name": workflow_name, "run_id": run_id, "payload": payload}
    msg = read_message(TransientMessage, RUN_TRANSIENT, fields)
    trace = _waited("workflow").trace_context
    proc = worker.current()
    proc.run(worker.execute_transient(msg.workflow_name, msg.run_id, msg.payload, trace))


@app.task(name=QUERY_RUN)
def query_run(
    run_id: str, name: str, args: list[Any], reply_to: str, reply_by: float = 0.0
) -> None:
    """Answer a run's query from its replayed state; reply to the asker's queue unless it
    has stopped waiting (a reply nobody reads would stay behind on Redis)."""
    fields = {
        "run_id": run_id,
        "name": name,
        "args": args,
        "reply_to": reply_to,
        "reply_by": reply_by,
    }
    msg = read_message(QueryMessage, QUERY_RUN, fields)
    proc = worker.current()
    reply = proc.run(worker.answer_query_here(msg.run_id, msg.name, msg.args))
    if not msg.reply_by or time.time() < msg.reply_by:
        publish_reply(msg.reply_to, reply)


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


@worker_init.connect
def _set_up_worker(**_: Any) -> None:
    # In the main process, after the workflow modules were imported (app.py's
    # import_modules hook), before the pool forks: steps allowed to outrun the broker's
    # ack timeout; metrics every pool process counts (and serves, with metrics_port).
    for warning in ack_timeout_warnings():
        logger.warning(warning)
    metrics_server.start_worker_metrics(get_config().metrics_port)


@worker_shutdown.connect
def _tear_down_worker(**_: Any) -> None:
    metrics_server.stop_worker_metrics()


@celeryd_after_setup.connect
def _remember_queues(instance: Any = None, **_: Any) -> None:
    # In the main process: the queues it consumes, shown in the worker registry.
    global _worker
    _worker = instance
    queues = getattr(getattr(getattr(instance, "app", None), "amqp", None), "queues", None)
    consumed = getattr(queues, "consume_from", None) or {}
    worker.consumed_queues = tuple(sorted(consumed))


@worker_process_init.connect
def _fresh_process(**_: Any) -> None:
    shutdown.pool_process_started()
    worker.current()


@worker_shutting_down.connect
def _warm_shutdown(how: str = "", **_: Any) -> None:
    # In the main process: running tasks get the grace to end, then are handed back
    # (a cold shutdown terminates the pool: each process hands back at once).
    if how == "Warm" and _worker is not None:
        shutdown.ask_pool_to_finish(_worker)


@task_prerun.connect
def _task_started(task: Any = None, kwargs: dict[str, Any] | None = None, **_: Any) -> None:
    shutdown.task_started(getattr(task, "name", "?"), kwargs or {})


@task_postrun.connect
def _task_ended(**_: Any) -> None:
    shutdown.task_ended()


@worker_process_shutdown.connect
def _close_process(**_: Any) -> None:
    proc = worker.current()
    proc.close()
