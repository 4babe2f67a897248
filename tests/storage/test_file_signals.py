"""The file backend's signal inboxes: one JSONL file per run whose committed length is in
the run record, carried over by every other write of the record."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pyworkflow.storage.file import FileStorageBackend
from pyworkflow.storage.schemas import RunStatus
from pyworkflow.testing.conformance import append, at, create
from pyworkflow.testing.conformance_signals import send


@pytest.fixture(autouse=True)
def _only_when_file_selected(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--backend", default=None) not in (None, "file"):
        pytest.skip("--backend selects another storage backend")


async def names(storage: FileStorageBackend, run_id: str) -> list[str]:
    return [s.name for s in await storage.list_signals(run_id)]


async def test_the_runs_own_writes_keep_the_inbox(tmp_path: Path) -> None:
    storage = FileStorageBackend(tmp_path)
    await create(storage, "r1", events=1, status=RunStatus.RUNNING)
    await send(storage, "r1", "a", 1, "s1", 0)
    assert await storage.acquire_lease("r1", "w", at(60), at(0))
    await storage.renew_leases(["r1"], "w", at(120))
    await append(storage, "r1", 1)
    assert await storage.request_cancellation("r1", "stop", at(1))
    await storage.release_lease("r1", "w")
    await send(storage, "r1", "b", 2, "s2", 2)
    assert await names(storage, "r1") == ["a", "b"]
    assert await names(FileStorageBackend(tmp_path), "r1") == ["a", "b"]  # reopened


async def test_bytes_past_the_committed_inbox_are_invisible(tmp_path: Path) -> None:
    # What a crash between writing the line and the run record leaves behind.
    storage = FileStorageBackend(tmp_path)
    await create(storage, "r1")
    await send(storage, "r1", "a", 1, "s1", 0)
    inbox = storage._signals_path("r1")
    inbox.write_bytes(inbox.read_bytes() + b'{"sequence": 2, "half a li')
    assert await names(storage, "r1") == ["a"]
    stored = await send(storage, "r1", "b", 2, "s2", 1)
    assert stored is not None and stored.sequence == 2
    assert await names(storage, "r1") == ["a", "b"]
    lines = storage._signals_path("r1").read_bytes().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["a", "b"]


async def test_senders_sharing_the_directory_get_gapless_sequences(tmp_path: Path) -> None:
    # Separate backends stand for separate processes: only the file locks order them.
    backends = [FileStorageBackend(tmp_path) for _ in range(4)]
    await create(backends[0], "r1", status=RunStatus.SUSPENDED)
    await asyncio.gather(*(send(backends[i % 4], "r1", "add", i, f"s{i}", 5) for i in range(24)))
    signals = await backends[1].list_signals("r1")
    assert [s.sequence for s in signals] == list(range(1, 25))
    assert sorted(json.loads(s.payload) for s in signals) == list(range(24))
    assert await backends[2].list_due_runs(at(5)) == ["r1"]


async def test_a_deleted_run_leaves_no_inbox_file(tmp_path: Path) -> None:
    storage = FileStorageBackend(tmp_path)
    await create(storage, "r1", status=RunStatus.RUNNING)
    await send(storage, "r1", "a", 1, "s1", 0)
    await append(storage, "r1", 1, status=RunStatus.COMPLETED)
    assert await storage.delete_runs(["r1"]) == 1
    assert list((tmp_path / "signals").iterdir()) == []
