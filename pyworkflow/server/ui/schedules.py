"""``/schedules``: every schedule with its next fire time, and (admins) pause, resume,
trigger now and delete, through :mod:`pyworkflow.schedules`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import RedirectResponse

from pyworkflow.core.exceptions import ScheduleNotFoundError, WorkflowNotFoundError
from pyworkflow.schedules import (
    delete_schedule,
    list_schedules,
    pause_schedule,
    resume_schedule,
    trigger_schedule,
)
from pyworkflow.server.auth import Principal
from pyworkflow.server.deps import Storage
from pyworkflow.server.routes.runs import _no_code
from pyworkflow.server.ui.render import Form, PageRoute, admin_form, page, path_for, viewer
from pyworkflow.storage.base import SCHEDULES

router = APIRouter(route_class=PageRoute, include_in_schema=False)
AdminForm = Annotated[Form, Depends(admin_form)]


@router.get("/schedules", name="ui_schedules")
async def schedules_page(
    request: Request, principal: Annotated[Principal, Depends(viewer)], storage: Storage
) -> Response:
    if SCHEDULES not in storage.capabilities:
        return page(request, principal, "schedules.html", {"unsupported": True, "rows": []})
    rows = [
        {"schedule": s, "spec": s.spec.describe(), "active": s.status.value == "active"}
        for s in await list_schedules(storage=storage)
    ]
    return page(request, principal, "schedules.html", {"unsupported": False, "rows": rows})


def _back(request: Request) -> Response:
    return RedirectResponse(path_for(request, "ui_schedules"), status_code=303)


@router.post("/schedules/{schedule_id}/pause", name="ui_schedule_pause")
async def pause(request: Request, schedule_id: str, _: AdminForm, storage: Storage) -> Response:
    await pause_schedule(schedule_id, storage=storage)
    return _back(request)


@router.post("/schedules/{schedule_id}/resume", name="ui_schedule_resume")
async def resume(request: Request, schedule_id: str, _: AdminForm, storage: Storage) -> Response:
    await resume_schedule(schedule_id, storage=storage)
    return _back(request)


@router.post("/schedules/{schedule_id}/delete", name="ui_schedule_delete")
async def delete(request: Request, schedule_id: str, _: AdminForm, storage: Storage) -> Response:
    if not await delete_schedule(schedule_id, storage=storage):
        raise ScheduleNotFoundError(f"no schedule with id {schedule_id!r}")
    return _back(request)


@router.post("/schedules/{schedule_id}/trigger", name="ui_schedule_trigger")
async def trigger(request: Request, schedule_id: str, _: AdminForm, storage: Storage) -> Response:
    """Start a run now, then show it."""
    try:
        run_id = await trigger_schedule(schedule_id, storage=storage)
    except WorkflowNotFoundError as exc:
        raise HTTPException(409, _no_code(exc)) from None
    return RedirectResponse(path_for(request, "ui_run", run_id=run_id), status_code=303)
