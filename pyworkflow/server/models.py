"""The JSON shapes the API answers with (Pydantic models: they make the OpenAPI schema).

Stored payloads are sent as their JSON trees, as stored: values the serializer tagged
(dates, models) stay tagged, and nothing is decoded into Python objects on the server.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from pyworkflow.engine.flow import queued_for
from pyworkflow.storage.base import run_cursor
from pyworkflow.storage.schemas import Event, RunStatus, WorkflowRun, utcnow


class RunSummary(BaseModel):
    """A run in a listing."""

    run_id: str
    workflow_name: str
    status: RunStatus
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_seconds: float | None = Field(
        None, description="Started (or created) until completed, or until now."
    )
    tags: list[str] = []
    parent_run_id: str | None = None
    queued: str | None = Field(
        None,
        description="What a pending run waits for at a flow-control gate: "
        "'concurrency limit' or 'rate limit' (null: it does not).",
    )

    @classmethod
    def of(cls, run: WorkflowRun) -> RunSummary:
        start = run.started_at or run.created_at
        seconds = round(((run.completed_at or utcnow()) - start).total_seconds(), 6)
        return cls(
            run_id=run.run_id,
            workflow_name=run.workflow_name,
            status=run.status,
            created_at=run.created_at,
            started_at=run.started_at,
            completed_at=run.completed_at,
            duration_seconds=seconds,
            tags=list(run.tags),
            parent_run_id=run.parent_run_id,
            queued=queued_for(run),
        )


class RunPage(BaseModel):
    """One page of runs; pass ``next_cursor`` as ``cursor`` for the next (``null``: last)."""

    runs: list[RunSummary]
    next_cursor: str | None = None

    @classmethod
    def of(cls, runs: list[WorkflowRun], limit: int) -> RunPage:
        more = len(runs) > limit
        shown = runs[:limit]
        return cls(
            runs=[RunSummary.of(r) for r in shown],
            next_cursor=run_cursor(shown[-1]) if more and shown else None,
        )


class RunDetail(RunSummary):
    """Everything stored about a run (its events are separate)."""

    updated_at: datetime
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    result: Any = None
    error: str | None = None
    idempotency_key: str | None = None
    recovery_attempts: int = 0
    max_recovery_attempts: int = 0
    wake_at: datetime | None = None
    deadline_at: datetime | None = None
    max_duration: str | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    cancel_reason: str | None = None
    continued_from_run_id: str | None = None
    continued_to_run_id: str | None = None
    nesting_depth: int = 0
    last_sequence: int = 0
    queue: str | None = Field(
        None, description="Celery queue of the run's workflow messages (null: the default)."
    )

    @classmethod
    def of(cls, run: WorkflowRun) -> RunDetail:
        stored_input = tree(run.input_payload) or {}
        return cls(
            **RunSummary.of(run).model_dump(),
            updated_at=run.updated_at,
            args=list(stored_input.get("args", [])) if isinstance(stored_input, dict) else [],
            kwargs=dict(stored_input.get("kwargs", {})) if isinstance(stored_input, dict) else {},
            result=tree(run.result_payload),
            error=run.error,
            idempotency_key=run.idempotency_key,
            recovery_attempts=run.recovery_attempts,
            max_recovery_attempts=run.max_recovery_attempts,
            wake_at=run.wake_at,
            deadline_at=run.deadline_at,
            max_duration=run.max_duration,
            lease_owner=run.lease_owner,
            lease_expires_at=run.lease_expires_at,
            cancel_requested_at=run.cancel_requested_at,
            cancel_reason=run.cancel_reason,
            continued_from_run_id=run.continued_from_run_id,
            continued_to_run_id=run.continued_to_run_id,
            nesting_depth=run.nesting_depth,
            last_sequence=run.last_sequence,
            queue=run.queue,
        )


class EventOut(BaseModel):
    """One entry of a run's event log."""

    sequence: int
    type: str
    timestamp: datetime
    event_id: str
    data: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls(
            sequence=event.sequence,
            type=str(event.type),
            timestamp=event.timestamp,
            event_id=event.event_id,
            data=event.data,
        )


class EventPage(BaseModel):
    events: list[EventOut]


class RunList(BaseModel):
    runs: list[RunSummary]


def tree(payload: str | None) -> Any:
    """A stored payload as its JSON tree (``None`` stays ``None``; unreadable text is
    returned as it is rather than failing the whole answer)."""
    if payload is None:
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return payload
