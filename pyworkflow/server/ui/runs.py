"""The runs list (``/``) and a run's page (``/runs/{run_id}``), with its actions.

Both read storage through the same helpers as ``/api/runs`` (:func:`find_runs`,
:func:`run_or_404`), and the actions call the API's own route functions, so a page and
the JSON API never disagree about filters, errors or what an action does.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from pyworkflow.api import RETRY_TAG_PREFIX, get_workflow_chain
from pyworkflow.core.config import get_config
from pyworkflow.core.exceptions import RunEndedError, SerializationError
from pyworkflow.core.registry import list_workflows
from pyworkflow.engine.diagnosis import diagnose
from pyworkflow.server.auth import Principal
from pyworkflow.server.deps import Storage
from pyworkflow.server.models import RunDetail, RunSummary
from pyworkflow.server.routes.runs import (
    CancelRequest,
    RunFilters,
    cancel_run,
    find_runs,
    retry_run,
    run_or_404,
)
from pyworkflow.server.spans import build_spans, layout
from pyworkflow.server.ui.render import (
    Form,
    PageRoute,
    admin_form,
    is_htmx,
    page,
    path_for,
    viewer,
)
from pyworkflow.signals import send_signal
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.payloads import loads_strict
from pyworkflow.storage.schemas import Event, EventType, RunStatus, WorkflowRun, utcnow

router = APIRouter(route_class=PageRoute, include_in_schema=False)
Viewer = Annotated[Principal, Depends(viewer)]
AdminForm = Annotated[Form, Depends(admin_form)]

PAGE_SIZE = 50
#: The most children and events a run page lists (the JSON API pages through all).
CHILDREN_SHOWN = 100
EVENTS_SHOWN = 1000
_FILTERS = ("status", "workflow", "tag", "since", "run_id_prefix", "idempotency_key")
# Hook keys (token hashes) let an admin deliver without the token: not for every viewer.
_HIDDEN_EVENT_FIELDS = frozenset({"token_hash"})


@router.get("/", name="ui_runs")
async def runs_page(
    request: Request,
    principal: Viewer,
    storage: Storage,
    status: str = Query("", max_length=40),
    workflow: str = Query("", max_length=300),
    tag: str = Query("", max_length=300),
    since: str = Query("", max_length=40),
    run_id_prefix: str = Query("", max_length=200),
    idempotency_key: str = Query("", max_length=500),
    cursor: str = Query("", max_length=300),
) -> Response:
    """Runs, newest first, filtered; the first page refreshes itself every 2 seconds."""
    chosen = {
        "status": status,
        "workflow": workflow,
        "tag": tag,
        "since": since,
        "run_id_prefix": run_id_prefix,
        "idempotency_key": idempotency_key,
    }
    context: dict[str, Any] = {
        "filters": chosen,
        "cursor": cursor,
        "runs": [],
        "next_cursor": None,
        "error": "",
        "statuses": [s.value for s in RunStatus],
        "known_workflows": sorted(list_workflows()),
    }
    try:
        filters = RunFilters.model_validate({k: v.strip() or None for k, v in chosen.items()})
    except ValidationError as exc:
        context["error"] = "; ".join(_field_error(e) for e in exc.errors())
        return page(request, principal, "runs.html", context, status_code=400)
    found = await find_runs(storage, filters, PAGE_SIZE, cursor or None)
    context.update(runs=found.runs, next_cursor=found.next_cursor)
    template = "runs_table.html" if is_htmx(request) else "runs.html"
    return page(request, principal, template, context)


def _field_error(error: Any) -> str:
    names = {"since": "since (UTC)", "run_id_prefix": "run id prefix"}
    field = str(error["loc"][0]) if error.get("loc") else "filter"
    return f"{names.get(field, field)}: {error['msg']}"


@router.get("/runs/{run_id}", name="ui_run")
async def run_page(
    request: Request,
    run_id: str,
    principal: Viewer,
    storage: Storage,
    seen: int = Query(-1, description="HTMX: the last sequence the page shows."),
    seen_status: str = Query("", max_length=40),
) -> Response:
    """Status, input, result or error, the timeline, children, chain and event log."""
    run = await run_or_404(storage, run_id)
    if is_htmx(request) and seen == run.last_sequence and seen_status == run.status.value:
        return Response(status_code=204)  # nothing new: HTMX keeps the page (and open "show all"s)
    events = await storage.get_events(run_id)
    context = await _run_context(storage, run, events)
    template = "run_live.html" if is_htmx(request) else "run.html"
    return page(request, principal, template, context)


async def _run_context(
    storage: StorageBackend, run: WorkflowRun, events: list[Event]
) -> dict[str, Any]:
    started = events[0].data if events and events[0].type is EventType.WORKFLOW_STARTED else {}
    children = await storage.get_children(run.run_id, limit=CHILDREN_SHOWN + 1)
    linked = run.continued_from_run_id or run.continued_to_run_id
    chain = await get_workflow_chain(run.run_id, storage=storage) if linked else []
    retries = await find_runs(
        storage, RunFilters(tag=f"{RETRY_TAG_PREFIX}{run.run_id}"), 10, cursor=None
    )
    # Why it is where it is: for a run still going, and for one that ended in a way an
    # operator acts on (a failure, a non-determinism error).
    why = None
    if not run.status.is_terminal or run.status == RunStatus.FAILED:
        why = await diagnose(storage, run.run_id, now=utcnow(), lease_ttl=get_config().lease_ttl)
    return {
        "run": RunDetail.of(run),
        "why": why,
        "signal_form": None,  # a refused signal's values and problems, when re-shown
        "terminal": run.status.is_terminal,
        "failure": _failure(events),
        "retry_of": started.get("retry_of"),
        "schedule_id": started.get("schedule_id"),
        "chart": layout(build_spans(events), utcnow()),
        "children": [RunSummary.of(c) for c in children[:CHILDREN_SHOWN]],
        "more_children": len(children) > CHILDREN_SHOWN,
        "chain": [RunSummary.of(r) for r in chain],
        "retries": retries.runs,
        "events": [_event_row(e, events[0].timestamp) for e in events[:EVENTS_SHOWN]],
        "events_total": len(events),
    }


def _failure(events: list[Event]) -> dict[str, Any] | None:
    """The encoded error of the run's failure or cancellation (type, message, traceback)."""
    for event in reversed(events):
        if event.type in (EventType.WORKFLOW_FAILED, EventType.WORKFLOW_CANCELLED):
            error = event.data.get("error")
            return error if isinstance(error, dict) else None
    return None


