"""``/workflows`` (what runs exist and which code this server has) and ``/workers`` (the
worker registry): the answers of ``/api/workflows`` and ``/api/workers``, as pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from pyworkflow.server.auth import Principal
from pyworkflow.server.deps import Storage
from pyworkflow.server.routes.system import (
    RECENT_RUNS_SCANNED,
    list_workers,
    list_workflow_names,
)
from pyworkflow.server.ui.render import PageRoute, page, viewer

router = APIRouter(route_class=PageRoute, include_in_schema=False)
Viewer = Annotated[Principal, Depends(viewer)]


@router.get("/workflows", name="ui_workflows")
async def workflows_page(request: Request, principal: Viewer, storage: Storage) -> Response:
    """Workflows registered here and names with stored runs, with their runs by status."""
    listing = await list_workflow_names(storage, principal)
    context = {"listing": listing, "scan_limit": RECENT_RUNS_SCANNED}
    return page(request, principal, "workflows.html", context)


@router.get("/workers", name="ui_workers")
async def workers_page(request: Request, principal: Viewer, storage: Storage) -> Response:
    """The worker registry: who executes runs, its last heartbeat and the runs it holds."""
    registry = await list_workers(storage, principal)
    return page(request, principal, "workers.html", {"registry": registry})
