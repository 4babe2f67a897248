"""The HTTP API under the Celery runtime: runs started, retried and cancelled through it
are executed by real worker processes (the server only writes and enqueues), and
``GET /api/workers`` shows those workers."""

from __future__ import annotations

import asyncio

import httpx

from pyworkflow.server import ServerSettings, create_app
from tests.celery.cluster import wait_all_terminal

TOKEN = "celery-admin-token-0123456789"


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


async def test_runs_started_through_the_api_execute_on_workers(make_cluster):
    cluster = await make_cluster()
    cluster.start_worker("w1")
    cluster.start_scheduler()
    app = create_app(settings=ServerSettings(token=TOKEN))
    async with _client(app) as http:
        answer = await http.post(
            "/api/workflows/pipeline/runs", json={"args": [3], "kwargs": {"nap": "0s"}}
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["runtime"] == "celery"
        run_id = answer.json()["run_id"]
        [run] = await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
        assert run.status.value == "completed", run.error

        retried = await http.post(f"/api/runs/{run_id}/retry")
        assert retried.status_code == 202, retried.text
        [again] = await wait_all_terminal(cluster.storage, [retried.json()["run_id"]], 60, cluster)
        assert again.result == run.result

        sleeping = (await http.post("/api/workflows/sleeper/runs", json={"args": [3600]})).json()
        for _ in range(200):
            got = (await http.get(f"/api/runs/{sleeping['run_id']}")).json()
            if got["status"] == "suspended":
                break
            await asyncio.sleep(0.1)
        assert (await http.post(f"/api/runs/{sleeping['run_id']}/cancel")).status_code == 202
        [cancelled] = await wait_all_terminal(cluster.storage, [sleeping["run_id"]], 60, cluster)
        assert cancelled.status.value == "cancelled"

        workers = (await http.get("/api/workers")).json()["workers"]
        kinds = {w["kind"] for w in workers if w["alive"]}
        assert kinds == {"celery", "scheduler"}, workers
        pool = [w for w in workers if w["kind"] == "celery"]
        assert len(pool) == 2  # worker w1 runs 2 pool processes, each beats
        assert all("pyworkflow.workflows" in w["queues"] for w in pool)
