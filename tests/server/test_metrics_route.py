"""``/metrics``: read token needed unless configured public; Prometheus text format."""

from __future__ import annotations

from fastapi import FastAPI

from pyworkflow.server import ServerSettings, create_app
from tests.server.conftest import ADMIN_TOKEN, READ_TOKEN, client


async def test_metrics_need_a_token_unless_public(app: FastAPI, tmp_path) -> None:
    async with client(app, token=None) as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 401
    async with client(app, READ_TOKEN) as reader:
        answer = await reader.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert "python_info" in answer.text  # prometheus_client's default collectors

    public = create_app(
        f"sqlite:///{tmp_path / 'p.db'}",
        settings=ServerSettings(token=ADMIN_TOKEN, public_metrics=True),
    )
    async with client(public, token=None) as scraper:
        assert (await scraper.get("/metrics")).status_code == 200
        assert (await scraper.get("/api/runs")).status_code == 401  # only /metrics is public
