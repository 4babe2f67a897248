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


async def test_metrics_count_runs_started_and_cancelled_through_the_api(app: FastAPI) -> None:
    """What this process did for the API's callers is on its ``/metrics``: a run started
    (and executed here by the local runtime), a sleeping run cancelled."""
    from tests.scrape import Scrape
    from tests.server.waiting import wait_status

    async with client(app, ADMIN_TOKEN) as http:
        before = Scrape((await http.get("/metrics")).text)
        quick = (await http.post("/api/workflows/srv_quick/runs", json={"args": [2]})).json()
        sleeper = await http.post("/api/workflows/srv_sleeper/runs", json={"args": [3600]})
        await wait_status(quick["run_id"], "completed")
        await wait_status(sleeper.json()["run_id"], "suspended")
        await http.post(f"/api/runs/{sleeper.json()['run_id']}/cancel", json={"reason": "t"})
        await wait_status(sleeper.json()["run_id"], "cancelled")
        after = Scrape((await http.get("/metrics")).text)

    def added(metric: str, **labels: str) -> float:
        return after.value(metric, **labels) - before.value(metric, **labels)

    finished = "pyworkflow_runs_finished_total"
    assert added("pyworkflow_runs_started_total", workflow="srv_quick") == 1
    assert added(finished, workflow="srv_quick", status="completed") == 1
    assert added(finished, workflow="srv_sleeper", status="cancelled") == 1
    assert added("pyworkflow_steps_total", workflow="srv_quick", status="completed") == 1
    assert "# TYPE pyworkflow_step_duration_seconds histogram" in after.text
