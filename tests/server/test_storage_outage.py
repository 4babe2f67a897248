"""The dashboard while its PostgreSQL is down for 10 seconds (a private server the test
starts and kills): requests answer 503 without the server's address, the webhook receiver
refuses with 503 (the sender retries) and writes nothing, and once PostgreSQL is back the
same app answers again without a restart, and a delivery then completes the run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pyworkflow import get_workflow_run, start
from pyworkflow.primitives.hook_tokens import derive_token
from pyworkflow.runtime import get_runtime
from pyworkflow.server import ServerSettings, create_app
from tests.private_servers import PrivatePostgres, require_module
from tests.server.conftest import ADMIN_TOKEN, client
from tests.server.flows import srv_approval

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def postgres() -> AsyncIterator[PrivatePostgres]:
    require_module("asyncpg", "postgres")
    server = PrivatePostgres()
    try:
        await server.setup()
        yield server
    finally:
        await server.destroy()


async def _status(run_id: str, wanted: str) -> None:
    for _ in range(200):
        run = await get_workflow_run(run_id)
        if run is not None and run.status == wanted:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never became {wanted}")


async def test_api_and_webhooks_ride_over_a_10_second_outage(postgres: PrivatePostgres) -> None:
    url = f"{postgres.url}{'&' if '?' in postgres.url else '?'}connect_timeout=1"
    app = create_app(url, settings=ServerSettings(token=ADMIN_TOKEN))
    try:
        run_id = await start(srv_approval, "o-1")
        await _status(run_id, "suspended")
        token = derive_token(run_id, "hook:srv_approval#1")
        async with client(app) as http:
            assert (await http.get("/api/runs")).status_code == 200

            await postgres.stop(crash=True)
            down = await http.get(f"/api/runs/{run_id}")
            assert down.status_code == 503, down.text
            assert str(postgres.port) not in down.text
            refused = await http.post(f"/hooks/{token}", json={"approved": True, "approver": "ops"})
            assert refused.status_code == 503, refused.text
            await asyncio.sleep(10)
            await postgres.start()

            back = await http.get(f"/api/runs/{run_id}")
            assert back.status_code == 200 and back.json()["status"] == "suspended"
            delivered = await http.post(
                f"/hooks/{token}", json={"approved": True, "approver": "ops"}
            )
            assert delivered.status_code == 202, delivered.text
        await _status(run_id, "completed")
        run = await get_workflow_run(run_id)
        assert run is not None and run.result == {"order_id": "o-1", "approved": True, "by": "ops"}
    finally:
        await get_runtime("local").shutdown()
        await app.state.pyworkflow.storage.close()
