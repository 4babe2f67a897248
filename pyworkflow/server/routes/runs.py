"""``/api/runs``: list and read runs, their events, children and chains; signal, cancel,
retry, and start runs by workflow name."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from pyworkflow.api import cancel_workflow, get_workflow_chain, retry_workflow, start_by_name
from pyworkflow.core.config import get_config
from pyworkflow.core.exceptions import QueryFailedError, RunNotFoundError, WorkflowNotFoundError
from pyworkflow.core.queues import QUEUE_PATTERN
from pyworkflow.engine.diagnosis import diagnose
from pyworkflow.queries import query_workflow
from pyworkflow.server.deps import Admin, Reader, Storage
from pyworkflow.server.models import (
    EventOut,
    EventPage,
    RunDetail,
    RunList,
    RunPage,
    RunSummary,
)
from pyworkflow.signals import send_signal
from pyworkflow.storage.base import RunQuery, StorageBackend, parse_cursor
from pyworkflow.storage.schemas import RunStatus, WorkflowRun, utcnow

router = APIRouter(prefix="/api", tags=["runs"])

MAX_PAGE = 500
# Sequence numbers are 64-bit integers in storage; a larger one cannot even be a query.
MAX_SEQUENCE = 2**63 - 1


class RunFilters(BaseModel):
    """The filters of ``GET /api/runs`` (also used by the dashboard's runs page)."""

    status: RunStatus | None = None
    workflow: str | None = None
    tag: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    run_id_prefix: str | None = None
    idempotency_key: str | None = None

    def query(self, limit: int, cursor: str | None) -> RunQuery:
        return RunQuery(
            status=self.status,
            workflow_name=self.workflow or None,
            tag=self.tag or None,
            created_after=_utc(self.since),
            created_before=_utc(self.until),
            run_id_prefix=self.run_id_prefix or None,
            limit=limit,
            cursor=cursor,
        )


async def find_runs(
    storage: StorageBackend, filters: RunFilters, limit: int, cursor: str | None
) -> RunPage:
    """One page of runs matching ``filters`` (one storage query; an idempotency key is
    an exact lookup)."""
    _check_cursor(cursor)
    query = filters.query(limit + 1, cursor)  # one more tells whether a next page exists
    if filters.idempotency_key:
        run = await storage.get_run_by_idempotency_key(filters.idempotency_key)
        runs = query.page([run] if run is not None else [])
    else:
        runs = await storage.query_runs(query)
    return RunPage.of(runs, limit)


@router.get("/runs", response_model=RunPage, summary="List runs, newest first")
async def list_runs(
    storage: Storage,
    _: Reader,
    status: RunStatus | None = None,
    workflow: str | None = Query(None, description="Exact workflow name."),
    tag: str | None = None,
    since: datetime | None = Query(None, description="Created at or after (ISO 8601)."),
    until: datetime | None = Query(None, description="Created before (ISO 8601)."),
    run_id_prefix: str | None = Query(None, max_length=200),
    idempotency_key: str | None = Query(None, max_length=500),
    limit: int = Query(50, ge=1, le=MAX_PAGE),
    cursor: str | None = Query(None, max_length=300, description="next_cursor of a page."),
) -> RunPage:
    filters = RunFilters(
        status=status,
        workflow=workflow,
        tag=tag,
        since=since,
        until=until,
        run_id_prefix=run_id_prefix,
        idempotency_key=idempotency_key,
    )
    return await find_runs(storage, filters, limit, cursor)


async def run_or_404(storage: StorageBackend, run_id: str) -> WorkflowRun:
    run = await storage.get_run(run_id)
    if run is None:
        raise HTTPException(404, f"no run with id {run_id!r}")
    return run


@router.get("/runs/{run_id}", response_model=RunDetail, summary="One run")
async def get_run(run_id: str, storage: Storage, _: Reader) -> RunDetail:
    return RunDetail.of(await run_or_404(storage, run_id))


@router.get("/runs/{run_id}/events", response_model=EventPage, summary="A run's event log")
async def get_events(
    run_id: str,
    storage: Storage,
    _: Reader,
    after: int = Query(0, ge=0, le=MAX_SEQUENCE, description="Only events with a higher sequence."),
) -> EventPage:
    await run_or_404(storage, run_id)
    events = await storage.get_events(run_id, after_sequence=after)
    return EventPage(events=[EventOut.of(e) for e in events])


@router.get("/runs/{run_id}/children", response_model=RunPage, summary="Child runs")
async def get_children(
    run_id: str,
    storage: Storage,
    _: Reader,
    limit: int = Query(100, ge=1, le=MAX_PAGE),
    cursor: str | None = Query(None, max_length=300),
) -> RunPage:
    await run_or_404(storage, run_id)
    _check_cursor(cursor)
    children = await storage.get_children(run_id, limit=limit + 1, cursor=cursor)
    return RunPage.of(children, limit)


@router.get("/runs/{run_id}/chain", response_model=RunList, summary="continue_as_new chain")
async def get_chain(run_id: str, storage: Storage, _: Reader) -> RunList:
    chain = await get_workflow_chain(run_id, storage=storage)
    return RunList(runs=[RunSummary.of(r) for r in chain])


class CauseOut(BaseModel):
    kind: str = Field(
        description="timer, retry, hook, signal, child, overdue, queued, step, "
        "no_consumer, no_worker, dead_owner, lease_expired, executing, cancel, nondeterminism, "
        "failed, ended, corrupt"
    )
    message: str
    since: datetime | None = None
    until: datetime | None = None
    fix: str | None = Field(None, description="The command that would move the run.")
    stuck: bool = Field(description="The run should be moving and is not.")


class WhyAnswer(BaseModel):
    run_id: str
    workflow_name: str
    status: RunStatus
    stuck: bool
    causes: list[CauseOut]


@router.get("/runs/{run_id}/why", response_model=WhyAnswer, summary="Why is the run not moving")
async def why_run(run_id: str, storage: Storage, _: Reader) -> WhyAnswer:
    """What the run waits for and since when, with the command that fixes it where one
    exists (see ``pyworkflow runs why``)."""
    found = await diagnose(storage, run_id, now=utcnow(), lease_ttl=get_config().lease_ttl)
    return WhyAnswer.model_validate(found.to_dict())


class CancelRequest(BaseModel):
    reason: str | None = Field(None, max_length=2000)


class CancelAnswer(BaseModel):
    cancelled: bool = Field(description="False: the run had already ended.")
    run: RunDetail


@router.post("/runs/{run_id}/cancel", response_model=CancelAnswer, status_code=202)
async def cancel_run(
    run_id: str, storage: Storage, _: Admin, body: CancelRequest | None = None
) -> CancelAnswer:
    """Ask the run to cancel (it runs its cleanup, then ends ``cancelled``)."""
    await run_or_404(storage, run_id)
    done = await cancel_workflow(run_id, body.reason if body else None, storage=storage)
    return CancelAnswer(cancelled=done, run=RunDetail.of(await run_or_404(storage, run_id)))


class SignalRequest(BaseModel):
    payload: Any = Field(None, description="The signal's payload, a JSON value.")
    signal_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$",
        description="Send at most once: a second send with this id to the run stores nothing.",
    )


