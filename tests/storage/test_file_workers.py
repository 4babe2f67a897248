"""The file backend's worker registry files: one JSON file per worker, and what a
listing does with a file that is not a worker record."""

from __future__ import annotations

import json
from pathlib import Path

from pyworkflow.storage.file import FileStorageBackend
from pyworkflow.testing.conformance import at
from pyworkflow.testing.conformance_workers import make_worker


async def test_a_worker_is_one_file_replaced_at_each_beat(tmp_path: Path) -> None:
    storage = FileStorageBackend(tmp_path)
    await storage.save_worker(make_worker("web-1:42/x", runs=["r1"]))
    await storage.save_worker(make_worker("web-1:42/x", runs=["r2"], last_beat=at(5)))
    [path] = (tmp_path / "workers").iterdir()
    assert path.name == "web-1%3A42%2Fx.json"
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["worker_id"] == "web-1:42/x"
    assert json.loads(stored["data"])["runs"] == ["r2"]
    assert await storage.delete_worker("web-1:42/x") is True
    assert list((tmp_path / "workers").iterdir()) == []


async def test_files_that_are_not_worker_records_are_left_out(tmp_path: Path) -> None:
    storage = FileStorageBackend(tmp_path)
    await storage.save_worker(make_worker("w1", runs=["r1"]))
    await storage.save_worker(make_worker("w2", runs=["r2"]))
    workers = tmp_path / "workers"
    (workers / "stray.json").write_text('{"hello": "world"}', encoding="utf-8")
    (workers / "list.json").write_text("[1, 2]", encoding="utf-8")
    (workers / "w9.json").write_text(
        json.dumps({"worker_id": "w9", "last_beat": "yesterday", "data": "{}"}), encoding="utf-8"
    )
    # Data that is not a valid record reads back as a worker holding no runs.
    damaged = json.loads((workers / "w2.json").read_text(encoding="utf-8"))
    damaged["data"] = '{"runs": 7}'
    (workers / "w2.json").write_text(json.dumps(damaged), encoding="utf-8")
    listed = await storage.list_workers()
    assert [(w.worker_id, w.runs) for w in listed] == [("w1", ["r1"]), ("w2", [])]