def _event_row(event: Event, first: Any) -> dict[str, Any]:
    return {
        "sequence": event.sequence,
        "type": str(event.type),
        "timestamp": event.timestamp,
        "elapsed": (event.timestamp - first).total_seconds(),
        "data": {k: v for k, v in event.data.items() if k not in _HIDDEN_EVENT_FIELDS},
    }


@router.post("/runs/{run_id}/cancel", name="ui_run_cancel")
async def cancel(request: Request, run_id: str, form: AdminForm, storage: Storage) -> Response:
    reason = form.get("reason").strip()[:2000] or "cancelled from the dashboard"
    await cancel_run(run_id, storage, form.principal, CancelRequest(reason=reason))
    return RedirectResponse(path_for(request, "ui_run", run_id=run_id), status_code=303)


@router.post("/runs/{run_id}/signal", name="ui_run_signal")
async def signal(request: Request, run_id: str, form: AdminForm, storage: Storage) -> Response:
    """Send the form's signal to the run, then show the run; a refused one (bad name, not
    JSON, refused by the signal's model, the run ended) comes back on the run's page with
    what was wrong and the values typed."""
    name, text = form.get("name").strip(), form.get("payload").strip()
    try:
        payload = loads_strict(text) if text else None
        await send_signal(run_id, name, payload, storage=storage)
    except (ValueError, SerializationError, RunEndedError) as exc:  # ValidationError too
        run = await run_or_404(storage, run_id)
        context = await _run_context(storage, run, await storage.get_events(run_id))
        context["signal_form"] = {"name": name, "payload": text, "problems": _problems(exc)}
        return page(request, form.principal, "run.html", context, status_code=422)
    return RedirectResponse(path_for(request, "ui_run", run_id=run_id), status_code=303)


def _problems(exc: Exception) -> list[str]:
    if isinstance(exc, ValidationError):  # the signal's model is registered here
        return [f"{'.'.join(map(str, e['loc'])) or '(payload)'}: {e['msg']}" for e in exc.errors()]
    if isinstance(exc, json.JSONDecodeError):
        return [f"payload: not JSON: {exc}"]
    return [str(exc)]


@router.post("/runs/{run_id}/retry", name="ui_run_retry")
async def retry(request: Request, run_id: str, form: AdminForm, storage: Storage) -> Response:
    started = await retry_run(run_id, storage, form.principal)
    return RedirectResponse(path_for(request, "ui_run", run_id=started.run_id), status_code=303)