class SignalSent(BaseModel):
    run_id: str
    name: str
    sequence: int = Field(description="The signal's place in the run's inbox (1, 2, ...).")
    signal_id: str


@router.post(
    "/runs/{run_id}/signals/{name}",
    response_model=SignalSent,
    status_code=202,
    summary="Send a signal",
)
async def signal_run(
    run_id: str, name: str, storage: Storage, _: Admin, body: SignalRequest | None = None
) -> SignalSent:
    """Send signal ``name`` to the run (taken at its next ``wait_for_signal(name)``,
    buffered until then). 404: no such run; 409: the run has ended; 422: the payload
    does not match the signal's model (where this server imported it); 413: too large."""
    request = body or SignalRequest(payload=None, signal_id=None)
    stored = await send_signal(
        run_id, name, request.payload, signal_id=request.signal_id, storage=storage
    )
    return SignalSent(
        run_id=stored.run_id, name=stored.name, sequence=stored.sequence, signal_id=stored.signal_id
    )


class QueryRequest(BaseModel):
    args: list[Any] = Field([], description="The handler's arguments, JSON values.")
    timeout: float = Field(10.0, ge=1, le=60, description="Seconds to wait for an answer (1-60).")


class QueryAnswer(BaseModel):
    run_id: str
    name: str
    answer: Any


