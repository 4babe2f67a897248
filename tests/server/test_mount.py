"""The app mounted into a user's own FastAPI app under a prefix: routes, auth and the
interactive docs work there, and the parent's own routes are untouched."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from pyworkflow import start
from pyworkflow.server import ServerSettings, create_app
from tests.server.conftest import ADMIN_TOKEN
from tests.server.flows import srv_quick


async def test_mounted_under_a_prefix(tmp_path) -> None:
    parent = FastAPI()

    @parent.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    parent.mount(
        "/workflows",
        create_app(f"sqlite:///{tmp_path / 'm.db'}", settings=ServerSettings(token=ADMIN_TOKEN)),
    )
    run_id = await start(srv_quick, 4)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    transport = httpx.ASGITransport(app=parent)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        assert (await http.get("/ping")).json() == {"pong": "yes"}
        assert (await http.get("/workflows/api/runs")).status_code == 401
        runs = (await http.get("/workflows/api/runs", headers=headers)).json()["runs"]
        assert [r["run_id"] for r in runs] == [run_id]
        docs = await http.get("/workflows/api/docs", headers=headers)
        assert docs.status_code == 200 and "/workflows/api/openapi.json" in docs.text
        spec = await http.get("/workflows/api/openapi.json", headers=headers)
        assert "/api/runs/{run_id}" in spec.json()["paths"]
