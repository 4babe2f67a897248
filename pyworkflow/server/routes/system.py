"""``/healthz`` (no auth), ``/api/workflows`` and ``/api/workers``.

``/api/workflows`` joins three sources: the workflows this process imported (their
options and signature), the workflow names storage has runs of, and the schedules.
Names come from the storage's name index where the backend has one
(:meth:`~pyworkflow.storage.base.StorageBackend.workflow_names`: the SQL backends and
memory), else from the newest runs; run counts and tags always come from the newest
:data:`RECENT_RUNS_SCANNED` runs (one query), so the answer costs the same on a store of
a hundred runs or of millions.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from pyworkflow.core.config import discover_workflows, get_config
from pyworkflow.core.exceptions import ConfigurationError
from pyworkflow.core.registry import list_workflows
from pyworkflow.core.workflow import WorkflowDefinition
from pyworkflow.engine.workers import is_alive
from pyworkflow.server.deps import Reader, Storage
from pyworkflow.storage.base import SCHEDULES, WORKERS, StorageBackend
from pyworkflow.storage.schemas import WorkerRecord, WorkflowRun, utcnow

router = APIRouter()

#: How many of the newest runs the workflow listing counts (one query on any store).
RECENT_RUNS_SCANNED = 1000
#: The most workflow names listed.
MAX_NAMES = 1000
#: Names not among the newest runs get one indexed lookup each for their last run, up
#: to this many (beyond it ``last_run_at`` stays empty).
MAX_LAST_RUN_LOOKUPS = 100


class Health(BaseModel):
    status: str


@router.get("/healthz", response_model=Health, tags=["system"])
async def healthz() -> Health:
    """Liveness of the server process (no token needed, touches no storage)."""
    return Health(status="ok")


# -- workflows ----------------------------------------------------------------------------


class ParameterOut(BaseModel):
    """One parameter of a registered workflow's function."""

    name: str
    kind: str = Field(description='"positional_or_keyword", "keyword_only", ...')
    annotation: str | None = None
    required: bool
    default: Any = Field(default=None, description="JSON value, or its repr when it has none.")


class WorkflowOptions(BaseModel):
    """The decorator's options (``None``: the configured default applies)."""

    durable: bool | None = None
    max_duration: str | None = None
    max_recovery_attempts: int | None = None
    recover_on_worker_loss: bool | None = None
    tags: list[str] = []


class WorkflowOut(BaseModel):
    name: str
    registered: bool = Field(description="This server imported its code (can start runs).")
    seen_in_storage: bool = Field(description="Storage has runs of it.")
    tags: list[str] = Field(
        description="The decorator's tags; for a workflow not imported here, the tags "
        "all its recent runs share."
    )
    options: WorkflowOptions | None = None
    module: str | None = Field(default=None, description='"package.module:function" (registered).')
    signature: str | None = None
    parameters: list[ParameterOut] | None = None
    summary: str | None = Field(default=None, description="First line of the docstring.")
    recent_runs: dict[str, int] = Field(
        description=f"Runs by status among the newest {RECENT_RUNS_SCANNED} of the storage."
    )
    last_run_at: datetime | None = Field(
        default=None, description="When its newest run was created."
    )
    schedules: int = Field(default=0, description="How many schedules start it.")


class WorkflowList(BaseModel):
    workflows: list[WorkflowOut]
    names_from: Literal["index", "recent_runs"] = Field(
        description='"index": every workflow with stored runs is listed; "recent_runs": '
        "the backend has no name index, so only those among the newest runs are."
    )
    recent_runs_scanned: int = Field(description="How many newest runs the counts cover.")


@router.get("/api/workflows", response_model=WorkflowList, tags=["workflows"])
async def list_workflow_names(storage: Storage, _: Reader) -> WorkflowList:
    """Workflows registered in this server and workflow names storage has runs of."""
    registered = _registered()
    recent = await storage.list_runs(limit=RECENT_RUNS_SCANNED)
    indexed = await storage.workflow_names(limit=MAX_NAMES)
    stored = set(indexed) if indexed is not None else {r.workflow_name for r in recent}
    scheduled = await _schedule_counts(storage)
    by_name: dict[str, list[WorkflowRun]] = {}
    for run in recent:
        by_name.setdefault(run.workflow_name, []).append(run)
    names = sorted(stored | set(registered) | set(scheduled))[:MAX_NAMES]
    last_runs = await _last_runs(storage, [n for n in names if n in stored and n not in by_name])
    out = []
    for name in names:
        window = by_name.get(name, [])
        item = _workflow_out(name, registered.get(name), window, last_runs.get(name, []))
        item.seen_in_storage = name in stored
        item.schedules = scheduled.get(name, 0)
        out.append(item)
    return WorkflowList(
        workflows=out,
        names_from="index" if indexed is not None else "recent_runs",
        recent_runs_scanned=len(recent),
    )


def _registered() -> dict[str, WorkflowDefinition]:
    # The configured modules (config file); one that does not import here leaves its
    # workflows shown as not registered.
    with contextlib.suppress(ConfigurationError):
        discover_workflows()
    return list_workflows()


