"""The Celery application workers run: ``celery -A pyworkflow.celery.app worker``.

Built from pyworkflow's configuration (``PYWORKFLOW_*`` environment variables,
``pyworkflow.config.yaml``, or ``configure()`` before this module is imported): the
broker (``celery_broker``, default Redis on localhost), the storage and the workflow
modules workers import. Messages carry ids only; all state lives in storage.

Broker settings that keep a long task from being handed out twice follow one option,
``celery_ack_timeout`` (the longest a worker may hold a message unacknowledged): Redis's
``visibility_timeout`` and, on RabbitMQ, the ``x-consumer-timeout`` consumer argument of
every queue, routed ones included (honoured by RabbitMQ 3.11.15 and later, ignored by
older servers, which use their ``consumer_timeout`` setting). See docs/deployment.md, "Brokers".
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.app.amqp import Queues as AmqpQueues
from celery.signals import after_setup_logger, import_modules
from kombu import Queue  # type: ignore[attr-defined]

from pyworkflow.core.config import discover_workflows, get_config
from pyworkflow.core.exceptions import ConfigurationError
from pyworkflow.core.queues import MAX_PRIORITY
from pyworkflow.core.queues import SCHEDULES_QUEUE as SCHEDULES_QUEUE
from pyworkflow.core.queues import STEPS_QUEUE as STEPS_QUEUE
from pyworkflow.core.queues import WORKFLOWS_QUEUE as WORKFLOWS_QUEUE
from pyworkflow.utils.log import set_log_level

# Separate queues so each kind of work can get its own workers (``-Q``).
QUEUES = (WORKFLOWS_QUEUE, STEPS_QUEUE, SCHEDULES_QUEUE)

DEFAULT_BROKER = "redis://localhost:6379/0"

RUN_WORKFLOW = "pyworkflow.run_workflow"
RUN_STEP = "pyworkflow.run_step"
RUN_TRANSIENT = "pyworkflow.run_transient"
FIRE_TIMERS = "pyworkflow.fire_timers"
QUERY_RUN = "pyworkflow.query_run"


def queues(ack_timeout: float) -> list[Queue]:
    """pyworkflow's queues, consumed with ``ack_timeout`` as RabbitMQ's per-consumer
    acknowledgement timeout (a consumer argument, not a queue argument: queues declared
    by earlier versions need no redeclaration; other brokers ignore it)."""
    timeout_ms = int(ack_timeout * 1000)
    return [
        Queue(name, consumer_arguments={"x-consumer-timeout": timeout_ms})  # type: ignore[no-untyped-call]
        for name in QUEUES
    ]


def _missing_queues_with(ack_timeout: float) -> type[AmqpQueues]:
    """Celery's queue table, where a queue named only by routing (``-Q gpu``, a message
    sent to ``queue="gpu"``) gets the same acknowledgement timeout as pyworkflow's own."""
    timeout_ms = int(ack_timeout * 1000)

    class RoutedQueues(AmqpQueues):  # type: ignore[misc]
        def new_missing(self, name: str) -> Queue:
            queue: Queue = super().new_missing(name)
            queue.consumer_arguments = {"x-consumer-timeout": timeout_ms}  # type: ignore[attr-defined]
            return queue

    return RoutedQueues


def _transport_options(ack_timeout: float, priorities: bool) -> dict[str, Any]:
    options: dict[str, Any] = {"visibility_timeout": ack_timeout}
    if priorities:
        # Redis keeps a list per priority level; ten levels instead of kombu's four.
        options["priority_steps"] = list(range(MAX_PRIORITY + 1))
    return options


