"""``POST /hooks/{token}``: the webhook receiver.

The hook token in the path is the whole credential (no API token): whoever holds it may
deliver one payload. So the answer never tells a prober more than "no open hook here":
unknown, malformed, already used and expired tokens, and hooks of ended runs, all get the
same 404 body. A token holder learns more: 422 with the validation errors when the
payload does not fit the hook's model or stored schema, 413 when it is too large.

The token never appears in an answer or a log line (the access log of
``pyworkflow dashboard`` is off for this reason).
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from pyworkflow.api import ResumeResult, resume_hook_by_key
from pyworkflow.core.exceptions import (
    HookAlreadyReceivedError,
    HookExpiredError,
    HookNotFoundError,
    HookPayloadError,
)
from pyworkflow.primitives.hook_tokens import TOKEN_PREFIX, hash_token
from pyworkflow.server.app import state
from pyworkflow.server.deps import Storage
from pyworkflow.storage.base import HOOKS, StorageBackend, require_capability
from pyworkflow.storage.schemas import HookRecord
from pyworkflow.utils.log import logger

router = APIRouter(tags=["webhooks"])

#: The one answer for every token that cannot take a payload (see the module docstring).
NO_HOOK = {"detail": "no open hook for this token"}
_TOKEN_LENGTH = len(TOKEN_PREFIX) + 32
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

#: OpenAPI description of a body that is any JSON value (read by :func:`read_json`).
JSON_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The payload: any JSON value the hook accepts.",
        "content": {"application/json": {"schema": {}}},
    }
}


class Delivered(BaseModel):
    """A payload the hook accepted: its run is resumed with it."""

    run_id: str
    hook_id: str = Field(description="The hook's operation id, e.g. hook:approval#1.")


@router.post(
    "/hooks/{token}",
    response_model=Delivered,
    status_code=202,
    summary="Deliver a payload to a hook (the token is the credential)",
    openapi_extra=JSON_BODY,
    responses={
        400: {"description": "The body is not JSON."},
        404: {"description": "No open hook for this token (unknown, used, expired, ended)."},
        413: {"description": "The body is over the size limit."},
        415: {"description": "The body is not sent as application/json."},
        422: {"description": "The payload does not match the hook's schema."},
    },
)
async def deliver(token: str, request: Request, storage: Storage) -> Delivered | JSONResponse:
    """Resume the hook whose token is ``token`` with the JSON body as its payload.

    Needs no API token. Answers 202 once per hook; every later delivery gets 404."""
    payload = await read_json(request)
    require_capability(storage, HOOKS)
    key = _key_of(token)
    record = await storage.get_hook(key) if key else None
    if record is None or not hmac.compare_digest(key.encode(), record.token_hash.encode()):
        return JSONResponse(NO_HOOK, status_code=404)
    try:
        result = await deliver_payload(storage, record, payload)
    except (HookNotFoundError, HookAlreadyReceivedError, HookExpiredError):
        return JSONResponse(NO_HOOK, status_code=404)
    logger.info("webhook: payload delivered to {} of run {}", result.hook_id, result.run_id)
    return Delivered(run_id=result.run_id, hook_id=result.hook_id)


async def deliver_payload(
    storage: StorageBackend, record: HookRecord, payload: Any
) -> ResumeResult:
    """Deliver ``payload`` to the hook ``record`` and wake its run.

    A payload refused by the hook's Pydantic model (this process has the workflow's code)
    raises :class:`HookPayloadError` with the same ``{"path", "message"}`` errors as one
    refused by the stored schema (a process without the code), so a sender sees one shape.
    """
    try:
        return await resume_hook_by_key(record.token_hash, payload, storage=storage)
    except ValidationError as exc:
        errors = [
            {"path": "/".join(str(part) for part in error["loc"]), "message": error["msg"]}
            for error in exc.errors()
        ]
        listed = "; ".join(f"{e['path'] or '(payload)'}: {e['message']}" for e in errors)
        raise HookPayloadError(
            f"payload refused by hook {record.name!r} ({record.hook_id}): {listed}",
            hook_id=record.hook_id,
            errors=errors,
        ) from None


def _key_of(token: str) -> str:
    """The lookup key of a well-formed token, else ``""`` (no storage query for junk)."""
    well_formed = (
        len(token) == _TOKEN_LENGTH
        and token.startswith(TOKEN_PREFIX)
        and _TOKEN_CHARS.issuperset(token[len(TOKEN_PREFIX) :])
    )
    return hash_token(token) if well_formed else ""


async def read_json(request: Request) -> Any:
    """The request's body as a JSON value, read at most ``max_body_bytes`` into memory.

    Raises:
        HTTPException: 415 (not sent as JSON), 413 (over the limit: found while reading,
            whatever ``Content-Length`` claims), 400 (empty, not JSON, or NaN/Infinity).
    """
    limit = state(request).settings.max_body_bytes
    _require_json_type(request.headers.get("content-type"))
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return decode_json(bytes(body))


def decode_json(body: bytes) -> Any:
    """``body`` as a JSON value (strict JSON: no NaN or Infinity, no unpaired surrogate
    escapes), or 400 saying why."""
    if not body.strip():
        raise HTTPException(400, "the request body is empty: send the payload as JSON")
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
        # "\ud800" parses, but no storage can hold half a surrogate pair: refused here
        # rather than accepted for a run that could then never record it.
        json.dumps(value, ensure_ascii=False).encode()
    except RecursionError:
        raise HTTPException(400, "the request body is nested too deeply") from None
    except UnicodeEncodeError:
        raise HTTPException(
            400, "the request body holds an unpaired surrogate (\\ud800-\\udfff): not Unicode text"
        ) from None
    except ValueError as exc:  # not JSON, undecodable bytes, or a constant refused below
        raise HTTPException(400, f"the request body is not valid JSON: {exc}") from None
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _require_json_type(content_type: str | None) -> None:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return
    shown = f"Content-Type {media_type!r}" if media_type else "no Content-Type"
    raise HTTPException(
        415, f"the payload must be JSON sent with Content-Type: application/json (got {shown})"
    )


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the request body is larger than the limit of {limit} bytes")
