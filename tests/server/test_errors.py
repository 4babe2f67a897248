"""Answers to bad requests and failing storage: one JSON shape, the right status, nothing
internal (server addresses, credentials) in the body."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from pyworkflow.server import ServerSettings, create_app
from tests.server.conftest import ADMIN_TOKEN, client


async def test_invalid_body_has_one_error_shape(app: FastAPI) -> None:
    async with client(app) as http:
        answer = await http.post("/api/workflows/srv_quick/runs", json={"args": "not a list"})
    assert answer.status_code == 422
    body = answer.json()
    assert body["detail"].startswith("invalid body.args:")
    assert body["errors"][0]["loc"] == ["body", "args"]


async def test_body_over_the_limit_is_refused_before_it_is_read(tmp_path) -> None:
    settings = ServerSettings(token=ADMIN_TOKEN, max_body_bytes=1000)
    app = create_app(f"sqlite:///{tmp_path / 'l.db'}", settings=settings)
    big = {"args": ["x" * 2000]}
    async with client(app) as http:
        declared = await http.post("/api/workflows/srv_quick/runs", json=big)
        assert declared.status_code == 413 and "1000 bytes" in declared.json()["detail"]

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            yield b'{"args": ["'
            for _ in range(50):
                yield b"y" * 100
            yield b'"]}'

        streamed = await http.post(
            "/api/workflows/srv_quick/runs",
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )
        assert streamed.status_code == 413
        small = await http.post("/api/runs/nope/cancel", json={"reason": "r"})
        assert small.status_code == 404  # under the limit: the route answers


async def test_storage_down_is_503_without_its_address() -> None:
    pytest.importorskip("asyncpg")
    url = "postgresql://secretuser:hunter2password@127.0.0.1:1/db?schema=s&connect_timeout=1"
    app = create_app(url, settings=ServerSettings(token=ADMIN_TOKEN))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as h:
        answer = await h.get("/api/runs")
    assert answer.status_code == 503, answer.text
    for secret in ("secretuser", "hunter2password", "127.0.0.1:1"):
        assert secret not in answer.text
