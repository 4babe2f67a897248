"""The webhook receiver served by a real ``pyworkflow dashboard`` (uvicorn subprocess), on
SQLite and PostgreSQL: the run is started here, payloads go over HTTP to the server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import pyworkflow
from pyworkflow import get_workflow_events, get_workflow_run, resume, start
from pyworkflow.core.config import get_storage
from pyworkflow.runtime import get_runtime
from tests.server.flows import srv_approval
from tests.server.hook_flows import token_of, wait_status
from tests.server.live_server import dashboard


@pytest.fixture
async def storage_url(backend_url: str) -> AsyncIterator[str]:
    """``backend_url``, configured as this process's storage (runs start here)."""
    pyworkflow.configure(storage=backend_url)
    yield backend_url
    await get_runtime("local").shutdown()
    await get_storage().close()


async def _suspended_approval() -> tuple[str, str]:
    run_id = await start(srv_approval, "order-live")
    await wait_status(run_id, "suspended")
    return run_id, token_of(run_id, "srv_approval")


async def test_hundred_concurrent_deliveries_over_http(storage_url: str, tmp_path: Path) -> None:
    """100 simultaneous POSTs of one token to a real server: one 202, 99 of the 404 a
    used token gets; the server (it has the code) finishes the run with that payload."""
    with dashboard(storage_url, tmp_path) as server:
        run_id, token = await _suspended_approval()
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as http:
            answers = await asyncio.gather(
                *(
                    http.post(f"/hooks/{token}", json={"approved": True, "approver": f"c{i}"})
                    for i in range(100)
                )
            )
        assert sorted(a.status_code for a in answers) == [202] + [404] * 99
        winner = next(a for a in answers if a.status_code == 202).json()
        assert winner == {"run_id": run_id, "hook_id": "hook:srv_approval#1"}
        run = await wait_status(run_id, "completed")
        received = [e for e in await get_workflow_events(run_id) if e.type == "hook.received"]
        assert len(received) == 1
        approver = received[0].data["payload"]["approver"]
        assert run.result_payload is not None and f'"by": "{approver}"' in run.result_payload
        output = server.output()
    assert token not in output and token[4:] not in output


async def test_server_without_the_code_validates_with_the_stored_schema(
    storage_url: str, tmp_path: Path
) -> None:
    """A dashboard that never imported the workflow refuses what its model would refuse
    (same 422 shape), stores a valid payload, and a process with the code resumes it."""
    with dashboard(storage_url, tmp_path, modules=()) as server:
        run_id, token = await _suspended_approval()
        async with httpx.AsyncClient(base_url=server.url) as http:
            refused = await http.post(f"/hooks/{token}", json={"approved": "yes"})
            assert refused.status_code == 422, refused.text
            errors = {e["path"]: e["message"] for e in refused.json()["errors"]}
            assert "boolean" in errors["approved"] and "'approver'" in errors[""]  # required
            accepted = await http.post(
                f"/hooks/{token}", json={"approved": False, "approver": "bo"}
            )
            assert accepted.status_code == 202
    run = await get_workflow_run(run_id)
    assert run is not None and run.status == "suspended"  # stored; nobody there to resume it
    await resume(run_id)
    run = await wait_status(run_id, "completed")
    assert run.result_payload is not None and '"approved": false' in run.result_payload