async def _schedule_counts(storage: StorageBackend) -> Counter[str]:
    if SCHEDULES not in storage.capabilities:
        return Counter()
    return Counter(s.workflow_name for s in await storage.list_schedules())


async def _last_runs(storage: StorageBackend, names: list[str]) -> dict[str, list[WorkflowRun]]:
    found = {}
    for name in names[:MAX_LAST_RUN_LOOKUPS]:
        found[name] = await storage.list_runs(workflow_name=name, limit=1)
    return found


def _workflow_out(
    name: str,
    definition: WorkflowDefinition | None,
    recent: list[WorkflowRun],
    older: list[WorkflowRun],
) -> WorkflowOut:
    """``recent``: its runs among the newest of the storage; ``older``: its last run
    when it has none among them."""
    runs = recent or older
    item = WorkflowOut(
        name=name,
        registered=definition is not None,
        seen_in_storage=bool(runs),
        tags=list(definition.tags) if definition is not None else _shared_tags(runs),
        recent_runs=dict(sorted(Counter(str(r.status) for r in recent).items())),
        last_run_at=max((r.created_at for r in runs), default=None),
    )
    if definition is None:
        return item
    fn = definition.func
    item.options = WorkflowOptions(
        durable=definition.durable,
        max_duration=definition.max_duration,
        max_recovery_attempts=definition.max_recovery_attempts,
        recover_on_worker_loss=definition.recover_on_worker_loss,
        tags=list(definition.tags),
    )
    item.module = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')}"
    signature = _readable(inspect.signature(fn))
    item.signature = f"{name}{signature}"
    item.parameters = [_parameter(p) for p in signature.parameters.values()]
    doc = inspect.getdoc(fn)
    item.summary = doc.strip().splitlines()[0] if doc and doc.strip() else None
    return item


def _shared_tags(runs: Iterable[WorkflowRun]) -> list[str]:
    # The decorator's tags are on every run; per-run ones (retry-of:...) are not.
    shared: list[str] | None = None
    for run in runs:
        shared = list(run.tags) if shared is None else [t for t in shared if t in run.tags]
    return shared or []


class _Source(str):
    """Annotation text shown as written (a postponed annotation is a string, which
    ``inspect`` would show quoted; evaluating it would run the module's code)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def _readable(signature: inspect.Signature) -> inspect.Signature:
    def text(annotation: Any) -> Any:
        return _Source(annotation) if isinstance(annotation, str) else annotation

    params = [p.replace(annotation=text(p.annotation)) for p in signature.parameters.values()]
    return signature.replace(parameters=params, return_annotation=text(signature.return_annotation))


def _parameter(param: inspect.Parameter) -> ParameterOut:
    empty = inspect.Parameter.empty
    annotation = param.annotation
    return ParameterOut(
        name=param.name,
        kind=param.kind.name.lower(),
        annotation=inspect.formatannotation(annotation) if annotation is not empty else None,
        required=param.default is empty
        and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD),
        default=_jsonable(param.default) if param.default is not empty else None,
    )


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


# -- workers ------------------------------------------------------------------------------


class WorkerOut(BaseModel):
    """A process in the worker registry."""

    worker_id: str = Field(description="Its lease-owner id (runs it executes store it).")
    kind: str = Field(description='"celery" (a pool process), "scheduler", ...')
    host: str
    pid: int
    queues: list[str]
    version: str = Field(description="The pyworkflow version it runs.")
    started_at: datetime
    last_beat: datetime
    seconds_since_beat: float
    alive: bool = Field(description="It beat within the lease TTL.")
    runs: list[str] = Field(description="The runs it was working on at its last beat.")
    runs_held: int


class WorkerList(BaseModel):
    workers: list[WorkerOut]
    lease_ttl: float = Field(description="Seconds without a beat after which a worker is dead.")
    note: str | None = None


@router.get("/api/workers", response_model=WorkerList, tags=["workers"])
async def list_workers(storage: Storage, _: Reader) -> WorkerList:
    """The worker registry: live and recently stopped workers, by id (records of
    workers dead for over an hour are pruned by the recovery passes)."""
    ttl = get_config().lease_ttl
    if WORKERS not in storage.capabilities:
        return WorkerList(
            workers=[],
            lease_ttl=ttl,
            note=f"{type(storage).__name__} keeps no worker registry; runs held by "
            "workers are judged by their leases",
        )
    now = utcnow()
    workers = [_worker_out(w, now, ttl) for w in await storage.list_workers()]
    return WorkerList(workers=workers, lease_ttl=ttl)


def _worker_out(worker: WorkerRecord, now: datetime, ttl: float) -> WorkerOut:
    since = max(now - worker.last_beat, timedelta(0))
    return WorkerOut(
        worker_id=worker.worker_id,
        kind=worker.kind,
        host=worker.host,
        pid=worker.pid,
        queues=list(worker.queues),
        version=worker.version,
        started_at=worker.started_at,
        last_beat=worker.last_beat,
        seconds_since_beat=round(since.total_seconds(), 3),
        alive=is_alive(worker, now, ttl),
        runs=list(worker.runs),
        runs_held=len(worker.runs),
    )
