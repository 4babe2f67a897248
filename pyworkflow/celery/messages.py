"""Sending and reading pyworkflow's task messages. Messages carry ids; every decision is
re-checked against storage by the task that receives them, so a duplicate is harmless.

Anyone who can write to the broker can send a message, so a received one is validated
(:func:`read_message`) before anything acts on it, and the arguments of a transient run
are decoded as JSON data only: a pickled value is refused whatever ``allow_pickle`` says.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from pyworkflow.core.exceptions import SerializationError
from pyworkflow.engine.context import DispatchedStep
from pyworkflow.serialization import decode

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


def _send(name: str, kwargs: dict[str, Any], **options: Any) -> None:
    from pyworkflow.celery.app import sending_app

    sending_app().send_task(name, kwargs=kwargs, **options)


def send_workflow(
    run_id: str,
    *,
    steal_from: str | None = None,
    recovery: bool = False,
    force: bool = False,
    eta: datetime | None = None,
) -> None:
    """Ask a workflow worker to execute (start, resume, recover) ``run_id``."""
    from pyworkflow.celery.app import RUN_WORKFLOW

    kwargs = {"run_id": run_id, "steal_from": steal_from, "recovery": recovery, "force": force}
    _send(RUN_WORKFLOW, kwargs, eta=eta)


def send_step(step: DispatchedStep, round_owner: str, *, eta: datetime | None = None) -> None:
    """Ask a step worker to run one dispatched step attempt."""
    from pyworkflow.celery.app import RUN_STEP

    kwargs = {"run_id": step.run_id, "op_id": step.op_id, "round_owner": round_owner}
    _send(RUN_STEP, kwargs, eta=eta)


def send_transient(workflow_name: str, run_id: str, payload: str) -> None:
    """Ask a workflow worker to run a transient (``durable=False``) workflow."""
    from pyworkflow.celery.app import RUN_TRANSIENT

    _send(RUN_TRANSIENT, {"workflow_name": workflow_name, "run_id": run_id, "payload": payload})
