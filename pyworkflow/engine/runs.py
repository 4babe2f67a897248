"""What a new run is made of: the request ``start()`` (or a parent, or a continuation)
makes, and the run record plus ``workflow.started`` event built from it."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pyworkflow.core.config import get_config
from pyworkflow.core.workflow import WorkflowDefinition
from pyworkflow.engine import events, flow
from pyworkflow.observability import tracing
from pyworkflow.serialization import encode
from pyworkflow.storage.schemas import Event, EventType, RunStatus, WorkflowRun, utcnow
from pyworkflow.utils.clock import timer_now


def derived_run_id(run_id: str, purpose: str) -> str:
    """A run id determined by its origin (e.g. the continuation of ``run_id``), so that a
    crash between creating the run and recording it cannot create it twice."""
    digest = hashlib.sha256(f"{run_id}\0{purpose}".encode()).hexdigest()[:32]
    return f"run_{digest}"


@dataclass(slots=True)
class RunRequest:
    """Everything ``start()`` was asked for, validated and encoded."""

    definition: WorkflowDefinition
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    run_id: str | None = None
    idempotency_key: str | None = None
    tags: list[str] | None = None
    parent_run_id: str | None = None
    nesting_depth: int = 0
    continued_from_run_id: str | None = None
    schedule: dict[str, str] | None = None  # {"schedule_id", "scheduled_time"} of its tick
    # A retry of a stored run: its arguments exactly as stored (the ``args`` list and
    # ``kwargs`` dict trees, so values are not decoded and re-encoded) and its run id.
    encoded_input: tuple[list[Any], dict[str, Any]] | None = None
    retry_of: str | None = None
    # The broker queue of the run's workflow messages; None: the definition's.
    queue: str | None = None
    # Signal-with-start: [{"name", "payload"}] the run is created having received.
    signals: list[dict[str, Any]] | None = None


def build_run(
    request: RunRequest, *, owner: str | None, lease_ttl: float
) -> tuple[WorkflowRun, Event]:
    """The run record and its ``workflow.started`` event (arguments encoded, so a value that
    cannot be stored fails here, before anything is written)."""
    definition = request.definition
    where = f"arguments of workflow {definition.name!r}"
    if request.encoded_input is not None:
        args_tree, kwargs_tree = request.encoded_input
    else:
        args_tree = encode(list(request.args), where=where)
        kwargs_tree = encode(dict(request.kwargs), where=where)
    now = utcnow()
    run_id = request.run_id or f"run_{uuid.uuid4().hex}"
    tags = list(request.tags if request.tags is not None else definition.tags)
    cfg = get_config()
    run = WorkflowRun(
        run_id=run_id,
        workflow_name=definition.name,
        status=RunStatus.RUNNING if owner else RunStatus.PENDING,
        created_at=now,
        updated_at=now,
        started_at=now,
        input_payload=json.dumps({"args": args_tree, "kwargs": kwargs_tree}),
        idempotency_key=request.idempotency_key,
        max_duration=definition.max_duration,
        deadline_at=(  # a timer: measured on the timer clock
            timer_now() + timedelta(seconds=definition.max_duration_seconds)
            if definition.max_duration_seconds
            else None
        ),
        tags=tags,
        max_recovery_attempts=(
            definition.max_recovery_attempts
            if definition.max_recovery_attempts is not None
            else cfg.default_max_recovery_attempts
        ),
        recover_on_worker_loss=definition.recover_on_worker_loss is not False,
        parent_run_id=request.parent_run_id,
        nesting_depth=request.nesting_depth,
        continued_from_run_id=request.continued_from_run_id,
        lease_owner=owner,
        lease_expires_at=now + timedelta(seconds=lease_ttl) if owner else None,
        last_sequence=1,
        queue=request.queue or definition.queue,
        # The span current here (the caller's; a parent run's attempt), which every
        # attempt of the run continues, wherever and whenever it executes.
        trace_context=tracing.new_run_trace_context(run_id, definition.name),
    )
    started = Event(
        run_id=run_id,
        type=EventType.WORKFLOW_STARTED,
        data=events.workflow_started(
            definition.name,
            args_tree,
            kwargs_tree,
            tags,
            schedule=request.schedule,
            retry_of=request.retry_of,
            queue=request.queue or definition.queue,
            signals=request.signals,
            concurrency_key=(
                None  # a retry of a stored run: computed from its decoded arguments
                if request.encoded_input is not None
                else flow.key_of(definition, request.args, request.kwargs)
            ),
        ),
        sequence=1,
        timestamp=now,
    )
    return run, started
