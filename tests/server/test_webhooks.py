"""``POST /hooks/{token}``: the webhook receiver, in-process (ASGI) on SQLite and
PostgreSQL. Concurrency against a real server: test_webhooks_live.py."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from loguru import logger

from pyworkflow import cancel_workflow, get_workflow_events, start
from pyworkflow.server.webhooks import NO_HOOK
from tests.server.conftest import client
from tests.server.flows import srv_approval, srv_untyped_hook
from tests.server.hook_flows import srv_short_hook, token_of, wait_status

APPROVED = {"approved": True, "approver": "ada"}


async def _approval_token() -> tuple[str, str]:
    run_id = await start(srv_approval, "order-1")
    await wait_status(run_id, "suspended")
    return run_id, token_of(run_id, "srv_approval")


async def test_delivery_resumes_the_run_once(app: FastAPI) -> None:
    run_id, token = await _approval_token()
    async with client(app, token=None) as anonymous:  # the hook token is the credential
        answer = await anonymous.post(f"/hooks/{token}", json=APPROVED)
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"run_id": run_id, "hook_id": "hook:srv_approval#1"}
        assert token not in answer.text
        run = await wait_status(run_id, "completed")
        assert run.result_payload is not None and '"by": "ada"' in run.result_payload
        again = await anonymous.post(f"/hooks/{token}", json=APPROVED)
        assert again.status_code == 404 and again.json() == NO_HOOK


async def test_the_same_404_for_every_token_that_cannot_deliver(app: FastAPI) -> None:
    """A prober cannot tell unknown, malformed, used, expired and ended-run tokens apart."""
    _, used = await _approval_token()
    expiring = await start(srv_short_hook)
    ended = await start(srv_untyped_hook)
    await wait_status(ended, "suspended")
    await cancel_workflow(ended)
    await wait_status(ended, "cancelled")
    assert (await wait_status(expiring, "completed")).result_payload == '"expired"'
    tokens = {
        "unknown": "whk_" + secrets.token_urlsafe(24),
        "malformed": "not-a-token",
        "bad characters": "whk_" + "!" * 32,
        "too long": "whk_" + "a" * 500,
        "used": used,
        "expired": token_of(expiring, "srv_short"),
        "run ended": token_of(ended, "srv_raw"),
    }
    async with client(app, token=None) as anonymous:
        assert (await anonymous.post(f"/hooks/{used}", json=APPROVED)).status_code == 202
        for why, token in tokens.items():
            answer = await anonymous.post(f"/hooks/{token}", json=APPROVED)
            assert (answer.status_code, answer.content) == (
                404,
                b'{"detail":"no open hook for this token"}',
            ), why


async def test_invalid_payload_gets_422_and_the_hook_stays_open(app: FastAPI) -> None:
    run_id, token = await _approval_token()
    async with client(app, token=None) as anonymous:
        refused = await anonymous.post(f"/hooks/{token}", json={"approved": "perhaps"})
        assert refused.status_code == 422
        body = refused.json()
        assert {e["path"] for e in body["errors"]} == {"approved", "approver"}
        assert "hook:srv_approval#1" in body["detail"]
        accepted = await anonymous.post(f"/hooks/{token}", json=APPROVED)
        assert accepted.status_code == 202
    await wait_status(run_id, "completed")


async def test_body_must_be_json_of_bounded_size(app: FastAPI) -> None:
    run_id, token = await _approval_token()
    url = f"/hooks/{token}"
    limit = app.state.pyworkflow.settings.max_body_bytes
    async with client(app, token=None) as anonymous:
        as_text = await anonymous.post(
            url, content=b"approved", headers={"Content-Type": "text/plain"}
        )
        assert as_text.status_code == 415 and "application/json" in as_text.json()["detail"]
        untyped = await anonymous.post(url, content=b"{}")
        assert untyped.status_code == 415 and "no Content-Type" in untyped.json()["detail"]
        for body, reason in (
            (b"{", "not valid JSON"),
            (b"", "empty"),
            (b"NaN", "NaN"),
            (b'{"approver": "\\ud800"}', "unpaired surrogate"),  # would wedge the run
            (b"\xff\xfe{", "not valid JSON"),
        ):
            answer = await anonymous.post(
                url, content=body, headers={"Content-Type": "application/json"}
            )
            assert answer.status_code == 400 and reason in answer.json()["detail"], body
        deep = b"[" * 100_000 + b"]" * 100_000
        nested = await anonymous.post(
            url, content=deep, headers={"Content-Type": "application/json"}
        )
        assert nested.status_code == 400 and "nested too deeply" in nested.json()["detail"]

        big = b'{"approved": true, "approver": "' + b"a" * limit + b'"}'
        declared = await anonymous.post(
            url, content=big, headers={"Content-Type": "application/json"}
        )
        assert declared.status_code == 413 and str(limit) in declared.json()["detail"]

        sent: list[int] = []

        async def endless() -> AsyncIterator[bytes]:  # no Content-Length: chunked
            yield b'{"approver": "'
            while True:
                sent.append(1)
                yield b"a" * 65536

        streamed = await anonymous.post(
            url, content=endless(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413
        assert len(sent) <= limit // 65536 + 2  # reading stopped at the limit

        assert (await anonymous.post(url, json=APPROVED)).status_code == 202  # still open
    await wait_status(run_id, "completed")


async def test_the_token_is_never_logged(app: FastAPI, pyworkflow_debug_logs: None) -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="TRACE", format="{message} {extra}")
    try:
        run_id, token = await _approval_token()

        @app.post("/hooks/{token}/boom")
        async def boom(token: str) -> None:
            raise RuntimeError("unexpected")  # an unexpected error on a path with a token

        async with client(app, token=None) as anonymous:
            assert (await anonymous.post(f"/hooks/{token}", json={})).status_code == 422
            assert (await anonymous.post(f"/hooks/{token}", json=APPROVED)).status_code == 202
            assert (await anonymous.post(f"/hooks/{token}", json=APPROVED)).status_code == 404
        # Starlette re-raises into the caller after answering 500: a real server would not.
        quiet = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=quiet, base_url="http://testserver") as http:
            failed = await http.post(f"/hooks/{token}/boom")
            assert failed.status_code == 500 and token not in failed.text
        await wait_status(run_id, "completed")
    finally:
        logger.remove(sink)
    text = "\n".join(lines)
    assert "webhook: payload delivered to hook:srv_approval#1" in text
    assert "/hooks/{token}/boom" in text  # the route's template, not its path
    assert token not in text and token[4:] not in text


async def test_hundred_concurrent_deliveries_one_wins(app: FastAPI) -> None:
    """Of 100 simultaneous deliveries of one token exactly one gets 202; the others get
    the 404 of a used token, and the run records one payload."""
    run_id, token = await _approval_token()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        answers = await asyncio.gather(
            *(
                http.post(f"/hooks/{token}", json={"approved": True, "approver": f"caller-{i}"})
                for i in range(100)
            )
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [202] + [404] * 99
    winner = next(a for a in answers if a.status_code == 202)
    assert winner.json()["run_id"] == run_id
    run = await wait_status(run_id, "completed")
    events = await get_workflow_events(run_id)
    received = [e for e in events if e.type == "hook.received"]
    assert len(received) == 1
    approver = received[0].data["payload"]["approver"]
    assert run.result_payload is not None and f'"by": "{approver}"' in run.result_payload
