"""Signals across a crash, on SQLite on disk and on PostgreSQL: the process running a
collector run is killed with SIGKILL in the middle of the step for the second signal;
more signals are sent while no process serves the run; a new process finishes it. Every
signal is taken once, in the order sent, and every step completion recorded once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pyworkflow import send_signal
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.config import storage_from_url
from tests.integration.child_output import read_line
from tests.services import require_service

APP = Path(__file__).with_name("signal_app.py")
ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture(params=["sqlite", "postgres"])
async def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'signals.db'}"
        return
    pytest.importorskip("asyncpg", reason="pip install 'pyworkflow-engine[postgres]'")
    from tests.storage.backend_postgres import admin_execute, with_options

    schema = f"pwtest_{uuid.uuid4().hex[:16]}"
    yield with_options(require_service("postgres"), schema=schema)
    await admin_execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def _spawn(tmp_path: Path, *args: str, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(APP),
        *args,
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": ROOT,
            "SIGNAL_LEDGER": str(tmp_path / "ledger.txt"),
            **env,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_signals_survive_a_crash_in_order_and_once(storage_url: str, tmp_path: Path) -> None:
    first = await _spawn(tmp_path, "start", storage_url, "4", SIGNAL_BLOCK_ON="2")
    run_id = (await read_line(first, "RUN", 60)).split()[1]
    storage: StorageBackend = storage_from_url(storage_url)
    await storage.connect()
    try:
        # This process has not the workflow's code: the signals are stored, the run is
        # made due, and the serving process takes them.
        await send_signal(run_id, "number", 1, storage=storage)
        await send_signal(run_id, "number", 2, storage=storage)
        await read_line(first, "BLOCKING")  # inside the step for the second signal
        first.send_signal(signal.SIGKILL)
        await first.wait()
        await send_signal(run_id, "number", 3, storage=storage)  # nobody serves the run now
        await send_signal(run_id, "number", 4, storage=storage)

        second = await _spawn(tmp_path, "serve", storage_url, run_id)
        done = await read_line(second, "DONE", 60)
        await second.wait()
        assert done == "DONE completed [1, 2, 3, 4]"

        events = await storage.get_events(run_id)
        received = [e.data["sequence"] for e in events if e.type.value == "signal.received"]
        assert received == [1, 2, 3, 4]
        taken = [e.data["index"] for e in events if e.type.value == "signal.consumed"]
        assert taken == [0, 1, 2, 3]
        completions = Counter(e.data["step_id"] for e in events if e.type.value == "step.completed")
        assert set(completions.values()) == {1} and len(completions) == 4
        assert "workflow.interrupted" in [e.type.value for e in events]
        ledger = Counter((tmp_path / "ledger.txt").read_text().split("\n"))
        assert ledger["record 1"] == 1 and ledger["record 3"] == 1 and ledger["record 4"] == 1
        assert ledger["record 2"] == 2  # the killed attempt, and the one after recovery
    finally:
        await storage.close()