def create_app() -> Celery:
    """A Celery app configured from pyworkflow's current configuration."""
    cfg = get_config()
    celery_app = Celery(
        "pyworkflow",
        broker=cfg.celery_broker or DEFAULT_BROKER,
        backend=cfg.celery_result_backend,
        include=["pyworkflow.celery.tasks"],
    )
    celery_app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # A task is acknowledged only after it ran, and handed back to the broker if the
        # process running it dies: a killed worker loses no message.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Redis hands a message that stayed unacknowledged this long to another worker:
        # it must outlast the longest task and the countdown window (validated in config).
        broker_transport_options=_transport_options(cfg.celery_ack_timeout, cfg.celery_priorities),
        # RabbitMQ honours message priorities only on queues declared with a maximum.
        task_queue_max_priority=MAX_PRIORITY if cfg.celery_priorities else None,
        task_default_queue=WORKFLOWS_QUEUE,
        task_queues=queues(cfg.celery_ack_timeout),
        # Routing (``@workflow(queue=...)``, ``@step(queue=...)``): a message sent to a
        # queue not listed above declares it (so RabbitMQ keeps it until a worker with
        # ``-Q name`` comes), and a worker started with ``-Q name`` consumes it. The
        # routes below are defaults: the queue a message is sent with wins.
        task_create_missing_queues=True,
        task_routes={
            RUN_WORKFLOW: {"queue": WORKFLOWS_QUEUE},
            RUN_TRANSIENT: {"queue": WORKFLOWS_QUEUE},
            QUERY_RUN: {"queue": WORKFLOWS_QUEUE},
            RUN_STEP: {"queue": STEPS_QUEUE},
            FIRE_TIMERS: {"queue": SCHEDULES_QUEUE},
        },
        # `celery beat` sends the timer task; whichever worker gets it claims due timers
        # from storage (atomically, so several beats or schedulers never double-fire).
        beat_schedule={
            "pyworkflow-fire-timers": {
                "task": FIRE_TIMERS,
                "schedule": cfg.timer_poll_interval,
                "options": {"expires": max(5.0, cfg.timer_poll_interval * 5)},
            }
        },
        broker_connection_retry_on_startup=True,
        enable_utc=True,
        timezone="UTC",
        worker_hijack_root_logger=False,
    )
    celery_app.amqp.queues_cls = _missing_queues_with(cfg.celery_ack_timeout)
    return celery_app


app = create_app()


def _import_workflows(**_: Any) -> None:
    # Sent when a worker or beat starts (also `celery shell`), in the main process before
    # it forks or consumes anything: pool processes inherit the registered workflows. The
    # modules are found in the project directory (Celery's own cwd entry is gone by now).
    # A module that cannot be imported ends the process here, not every task later;
    # SystemExit prints the one line instead of a traceback.
    try:
        discover_workflows()
    except ConfigurationError as exc:
        raise SystemExit(f"error: {exc}") from exc


import_modules.connect(_import_workflows, sender=app)


def _follow_celery_loglevel(loglevel: int | str | None = None, **_: Any) -> None:
    # ``celery worker|beat --loglevel=info`` (and ``pyworkflow worker``, default info):
    # pyworkflow's own lines from that level up, its runs' lifecycle lines included.
    if loglevel is not None:
        set_log_level(loglevel)


after_setup_logger.connect(_follow_celery_loglevel)


_senders: dict[str, Celery] = {}


def sending_app() -> Celery:
    """The app to send messages with: ``app``, unless the configured broker or the
    ``celery_priorities`` setting changed after this module was imported (a later
    ``configure()``); then an app for those."""
    cfg = get_config()
    broker = cfg.celery_broker or DEFAULT_BROKER
    if app.conf.broker_url == broker and _has_priorities(app) == cfg.celery_priorities:
        return app
    key = f"{broker}|priorities={cfg.celery_priorities}"
    sender = _senders.get(key)
    if sender is None:
        sender = _senders[key] = create_app()
    return sender


def _has_priorities(celery_app: Celery) -> bool:
    return celery_app.conf.task_queue_max_priority is not None


def ack_timeout_warnings() -> list[str]:
    """What is wrong with ``celery_ack_timeout`` for the registered steps: a step whose
    ``timeout`` allows it to run longer (its message would be handed to a second worker
    while the first still runs it: Redis redelivers it, RabbitMQ closes the channel)."""
    from pyworkflow.core.registry import list_steps

    limit = get_config().celery_ack_timeout
    return [
        f"step {name!r} may run for {definition.timeout:g} s, longer than "
        f"celery_ack_timeout ({limit:g} s): raise celery_ack_timeout above the longest "
        "step, or the broker hands its message to a second worker while it runs"
        for name, definition in sorted(list_steps().items())
        if definition.timeout is not None and definition.timeout >= limit
    ]
