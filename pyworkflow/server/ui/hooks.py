"""``/hooks``: the hooks runs wait on, each with a resume form built from its schema
(admins only: delivering a payload moves a run on).

A form delivers by the hook's key (:func:`pyworkflow.api.resume_hook_by_key`): the admin
holds no hook token, and the page never shows one. A payload the hook refuses comes back
as the same page with the hook's form, the values typed and what was wrong.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from pyworkflow.api import list_hooks, resume_hook_by_key
from pyworkflow.core.exceptions import HookPayloadError, SerializationError
from pyworkflow.server.auth import Principal
from pyworkflow.server.deps import Storage
from pyworkflow.server.ui.hook_form import FormError, form_fields, payload_from
from pyworkflow.server.ui.render import Form, PageRoute, admin, admin_form, page, path_for
from pyworkflow.storage.base import HOOKS, StorageBackend
from pyworkflow.storage.schemas import HookRecord, HookStatus, utcnow

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PENDING_SHOWN = 100
RECEIVED_SHOWN = 20


@router.get("/hooks", name="ui_hooks")
async def hooks_page(
    request: Request, principal: Annotated[Principal, Depends(admin)], storage: Storage
) -> Response:
    return await _render(request, principal, storage)


async def _render(
    request: Request,
    principal: Principal,
    storage: StorageBackend,
    failed: tuple[str, list[str], dict[str, str]] | None = None,
) -> Response:
    """The page; ``failed`` = (hook key, problems, values typed) re-shows a refused form."""
    if HOOKS not in storage.capabilities:
        empty = {"unsupported": True, "pending": [], "received": []}
        return page(request, principal, "hooks.html", empty)
    pending = await list_hooks(status=HookStatus.PENDING, limit=PENDING_SHOWN, storage=storage)
    received = await list_hooks(status=HookStatus.RECEIVED, limit=RECEIVED_SHOWN, storage=storage)
    now = utcnow()
    context: dict[str, Any] = {
        "unsupported": False,
        "pending": [_card(h, now, failed) for h in pending],
        "received": received,
    }
    return page(request, principal, "hooks.html", context, status_code=422 if failed else 200)


def _card(
    hook: HookRecord, now: Any, failed: tuple[str, list[str], dict[str, str]] | None
) -> dict[str, Any]:
    mine = failed is not None and failed[0] == hook.token_hash
    return {
        "hook": hook,
        "key": hook.token_hash,
        "expired": hook.expires_at is not None and hook.expires_at <= now,
        "fields": form_fields(hook.schema),
        "problems": failed[1] if mine and failed else [],
        "values": failed[2] if mine and failed else {},
    }


@router.post("/hooks/{key}/resume", name="ui_hook_resume")
async def resume(
    request: Request, key: str, form: Annotated[Form, Depends(admin_form)], storage: Storage
) -> Response:
    """Deliver the form's payload to the hook, then show its run."""
    record = await storage.get_hook(key) if HOOKS in storage.capabilities else None
    values = {name: found[0] for name, found in form.fields.items() if name != "csrf_token"}
    fields = form_fields(record.schema) if record is not None else None
    try:
        payload = payload_from(fields, values)
        delivered = await resume_hook_by_key(key, payload, storage=storage)
    except (FormError, HookPayloadError, ValidationError, SerializationError) as exc:
        return await _render(request, form.principal, storage, (key, _problems(exc), values))
    run_page = path_for(request, "ui_run", run_id=delivered.run_id)
    return RedirectResponse(run_page, status_code=303)


def _problems(exc: Exception) -> list[str]:
    """What was wrong with a refused payload, one line per problem."""
    if isinstance(exc, FormError):
        return exc.problems
    if isinstance(exc, HookPayloadError):
        return [f"{e['path'] or '(payload)'}: {e['message']}" for e in exc.errors]
    if isinstance(exc, ValidationError):  # the hook's model is registered here
        return [f"{'.'.join(map(str, e['loc'])) or '(payload)'}: {e['msg']}" for e in exc.errors()]
    return [str(exc)]
