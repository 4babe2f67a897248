"""Sending pyworkflow's task messages. Messages carry ids; every decision is re-checked
against storage by the task that receives them, so a duplicate is harmless."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pyworkflow.engine.context import DispatchedStep


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
