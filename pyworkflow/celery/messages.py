"""Sending and reading pyworkflow's task messages. Messages carry ids; every decision is
re-checked against storage by the task that receives them, so a duplicate is harmless.

Each message goes to its workflow's or step's queue (``queue=`` of the decorators; a
run's is stored with it, see :class:`Route`) and carries a readable label for monitors
(Flower, ``celery events``): Celery's ``shadow`` name (``workflow order_pipeline``,
``step charge_card``) and ``argsrepr``/``kwargsrepr`` naming the run (and operation)
ids only, never an argument value.

Anyone who can write to the broker can send a message, so a received one is validated
(:func:`read_message`) before anything acts on it, and the arguments of a transient run
are decoded as JSON data only: a pickled value is refused whatever ``allow_pickle`` says.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pyworkflow.core.config import get_config
from pyworkflow.core.exceptions import SerializationError
from pyworkflow.core.queues import MAX_PRIORITY, validate_queue
from pyworkflow.core.registry import get_step, get_workflow
from pyworkflow.engine.context import DispatchedStep
from pyworkflow.observability import tracing
from pyworkflow.serialization import decode
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import WorkflowRun

M = TypeVar("M", bound="Message")


class Message(BaseModel):
    """A task's keyword arguments as the broker delivered them (exact JSON types)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class WorkflowMessage(Message):
    """``pyworkflow.run_workflow``: execute (start, resume, recover) a run."""

    run_id: str
    steal_from: str | None = None
    recovery: bool = False
    force: bool = False


class StepMessage(Message):
    """``pyworkflow.run_step``: run one dispatched step attempt."""

    run_id: str
    op_id: str
    round_owner: str


class TransientMessage(Message):
    """``pyworkflow.run_transient``: run a ``durable=False`` workflow."""

    workflow_name: str
    run_id: str
    payload: str


class QueryMessage(Message):
    """``pyworkflow.query_run``: answer a run's query, replying to ``reply_to``."""

    run_id: str = Field(min_length=1, max_length=255)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
    args: list[Any]
    reply_to: str = Field(pattern=r"^pyworkflow\.reply\.[0-9a-f]{32}$")
    reply_by: float = 0.0  # Unix time the asker stops waiting (0: no limit)


class TransientArguments(Message):
    """The JSON text in :attr:`TransientMessage.payload`: encoded arguments."""

    args: list[Any]
    kwargs: dict[str, Any]


def read_message(model: type[M], task: str, fields: dict[str, Any]) -> M:
    """Validate a received message's fields.

    Raises:
        SerializationError: the message does not have the task's shape (the message
            names the fields, never their values).
    """
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'message'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise SerializationError(f"refused {task} message: {problems}") from None


