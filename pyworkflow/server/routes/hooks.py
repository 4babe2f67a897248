"""``/api/hooks``: list and read hooks, and deliver a payload as the admin.

A hook's id in this API is its ``key``: the SHA-256 of its token (``HookRecord.token_hash``),
which identifies the hook without being a credential. No answer ever carries a token.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from pyworkflow.api import list_hooks
from pyworkflow.server.deps import Admin, Reader, Storage
from pyworkflow.server.models import tree
from pyworkflow.server.webhooks import JSON_BODY, Delivered, deliver_payload, read_json
from pyworkflow.storage.base import HOOKS, StorageBackend, require_capability
from pyworkflow.storage.schemas import HookRecord, HookStatus, utcnow

router = APIRouter(prefix="/api", tags=["hooks"])

MAX_PAGE = 500
# Deep offsets are slow on every backend; the bound also keeps the value a 64-bit integer.
MAX_OFFSET = 1_000_000
_KEY = re.compile(r"[0-9a-f]{64}")


class HookSummary(BaseModel):
    """A hook in a listing."""

    key: str = Field(description="The hook's id in this API: SHA-256 of its token (no secret).")
    hook_id: str = Field(description="Its operation id in the run, e.g. hook:approval#1.")
    name: str
    run_id: str
    status: HookStatus
    open: bool = Field(description="Pending and not past its expiry: it takes a payload now.")
    typed: bool = Field(description="It stored a JSON schema that payloads must match.")
    created_at: datetime
    expires_at: datetime | None = None
    received_at: datetime | None = None

    @classmethod
    def of(cls, record: HookRecord) -> HookSummary:
        return cls(**_summary_fields(record))


class HookDetail(HookSummary):
    """Everything stored about a hook except its token (never stored, never sent)."""

    payload_schema: Any = Field(None, description="The JSON schema payloads must match.")
    payload: Any = Field(None, description="The payload it received (null until then).")

    @classmethod
    def of(cls, record: HookRecord) -> HookDetail:
        return cls(
            **_summary_fields(record),
            payload_schema=tree(record.schema),
            payload=tree(record.payload),
        )


class HookPage(BaseModel):
    """One page of hooks, newest first; ``next_offset`` is ``null`` on the last page."""

    hooks: list[HookSummary]
    next_offset: int | None = None


def _summary_fields(record: HookRecord) -> dict[str, Any]:
    expired = record.expires_at is not None and record.expires_at <= utcnow()
    return {
        "key": record.token_hash,
        "hook_id": record.hook_id,
        "name": record.name,
        "run_id": record.run_id,
        "status": record.status,
        "open": record.status == HookStatus.PENDING and not expired,
        "typed": bool(record.schema),
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "received_at": record.received_at,
    }


@router.get("/hooks", response_model=HookPage, summary="List hooks, newest first")
async def get_hooks(
    storage: Storage,
    _: Reader,
    run_id: str | None = Query(None, max_length=200, description="Hooks of this run only."),
    status: HookStatus | None = None,
    limit: int = Query(50, ge=1, le=MAX_PAGE),
    offset: int = Query(0, ge=0, le=MAX_OFFSET, description="next_offset of a page."),
) -> HookPage:
    # One more than asked tells whether a next page exists.
    records = await list_hooks(
        run_id=run_id or None, status=status, limit=limit + 1, offset=offset, storage=storage
    )
    more = len(records) > limit
    return HookPage(
        hooks=[HookSummary.of(r) for r in records[:limit]],
        next_offset=offset + limit if more else None,
    )


async def hook_or_404(storage: StorageBackend, key: str) -> HookRecord:
    """The hook with this API key (``HookRecord.token_hash``), or 404."""
    require_capability(storage, HOOKS)
    record = await storage.get_hook(key) if _KEY.fullmatch(key) else None
    if record is None:
        raise HTTPException(404, f"no hook with key {key[:64]!r}")
    return record


@router.get("/hooks/{key}", response_model=HookDetail, summary="One hook")
async def get_hook(key: str, storage: Storage, _: Reader) -> HookDetail:
    return HookDetail.of(await hook_or_404(storage, key))


@router.post(
    "/hooks/{key}/resume",
    response_model=Delivered,
    status_code=202,
    summary="Deliver a payload to a hook (admin; no token needed)",
    openapi_extra=JSON_BODY,
)
async def resume(key: str, request: Request, storage: Storage, _: Admin) -> Delivered:
    """Deliver the JSON body to the hook and resume its run, as its token's holder could.

    The payload is validated against the hook's model or stored schema (422 with the
    errors). 409 when the hook already received a payload, expired, or its run ended."""
    record = await hook_or_404(storage, key)
    payload = await read_json(request)
    result = await deliver_payload(storage, record, payload)
    return Delivered(run_id=result.run_id, hook_id=result.hook_id)
