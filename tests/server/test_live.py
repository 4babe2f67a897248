"""Server-sent events: a run's events as they are appended, ending with ``end``; the
runs stream showing runs as they start and change.

The app is served by a real uvicorn server on a free local port (on the test's event
loop, so runs started here execute there too): httpx's in-process transport collects a
whole response before returning it, which an endless stream never completes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from pyworkflow import get_workflow_run, start
from pyworkflow.server.routes import live
from tests.server.conftest import ADMIN_TOKEN, READ_TOKEN, client
from tests.server.flows import srv_quick, srv_sleeper
from tests.server.waiting import wait_status


@dataclass
class Served:
    url: str
    server: uvicorn.Server

    def client(self, token: str | None = READ_TOKEN) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10)


@pytest.fixture
async def served(app: FastAPI) -> AsyncIterator[Served]:
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield Served(f"http://127.0.0.1:{port}", server)
    server.should_exit = True
    await asyncio.wait_for(task, 10)


@dataclass
class Message:
    event: str | None
    data: Any
    id: str | None


async def messages(response: httpx.Response) -> AsyncIterator[Message]:
    """The events of a ``text/event-stream`` response (comments as event ``":"``)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield Message(":", line[1:].strip(), None)
        elif line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        elif "data" in fields:
            yield Message(fields.get("event"), json.loads(fields["data"]), fields.get("id"))
            fields = {}
        else:
            fields = {}


async def read_until(
    stream: AsyncIterator[Message], done: Any, within: float = 20
) -> list[Message]:
    out: list[Message] = []
    async with asyncio.timeout(within):
        async for msg in stream:
            out.append(msg)
            if done(msg):
                return out
    raise AssertionError(f"the stream ended first: {out}")


def _is(msg: Message, run_id: str, status: str) -> bool:
    return msg.event == "run" and msg.data["run_id"] == run_id and msg.data["status"] == status


async def test_run_events_arrive_in_order_until_end(served: Served) -> None:
    run_id = await start(srv_sleeper, 1.0)
    async with (
        served.client() as http,
        http.stream("GET", f"/api/runs/{run_id}/events/stream") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = messages(response)
        first = await read_until(stream, lambda m: m.event == "event")
        # Delivered while the run still sleeps: the stream follows it live.
        assert str((await get_workflow_run(run_id)).status) != "completed"  # type: ignore[union-attr]
        rest = await read_until(stream, lambda m: m.event == "end")
    events = [m for m in first + rest if m.event == "event"]
    sequences = [m.data["sequence"] for m in events]
    assert sequences == list(range(1, len(sequences) + 1))  # in order, none missing
    assert [m.id for m in events] == [str(s) for s in sequences]
    assert events[0].data["type"] == "workflow.started"
    assert events[-1].data["type"] == "workflow.completed"
    end = rest[-1].data
    assert end["run_id"] == run_id and end["status"] == "completed"
    async with served.client() as http:
        stored = (await http.get(f"/api/runs/{run_id}/events")).json()["events"]
    assert [e["event_id"] for e in stored] == [m.data["event_id"] for m in events]


async def test_resuming_after_an_event_id(served: Served) -> None:
    run_id = await start(srv_quick, 3)
    await wait_status(run_id, "completed")
    async with served.client() as http:
        total = len((await http.get(f"/api/runs/{run_id}/events")).json()["events"])
        for headers, params in (({"Last-Event-ID": "2"}, {"after": 0}), ({}, {"after": 2})):
            async with http.stream(
                "GET", f"/api/runs/{run_id}/events/stream", headers=headers, params=params
            ) as response:
                got = await read_until(messages(response), lambda m: m.event == "end")
            sequences = [m.data["sequence"] for m in got if m.event == "event"]
            assert sequences == list(range(3, total + 1))


async def test_runs_stream_shows_new_runs_and_their_changes(served: Served) -> None:
    before = await start(srv_quick, 1)
    await wait_status(before, "completed")
    async with served.client() as http, http.stream("GET", "/api/runs/stream") as response:
        stream = messages(response)
        snapshot = await read_until(stream, lambda m: m.event == "run")
        assert snapshot[-1].data["run_id"] == before
        async with served.client(ADMIN_TOKEN) as admin:
            started = await admin.post("/api/workflows/srv_sleeper/runs", json={"args": [0.5]})
        run_id = started.json()["run_id"]
        seen = await read_until(stream, lambda m: _is(m, run_id, "completed"))
    statuses = [m.data["status"] for m in seen if m.event == "run" and m.data["run_id"] == run_id]
    assert "suspended" in statuses and statuses[-1] == "completed"
    assert all(m.data["run_id"] != before for m in seen if m.event == "run")  # unchanged


async def test_a_run_leaving_a_filtered_stream_is_sent_once_more(served: Served) -> None:
    async with (
        served.client() as http,
        http.stream(
            "GET", "/api/runs/stream", params={"status": "suspended", "snapshot": "false"}
        ) as response,
    ):
        stream = messages(response)
        run_id = await start(srv_sleeper, 0.5)
        seen = await read_until(stream, lambda m: _is(m, run_id, "completed"))
    assert [(m.data["run_id"], m.data["status"]) for m in seen if m.event == "run"] == [
        (run_id, "suspended"),
        (run_id, "completed"),
    ]


async def _stream_tasks_end(served: Served, within: float) -> None:
    for _ in range(int(within / 0.05)):
        if not served.server.server_state.tasks:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the server still streams to a client that has gone")


async def test_a_stream_stops_when_its_client_goes(served: Served) -> None:
    await wait_status(await start(srv_quick, 1), "completed")
    async with served.client() as http, http.stream("GET", "/api/runs/stream") as response:
        await read_until(messages(response), lambda m: m.event == "run")
        assert len(served.server.server_state.tasks) == 1
    # Long before a heartbeat would fail to send, the server notices and stops polling.
    await _stream_tasks_end(served, within=2)


async def test_an_idle_stream_sends_heartbeats(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "HEARTBEAT_SECONDS", 0.2)
    async with served.client() as http, http.stream("GET", "/api/runs/stream") as response:
        got = await read_until(messages(response), lambda m: m.event == ":", within=5)
    assert [m.data for m in got] == ["keep-alive"]  # nothing else: no runs yet


async def test_stream_errors_before_streaming(app: FastAPI) -> None:
    run_id = await start(srv_quick, 2)
    async with client(app, token=None) as anonymous:
        assert (await anonymous.get("/api/runs/stream")).status_code == 401
        assert (await anonymous.get(f"/api/runs/{run_id}/events/stream")).status_code == 401
    async with client(app, READ_TOKEN) as http:
        missing = await http.get("/api/runs/nope/events/stream")
        assert missing.status_code == 404 and "nope" in missing.json()["detail"]
        bad = await http.get(f"/api/runs/{run_id}/events/stream", headers={"Last-Event-ID": "x"})
        assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["detail"]
        assert (await http.get("/api/runs/stream", params={"limit": 0})).status_code == 422
