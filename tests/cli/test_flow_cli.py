"""Runs waiting at a flow-control gate, as operators see them: ``runs status`` says what
a pending run is queued for, ``runs why`` names the gate, who holds its slots and how
many wait ahead (waiting by design: exit 0), and the HTTP listing carries ``queued``."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pyworkflow import workflow
from pyworkflow.cli import main
from pyworkflow.core.workflow import definition_of
from pyworkflow.engine import flow
from pyworkflow.engine.runs import RunRequest, build_run
from pyworkflow.server.models import RunSummary
from pyworkflow.storage.config import storage_from_url
from pyworkflow.storage.schemas import GateRecord, RunStatus, utcnow


@workflow(name="flowcli_sync", concurrency_limit=1, concurrency_key=lambda customer: customer)
async def sync(customer: str) -> str:
    return customer


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'flow.db'}"


def cli(db: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--storage", db, "-o", "json", *args], catch_exceptions=False)


def _queued(db: str) -> tuple[str, str, str]:
    """A holder executing elsewhere and two runs queued behind it, stored as the engine
    stores them. Returns (holder, first waiter, second waiter)."""

    async def go() -> tuple[str, str, str]:
        storage = storage_from_url(db)
        await storage.connect()
        ids = []
        for i, owner in enumerate(["elsewhere:1:x", flow.QUEUED_LIMIT, flow.QUEUED_LIMIT]):
            request = RunRequest(definition=definition_of(sync), args=("acme",), kwargs={})
            run, started = build_run(request, owner=None, lease_ttl=0)
            run.created_at += timedelta(milliseconds=i)
            run.status = RunStatus.RUNNING if i == 0 else RunStatus.PENDING
            run.lease_owner = owner
            run.lease_expires_at = utcnow() + timedelta(minutes=5)
            await storage.create_run(run, [started])
            ids.append(run.run_id)
        data: dict[str, Any] = {
            "limit": 1,
            "holders": [ids[0]],
            "waiting": [[ids[1], 1.0], [ids[2], 2.0]],
        }
        gate = GateRecord(flow.gate_key("flowcli_sync", "acme"), json.dumps(data))
        assert await storage.save_gate(gate, expected_version=None)
        summary = RunSummary.of(await storage.get_run(ids[2]))
        assert summary.queued == "concurrency limit"
        await storage.close()
        return ids[0], ids[1], ids[2]

    return asyncio.run(go())


def test_status_and_why_of_a_run_queued_behind_a_concurrency_limit(db: str) -> None:
    holder, first, second = _queued(db)
    status = cli(db, "runs", "status", second)
    assert status.exit_code == 0, status.output
    item = json.loads(status.output)
    assert item["status"] == "pending" and item["queued"] == "concurrency limit"
    assert json.loads(cli(db, "runs", "status", holder).output)["queued"] is None
    why = cli(db, "runs", "why", second)
    assert why.exit_code == 0, why.output  # waiting by design, not stuck
    causes = json.loads(why.output)["causes"]
    [gate] = [c for c in causes if c["kind"] == "concurrency"]
    assert "workflow 'flowcli_sync' key 'acme' (limit 1)" in gate["message"]
    assert f"held by {holder}" in gate["message"] and "1 run waits ahead" in gate["message"]
    assert gate["fix"] == f"pyworkflow runs why {holder}"
    first_causes = json.loads(cli(db, "runs", "why", first).output)["causes"]
    assert "0 runs wait ahead" in first_causes[0]["message"]
