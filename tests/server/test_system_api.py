"""``/api/workflows`` (names in storage joined with the workflows this server imported)
and ``/api/workers`` (the worker registry, alive or dead)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from pyworkflow import create_schedule, get_config, get_storage, start
from pyworkflow.engine.workers import WorkerBeat
from pyworkflow.server import ServerSettings, create_app
from pyworkflow.server.routes import system
from pyworkflow.storage.base import WORKERS
from pyworkflow.storage.config import storage_from_url
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.schemas import RunStatus, WorkerRecord, WorkflowRun, utcnow
from tests.server.conftest import ADMIN_TOKEN, READ_TOKEN, client
from tests.server.flows import srv_fails, srv_quick
from tests.server.waiting import wait_status


def _by_name(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in answer["workflows"]}


async def _ghost_run(run_id: str, tags: list[str], status: RunStatus = RunStatus.COMPLETED) -> None:
    """A run of a workflow this process never imported (started by another service)."""
    await get_storage().create_run(
        WorkflowRun(run_id=run_id, workflow_name="ghost_flow", status=status, tags=tags)
    )


async def test_workflows_seen_and_registered(app: FastAPI) -> None:
    for i in range(2):
        await wait_status(await start(srv_quick, i), "completed")
    await wait_status(await start(srv_fails), "failed")
    await _ghost_run("g1", ["billing", "retry-of:g0"])
    await _ghost_run("g2", ["billing"], RunStatus.RUNNING)
    await create_schedule(workflow_name="srv_quick", spec="1h", args=(1,))

    async with client(app, READ_TOKEN) as http:
        answer = (await http.get("/api/workflows")).json()
    assert answer["names_from"] == "index"
    workflows = _by_name(answer)

    quick = workflows["srv_quick"]
    assert quick["registered"] and quick["seen_in_storage"]
    assert quick["recent_runs"] == {"completed": 2} and quick["schedules"] == 1
    assert quick["tags"] == ["srv-test"] and quick["options"]["tags"] == ["srv-test"]
    assert quick["module"] == "tests.server.flows:srv_quick"
    assert quick["signature"] == "srv_quick(x: int) -> int"
    assert quick["parameters"] == [
        {
            "name": "x",
            "kind": "positional_or_keyword",
            "annotation": "int",
            "required": True,
            "default": None,
        }
    ]
    assert quick["last_run_at"] is not None
    assert workflows["srv_fails"]["recent_runs"] == {"failed": 1}

    ghost = workflows["ghost_flow"]
    assert ghost["seen_in_storage"] and not ghost["registered"]
    assert ghost["options"] is None and ghost["signature"] is None
    assert ghost["tags"] == ["billing"]  # the per-run retry-of tag is not the workflow's
    assert ghost["recent_runs"] == {"completed": 1, "running": 1}

    approval = workflows["srv_approval"]  # imported here, never run
    assert approval["registered"] and not approval["seen_in_storage"]
    assert approval["recent_runs"] == {} and approval["last_run_at"] is None
    assert approval["summary"].startswith("Waits for a typed hook")


async def test_workflows_older_than_the_scanned_runs_are_still_listed(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _ghost_run("old", ["billing"])
    for i in range(3):
        await wait_status(await start(srv_quick, i), "completed")
    monkeypatch.setattr(system, "RECENT_RUNS_SCANNED", 2)
    async with client(app, READ_TOKEN) as http:
        answer = (await http.get("/api/workflows")).json()
    assert answer["recent_runs_scanned"] == 2
    ghost = _by_name(answer)["ghost_flow"]
    assert ghost["seen_in_storage"] and ghost["recent_runs"] == {}
    assert ghost["last_run_at"] is not None and ghost["tags"] == ["billing"]


async def test_workflows_on_a_backend_without_a_name_index(tmp_path: Path) -> None:
    """The file backend has no name index: names come from the newest runs."""
    import tests.server.flows  # noqa: F401 - registers the workflows

    settings = ServerSettings(token=ADMIN_TOKEN, read_token=READ_TOKEN)
    app = create_app(f"file://{tmp_path / 'data'}", settings=settings)
    await _ghost_run("g1", [])
    async with client(app, READ_TOKEN) as http:
        answer = (await http.get("/api/workflows")).json()
    assert answer["names_from"] == "recent_runs"
    assert _by_name(answer)["ghost_flow"]["recent_runs"] == {"completed": 1}
    assert _by_name(answer)["srv_quick"]["registered"]


async def test_workers_alive_and_dead(app: FastAPI) -> None:
    storage = get_storage()
    ttl = get_config().lease_ttl
    now = utcnow()
    await storage.save_worker(
        WorkerRecord(
            worker_id="celery-a",
            host="box-1",
            pid=101,
            queues=["pyworkflow.default", "pyworkflow.steps"],
            runs=["run-1", "run-2"],
            started_at=now - timedelta(hours=1),
            last_beat=now,
            version="9.9.9",
        )
    )
    await storage.save_worker(
        WorkerRecord(
            worker_id="celery-b", host="box-2", pid=202, last_beat=now - timedelta(seconds=2 * ttl)
        )
    )
    async with client(app, READ_TOKEN) as http:
        answer = (await http.get("/api/workers")).json()
    assert answer["lease_ttl"] == ttl and answer["note"] is None
    alive, dead = answer["workers"]
    assert alive["worker_id"] == "celery-a" and alive["alive"] is True
    assert alive["host"] == "box-1" and alive["pid"] == 101 and alive["kind"] == "celery"
    assert alive["queues"] == ["pyworkflow.default", "pyworkflow.steps"]
    assert alive["runs"] == ["run-1", "run-2"] and alive["runs_held"] == 2
    assert alive["version"] == "9.9.9" and alive["seconds_since_beat"] < ttl
    assert dead["worker_id"] == "celery-b" and dead["alive"] is False
    assert dead["seconds_since_beat"] >= 2 * ttl and dead["runs_held"] == 0


@pytest.fixture
async def beat(backend_url: str, app: FastAPI) -> AsyncIterator[WorkerBeat]:
    """A real worker beat, writing from its own thread and storage connection."""
    worker = WorkerBeat(
        "beating-worker",
        lambda: storage_from_url(backend_url),
        interval=0.1,
        kind="scheduler",
        queues=["q1"],
    )
    worker.start()
    yield worker
    worker.stop()


async def test_a_beating_worker_shows_its_runs_and_leaves(app: FastAPI, beat: WorkerBeat) -> None:
    async def shown() -> dict[str, Any] | None:
        async with client(app, READ_TOKEN) as http:
            workers = (await http.get("/api/workers")).json()["workers"]
        return next((w for w in workers if w["worker_id"] == "beating-worker"), None)

    with beat.holding("run-held"):
        for _ in range(100):
            worker = await shown()
            if worker is not None and worker["runs"] == ["run-held"]:
                break
            await asyncio.sleep(0.05)
        assert worker is not None and worker["alive"] and worker["kind"] == "scheduler"
        assert worker["queues"] == ["q1"] and worker["runs_held"] == 1
    await asyncio.to_thread(beat.stop)  # a clean stop deletes the record
    assert await shown() is None


async def test_workers_without_a_registry() -> None:
    backend = InMemoryStorageBackend()
    backend.capabilities = backend.capabilities - {WORKERS}  # as a backend may per instance
    app = create_app(backend, settings=ServerSettings(token=ADMIN_TOKEN, read_token=READ_TOKEN))
    async with client(app, READ_TOKEN) as http:
        answer = (await http.get("/api/workers")).json()
    assert answer["workers"] == [] and "no worker registry" in answer["note"]
    async with client(app, token=None) as anonymous:
        assert (await anonymous.get("/api/workers")).status_code == 401
        assert (await anonymous.get("/api/workflows")).status_code == 401
