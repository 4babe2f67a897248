"""``/api/runs``: listing with filters and cursors, a run, its events; start and cancel."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from pyworkflow import get_workflow_run, start
from tests.server.conftest import READ_TOKEN, client
from tests.server.flows import srv_price_watch, srv_quick, srv_sleeper


async def _wait_status(run_id: str, wanted: str, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        run = await get_workflow_run(run_id)
        if run is not None and run.status == wanted:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never became {wanted}")


async def test_list_filters_and_pages(app: FastAPI) -> None:
    ids = [await start(srv_quick, i) for i in range(5)]
    sleeping = await start(srv_sleeper, 3600)
    async with client(app, READ_TOKEN) as http:
        page = (await http.get("/api/runs", params={"limit": 2})).json()
        assert len(page["runs"]) == 2 and page["next_cursor"]
        seen = [r["run_id"] for r in page["runs"]]
        while page["next_cursor"]:
            page = (
                await http.get("/api/runs", params={"limit": 2, "cursor": page["next_cursor"]})
            ).json()
            seen += [r["run_id"] for r in page["runs"]]
        assert sorted(seen) == sorted([*ids, sleeping])

        suspended = (await http.get("/api/runs", params={"status": "suspended"})).json()
        assert [r["run_id"] for r in suspended["runs"]] == [sleeping]
        by_name = (await http.get("/api/runs", params={"workflow": "srv_quick"})).json()
        assert sorted(r["run_id"] for r in by_name["runs"]) == sorted(ids)
        tagged = (await http.get("/api/runs", params={"tag": "srv-test"})).json()
        assert len(tagged["runs"]) == 5

        prefix = (await http.get("/api/runs", params={"run_id_prefix": ids[0]})).json()
        assert [r["run_id"] for r in prefix["runs"]] == [ids[0]]

        async def prefixed(text: str) -> list[str]:
            answer = await http.get("/api/runs", params={"run_id_prefix": text})
            return [r["run_id"] for r in answer.json()["runs"]]

        short = ids[0][:6]
        assert sorted(await prefixed(short)) == sorted(
            i for i in [*ids, sleeping] if i.startswith(short)
        )
        assert sorted(await prefixed("run_")) == sorted([*ids, sleeping])
        assert await prefixed("run%") == []  # a literal %, not a wildcard

        bad = await http.get("/api/runs", params={"cursor": "nonsense"})
        assert bad.status_code == 400 and "cursor" in bad.json()["detail"]


async def test_run_detail_and_events(app: FastAPI) -> None:
    run_id = await start(srv_quick, 21)
    async with client(app, READ_TOKEN) as http:
        run = (await http.get(f"/api/runs/{run_id}")).json()
        assert run["status"] == "completed" and run["result"] == 42 and run["args"] == [21]
        events = (await http.get(f"/api/runs/{run_id}/events")).json()["events"]
        assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
        assert events[0]["type"] == "workflow.started"
        missing = await http.get("/api/runs/nope")
        assert missing.status_code == 404


async def test_start_by_name_and_cancel(app: FastAPI) -> None:
    async with client(app) as http:
        answer = await http.post(
            "/api/workflows/srv_sleeper/runs", json={"args": [3600], "idempotency_key": "k1"}
        )
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]
        again = await http.post(
            "/api/workflows/srv_sleeper/runs", json={"args": [3600], "idempotency_key": "k1"}
        )
        assert again.json()["run_id"] == run_id
        await _wait_status(run_id, "suspended")
        cancelled = await http.post(f"/api/runs/{run_id}/cancel", json={"reason": "test"})
        assert cancelled.status_code == 202 and cancelled.json()["cancelled"] is True
        await _wait_status(run_id, "cancelled")
        unknown = await http.post("/api/workflows/not_here/runs", json={})
        assert unknown.status_code == 409 and "--module" in unknown.json()["detail"]


async def test_start_with_a_queue(app: FastAPI) -> None:
    """A run started over the API may name its Celery queue; it is stored with the run
    and shown in its detail. A bad name is a 422 naming the field, and nothing starts."""
    async with client(app) as http:
        answer = await http.post(
            "/api/workflows/srv_quick/runs", json={"args": [2], "queue": "team-a.billing"}
        )
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]
        await _wait_status(run_id, "completed")
        detail = await http.get(f"/api/runs/{run_id}")
        assert detail.json()["queue"] == "team-a.billing"
        bad = await http.post("/api/workflows/srv_quick/runs", json={"queue": "no spaces"})
        assert bad.status_code == 422 and "queue" in bad.text


async def test_tokens(app: FastAPI) -> None:
    async with client(app, token=None) as anonymous:
        assert (await anonymous.get("/api/runs")).status_code == 401
        assert (await anonymous.get("/healthz")).status_code == 200
    async with client(app, READ_TOKEN) as reader:
        assert (await reader.get("/api/runs")).status_code == 200
        refused = await reader.post("/api/workflows/srv_quick/runs", json={"args": [1]})
        assert refused.status_code == 403
    async with client(app, "wrong-token-0123456789") as stranger:
        assert (await stranger.get("/api/runs")).status_code == 401


async def test_signals_over_http(app: FastAPI) -> None:
    """Signals sent with ``POST /api/runs/{id}/signals/{name}`` reach the waiting run in
    order; a repeated signal_id is stored once; bad payloads, unknown and ended runs get
    clear errors (nothing stored)."""
    run_id = await start(srv_price_watch, 2)
    await _wait_status(run_id, "suspended")
    async with client(app) as http:
        url = f"/api/runs/{run_id}/signals/srv_price"
        refused = await http.post(url, json={"payload": {"sku": "a", "cents": "many"}})
        assert refused.status_code == 422 and refused.json()["errors"][0]["loc"] == ["cents"]
        first = await http.post(
            url, json={"payload": {"sku": "a", "cents": 150}, "signal_id": "p1"}
        )
        assert first.status_code == 202, first.text
        assert first.json() == {
            "run_id": run_id,
            "name": "srv_price",
            "sequence": 1,
            "signal_id": "p1",
        }
        again = await http.post(
            url, json={"payload": {"sku": "a", "cents": 999}, "signal_id": "p1"}
        )
        assert again.json()["sequence"] == 1  # stored once
        second = await http.post(url, json={"payload": {"sku": "b", "cents": 120}})
        assert second.json()["sequence"] == 2
        await _wait_status(run_id, "completed")
        run = await get_workflow_run(run_id)
        assert run is not None and run.result == [150, 120]

        ended = await http.post(url, json={"payload": {"sku": "c", "cents": 1}})
        assert ended.status_code == 409 and "has ended" in ended.json()["detail"]
        unknown = await http.post("/api/runs/run_nope/signals/srv_price", json={})
        assert unknown.status_code == 404
        bad_name = await http.post(f"/api/runs/{run_id}/signals/bad%20name", json={})
        assert bad_name.status_code == 400 and "signal name" in bad_name.json()["detail"]
    async with client(app, READ_TOKEN) as http:  # sending needs the admin token
        denied = await http.post(url, json={"payload": {"sku": "a", "cents": 1}})
        assert denied.status_code == 403


async def test_queries_over_http(app: FastAPI) -> None:
    """``POST /api/runs/{id}/queries/{name}``: the server (which imported the workflow's
    module) answers from the run's replayed state; unknown runs and queries are 404s."""
    run_id = await start(srv_price_watch, 2)
    await _wait_status(run_id, "suspended")
    async with client(app, READ_TOKEN) as http:
        answer = await http.post(f"/api/runs/{run_id}/queries/seen", json={})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "run_id": run_id,
            "name": "seen",
            "answer": {"prices": [], "left": 2},
        }
        unknown = await http.post(f"/api/runs/{run_id}/queries/nope")
        assert unknown.status_code == 404 and "has no query 'nope'" in unknown.json()["detail"]
        missing = await http.post("/api/runs/run_nope/queries/seen")
        assert missing.status_code == 404
        bad = await http.post(f"/api/runs/{run_id}/queries/seen", json={"timeout": 0})
        assert bad.status_code == 422


async def test_signal_with_start_over_http(app: FastAPI) -> None:
    """``POST /api/workflows/{name}/runs`` with ``signal``: the run starts having received
    it; the same idempotency key again sends the next signal to that run."""
    async with client(app) as http:
        body = {"args": [2], "idempotency_key": "sw-1"}
        first = await http.post(
            "/api/workflows/srv_price_watch/runs",
            json={**body, "signal": {"name": "srv_price", "payload": {"sku": "a", "cents": 7}}},
        )
        assert first.status_code == 202, first.text
        run_id = first.json()["run_id"]
        again = await http.post(
            "/api/workflows/srv_price_watch/runs",
            json={**body, "signal": {"name": "srv_price", "payload": {"sku": "b", "cents": 8}}},
        )
        assert again.json()["run_id"] == run_id
        await _wait_status(run_id, "completed")
        run = await get_workflow_run(run_id)
        assert run is not None and run.result == [7, 8]
        bad = await http.post(
            "/api/workflows/srv_price_watch/runs",
            json={"args": [1], "signal": {"name": "srv_price", "payload": {"cents": "x"}}},
        )
        assert bad.status_code == 422