@router.post("/runs/{run_id}/queries/{name}", response_model=QueryAnswer, summary="Query a run")
async def query_run(
    run_id: str, name: str, storage: Storage, _: Reader, body: QueryRequest | None = None
) -> QueryAnswer:
    """The answer of the run's query handler ``name`` (``set_query_handler``), from its
    replayed state: answered by this server when it imported the workflow's module, else
    by a worker under Celery. 404: no such run or query; 409: nobody here can answer;
    504: no answer in time; 422: the handler failed."""
    request = body or QueryRequest(args=[], timeout=10.0)
    try:
        answer = await query_workflow(
            run_id, name, *request.args, timeout=request.timeout, storage=storage
        )
    except RunNotFoundError:
        raise
    except WorkflowNotFoundError as exc:
        raise HTTPException(409, str(exc)) from None
    except QueryFailedError as exc:
        raise HTTPException(422, str(exc)) from None
    except TimeoutError as exc:
        raise HTTPException(504, str(exc) or "no answer in time") from None
    return QueryAnswer(run_id=run_id, name=name, answer=answer)


class Started(BaseModel):
    run_id: str
    runtime: str


@router.post("/runs/{run_id}/retry", response_model=Started, status_code=202)
async def retry_run(run_id: str, storage: Storage, _: Admin) -> Started:
    """Start a new run of this run's workflow with the same stored input."""
    await run_or_404(storage, run_id)
    runtime = get_config().default_runtime
    try:
        new_id = await retry_workflow(run_id, storage=storage, detached=True)
    except RunNotFoundError:
        raise
    except WorkflowNotFoundError as exc:
        raise HTTPException(409, _no_code(exc)) from None
    return Started(run_id=new_id, runtime=runtime)


class StartSignal(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
    payload: Any = None


class StartRequest(BaseModel):
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    idempotency_key: str | None = Field(None, min_length=1, max_length=255)
    tags: list[str] | None = None
    # Celery: this run's queue (default: the workflow's own); the name rule of the
    # decorators' queue= option, so a bad one is a 422 naming the field.
    queue: str | None = Field(None, pattern=QUEUE_PATTERN)
    signal: StartSignal | None = Field(
        None, description="Signal-with-start: the run is stored having received it."
    )


@router.post("/workflows/{name}/runs", response_model=Started, status_code=202, tags=["workflows"])
async def start_run(name: str, storage: Storage, _: Admin, body: StartRequest) -> Started:
    """Start a run of workflow ``name``: executed by this server when it imported the
    workflow's module (``--module``), enqueued under the Celery runtime, refused (409)
    otherwise. A known idempotency key returns the run it started (with ``signal``, the
    signal is sent to that run: signal-with-start)."""
    runtime = get_config().default_runtime
    try:
        run_id = await start_by_name(
            name,
            body.args,
            body.kwargs,
            storage=storage,
            idempotency_key=body.idempotency_key,
            tags=body.tags,
            detached=True,
            queue=body.queue,
            signal=None if body.signal is None else (body.signal.name, body.signal.payload),
        )
    except WorkflowNotFoundError as exc:
        raise HTTPException(409, _no_code(exc)) from None
    return Started(run_id=run_id, runtime=runtime)


def _check_cursor(cursor: str | None) -> None:
    if cursor is not None:
        try:
            parse_cursor(cursor)
        except ValueError:
            raise HTTPException(400, "invalid cursor: pass a next_cursor value back") from None


def _no_code(exc: Exception) -> str:
    return (
        f"{exc}. This server runs workflows only when it imported their module "
        "(pyworkflow --module MODULE dashboard) or when the Celery runtime is configured "
        "(workers run them)"
    )


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 is before the first representable UTC time
        raise HTTPException(400, f"{value.isoformat()} is out of range in UTC") from None