def transient_arguments(task: str, payload: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments a ``run_transient`` payload carries, decoded without pickle.

    Raises:
        SerializationError: the payload is not JSON of the expected shape or holds a
            value that cannot be decoded (a pickled value, among others).
    """
    try:
        data = json.loads(payload)
    except ValueError:
        raise SerializationError(f"refused {task} message: its payload is not JSON") from None
    if not isinstance(data, dict):
        raise SerializationError(f"refused {task} message: its payload is not a JSON object")
    parsed = read_message(TransientArguments, task, data)
    try:
        args = decode(parsed.args, allow_pickle=False)
        kwargs = decode(parsed.kwargs, allow_pickle=False)
    except SerializationError as exc:
        raise SerializationError(f"refused {task} message: {exc}") from None
    if not isinstance(kwargs, dict) or not all(isinstance(key, str) for key in kwargs):
        raise SerializationError(f"refused {task} message: kwargs is not a str-keyed mapping")
    return tuple(args), kwargs


@dataclass(frozen=True, slots=True)
class Route:
    """Where a run's workflow messages go, and the name monitors show them under.

    Built from the stored run (:meth:`of`), so a sender without the workflow's code (the
    scheduler, the CLI, the webhook receiver) routes exactly as the starter did.
    """

    workflow_name: str
    queue: str | None = None  # None: the default workflow queue

    @classmethod
    def of(cls, run: WorkflowRun) -> Route:
        return cls(run.workflow_name, run.queue)


async def route_of(storage: StorageBackend, run_id: str) -> Route | None:
    """The route of the stored run ``run_id`` (``None``: no such run, nothing to send)."""
    run = await storage.get_run(run_id)
    return None if run is None else Route.of(run)


async def routes_of(storage: StorageBackend, run_ids: Iterable[str]) -> dict[str, Route]:
    """The routes of the stored runs among ``run_ids`` (one bulk read)."""
    wanted = list(dict.fromkeys(run_ids))
    if not wanted:
        return {}
    return {run.run_id: Route.of(run) for run in await storage.get_runs(wanted)}


# Message headers (not task arguments: a worker of an earlier version ignores unknown
# headers, while it would refuse an unknown argument). Also W3C ``traceparent`` and
# ``tracestate`` where a trace is current (see pyworkflow.observability.tracing).
SENT_AT = "pyworkflow_sent_at"  # when the message was sent (Unix time)
LABEL = "pyworkflow_name"  # the workflow or step it is for


def _send(
    name: str,
    kwargs: dict[str, Any],
    *,
    label: str,
    trace_context: str | None = None,
    priority: int | None = None,
    **options: Any,
) -> None:
    """Send one task message. Its trace headers are ``trace_context``'s, else those of
    the span current here (the thread sending it has a copy of the sender's context)."""
    from pyworkflow.celery.app import sending_app

    headers: dict[str, Any] = {SENT_AT: time.time(), LABEL: label}
    headers.update(tracing.headers(trace_context))
    app = sending_app()
    level = broker_priority(priority, str(app.conf.broker_url or ""))
    if level is not None:
        options["priority"] = level
    app.send_task(name, kwargs=kwargs, headers=headers, **options)


# Brokers kombu serves through its Redis transport: priority level 0 is served first.
_REDIS_SCHEMES = frozenset({"redis", "rediss", "sentinel", "redis+socket"})


def broker_priority(priority: int | None, broker_url: str) -> int | None:
    """The priority a message is sent with for ``priority`` (0-9, higher first; ``None``:
    0), or ``None`` when ``celery_priorities`` is off (nothing is sent).

    RabbitMQ reads it as given (higher first; a message without one counts as 0). The
    Redis transport serves its level 0 first and files a message without a priority
    there, so on Redis every message carries ``9 - priority``: a message with none
    goes last, as on RabbitMQ.
    """
    if not get_config().celery_priorities:
        return None
    wanted = priority or 0
    scheme = broker_url.partition("://")[0].lower()
    return MAX_PRIORITY - wanted if scheme in _REDIS_SCHEMES else wanted


def _workflow_priority(workflow_name: str) -> int | None:
    # Looked up here (a sender without the code sends the lowest priority).
    definition = get_workflow(workflow_name)
    return None if definition is None else definition.priority


def _step_priority(step_name: str) -> int | None:
    definition = get_step(step_name)
    return None if definition is None else definition.priority


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the headers of the message being executed say (validated: broker input)."""

    name: str  # the workflow or step, "unknown" when the header is missing or malformed
    waited: float | None  # seconds from sending (or the end of its countdown) to now
    # The sender's trace context (stored form), if the headers carry a well-formed one.
    trace_context: str | None = None


def current_delivery() -> Delivery:
    """The headers of the task message this worker process is executing."""
    from celery import current_task

    request = getattr(current_task, "request", None)
    sent = _header(request, SENT_AT)
    label = _header(request, LABEL)
    name = label if isinstance(label, str) and 0 < len(label) <= 200 else "unknown"
    trace = tracing.trace_context_of(
        _header(request, tracing.TRACEPARENT), _header(request, tracing.TRACESTATE)
    )
    if not isinstance(sent, int | float) or isinstance(sent, bool) or not math.isfinite(sent):
        return Delivery(name, None, trace)
    start = float(sent)
    eta = getattr(request, "eta", None)
    if isinstance(eta, str):
        with contextlib.suppress(ValueError):
            start = max(start, datetime.fromisoformat(eta).timestamp())
    waited = time.time() - start
    return Delivery(name, waited if 0 <= waited < 366 * 86400 else None, trace)


def _header(request: Any, key: str) -> Any:
    headers = getattr(request, "headers", None)
    if isinstance(headers, dict) and key in headers:
        return headers[key]
    return getattr(request, key, None)


def _label(kind: str, name: str) -> str:
    # The task name Flower, ``celery events`` and ``celery inspect`` show (Celery's
    # ``shadow``); the task that runs is still chosen by the real name.
    return f"{kind} {name}"[:200]


def send_workflow(
    run_id: str,
    *,
    route: Route,
    steal_from: str | None = None,
    recovery: bool = False,
    force: bool = False,
    eta: datetime | None = None,
) -> None:
    """Ask a workflow worker to execute (start, resume, recover) ``run_id``, through the
    run's queue; monitors show it as ``workflow <name>`` with the run id only."""
    from pyworkflow.celery.app import RUN_WORKFLOW, WORKFLOWS_QUEUE

    kwargs = {"run_id": run_id, "steal_from": steal_from, "recovery": recovery, "force": force}
    _send(
        RUN_WORKFLOW,
        kwargs,
        label=route.workflow_name,
        priority=_workflow_priority(route.workflow_name),
        eta=eta,
        queue=route.queue or WORKFLOWS_QUEUE,
        shadow=_label("workflow", route.workflow_name),
        argsrepr="()",
        kwargsrepr=repr({"run_id": run_id}),
    )


def send_step(step: DispatchedStep, round_owner: str, *, eta: datetime | None = None) -> None:
    """Ask a step worker to run one dispatched step attempt, through the step's queue;
    monitors show it as ``step <name>`` with the run and operation ids only. Its trace
    headers are the dispatching execution's (the step's span is a child of it)."""
    from pyworkflow.celery.app import RUN_STEP, STEPS_QUEUE

    kwargs = {"run_id": step.run_id, "op_id": step.op_id, "round_owner": round_owner}
    _send(
        RUN_STEP,
        kwargs,
        label=step.step_name or step.op_id,
        trace_context=step.trace_context,
        priority=_step_priority(step.step_name),
        eta=eta,
        queue=step.queue or STEPS_QUEUE,
        shadow=_label("step", step.step_name or step.op_id),
        argsrepr="()",
        kwargsrepr=repr({"run_id": step.run_id, "op_id": step.op_id}),
    )


def send_transient(
    workflow_name: str, run_id: str, payload: str, *, queue: str | None = None
) -> None:
    """Ask a workflow worker to run a transient (``durable=False``) workflow. Its
    arguments travel in the message; monitors are shown the run id only."""
    from pyworkflow.celery.app import RUN_TRANSIENT, WORKFLOWS_QUEUE

    _send(
        RUN_TRANSIENT,
        {"workflow_name": workflow_name, "run_id": run_id, "payload": payload},
        label=workflow_name,
        priority=_workflow_priority(workflow_name),
        queue=queue or WORKFLOWS_QUEUE,
        shadow=_label("workflow", workflow_name),
        argsrepr="()",
        kwargsrepr=repr({"run_id": run_id}),
    )


def delivered_queue() -> str | None:
    """The queue of the task message this worker process is executing (``None``: not in
    a task, or the broker did not say): a message sent again for later goes back there.
    The name comes from the broker, so it is used only if it is a valid queue name."""
    from celery import current_task

    info = getattr(getattr(current_task, "request", None), "delivery_info", None)
    key = info.get("routing_key") if isinstance(info, dict) else None
    try:
        return validate_queue(key, "delivered message") if isinstance(key, str) else None
    except ValueError:
        return None
