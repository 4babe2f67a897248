"""``/workflows`` (what runs exist and which code this server has) and ``/workers`` (the
worker registry)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from pyworkflow.core.config import get_config
from pyworkflow.core.registry import list_workflows
from pyworkflow.server.app import storage_of
from pyworkflow.server.auth import Principal
from pyworkflow.server.ui.render import PageRoute, page, viewer
from pyworkflow.storage.base import WORKERS, StorageBackend
from pyworkflow.storage.schemas import WorkflowRun, utcnow

router = APIRouter(route_class=PageRoute, include_in_schema=False)
Storage = Annotated[StorageBackend, Depends(storage_of)]
Viewer = Annotated[Principal, Depends(viewer)]

#: How many of the newest runs the workflows page counts (one query on any storage size).
RECENT_RUNS_SCANNED = 1000


@dataclass
class WorkflowRow:
    name: str
    registered: bool = False
    module: str = ""
    tags: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    last_run: WorkflowRun | None = None

    @property
    def runs(self) -> int:
        return sum(self.statuses.values())


@router.get("/workflows", name="ui_workflows")
async def workflows_page(request: Request, principal: Viewer, storage: Storage) -> Response:
    """Workflows registered here and names with recent runs, with their runs by status."""
    rows: dict[str, WorkflowRow] = {}
    for name, definition in list_workflows().items():
        module = getattr(definition.func, "__module__", "")
        rows[name] = WorkflowRow(name, True, module, list(definition.tags))
    for run in await storage.list_runs(limit=RECENT_RUNS_SCANNED):  # newest first
        row = rows.setdefault(run.workflow_name, WorkflowRow(run.workflow_name))
        row.statuses[run.status.value] += 1
        row.last_run = row.last_run or run
    context = {"rows": sorted(rows.values(), key=lambda r: r.name), "scanned": RECENT_RUNS_SCANNED}
    return page(request, principal, "workflows.html", context)


@router.get("/workers", name="ui_workers")
async def workers_page(request: Request, principal: Viewer, storage: Storage) -> Response:
    """The worker registry: who executes runs, its last heartbeat and the runs it holds."""
    if WORKERS not in storage.capabilities:
        return page(request, principal, "workers.html", {"unsupported": True, "workers": []})
    ttl = get_config().lease_ttl
    now = utcnow()
    workers = [
        {"worker": w, "stale": _age(w.last_beat, now) > ttl}
        for w in await storage.list_workers(limit=500)
    ]
    context = {"unsupported": False, "workers": workers, "ttl": ttl}
    return page(request, principal, "workers.html", context)


def _age(moment: datetime, now: datetime) -> float:
    return (now - moment).total_seconds()
