"""Conformance tests for the worker registry half of the storage contract: one record per
worker process, replaced at every beat. Used exactly like
:class:`~pyworkflow.testing.conformance.StorageConformance` (a ``storage`` fixture yielding
a fresh backend; an optional ``storage_url`` fixture enables the two-instance test)."""

from __future__ import annotations

from datetime import UTC

import pytest

from pyworkflow.storage.base import WORKERS, StorageBackend
from pyworkflow.storage.config import storage_from_url
from pyworkflow.storage.schemas import WorkerRecord
from pyworkflow.testing.conformance import T0, at, storage_url_or_skip


def make_worker(worker_id: str, **kw: object) -> WorkerRecord:
    values: dict[str, object] = {
        "worker_id": worker_id,
        "host": "web-1",
        "pid": 4242,
        "kind": "celery",
        "queues": ["pyworkflow.workflows", "pyworkflow.steps"],
        "runs": [],
        "started_at": T0,
        "last_beat": T0,
        "version": "1.2.3",
    }
    values.update(kw)
    return WorkerRecord(**values)  # type: ignore[arg-type]


class WorkerConformance:
    """The worker registry, as every backend with the ``workers`` capability keeps it."""

    async def test_backend_declares_the_workers_capability(self, storage: StorageBackend) -> None:
        assert WORKERS in storage.capabilities

    async def test_a_saved_worker_reads_back_field_for_field(self, storage: StorageBackend) -> None:
        worker = make_worker("web-1:4242:abc", runs=["run_1", "run_2"])
        await storage.save_worker(worker)
        [stored] = await storage.list_workers()
        assert stored == worker
        assert stored.last_beat.tzinfo is not None
        assert stored.last_beat.astimezone(UTC) == T0
        assert stored.started_at.astimezone(UTC) == T0

    async def test_saving_again_replaces_the_record(self, storage: StorageBackend) -> None:
        await storage.save_worker(make_worker("w1", runs=["run_1"]))
        beat = make_worker("w1", runs=["run_2", "run_3"], last_beat=at(10))
        await storage.save_worker(beat)
        [stored] = await storage.list_workers()
        assert stored.runs == ["run_2", "run_3"]
        assert stored.last_beat == at(10)

    async def test_a_beat_with_no_runs_clears_them(self, storage: StorageBackend) -> None:
        await storage.save_worker(make_worker("w1", runs=["run_1"]))
        await storage.save_worker(make_worker("w1", runs=[], last_beat=at(5)))
        [stored] = await storage.list_workers()
        assert stored.runs == []

    async def test_workers_are_listed_in_id_order(self, storage: StorageBackend) -> None:
        for worker_id in ["w3", "w1", "w2"]:
            await storage.save_worker(make_worker(worker_id))
        assert [w.worker_id for w in await storage.list_workers()] == ["w1", "w2", "w3"]
        assert [w.worker_id for w in await storage.list_workers(limit=2)] == ["w1", "w2"]

    async def test_workers_page_after_a_cursor(self, storage: StorageBackend) -> None:
        ids = [f"host-{i % 3}:{4000 + i}:tok{i:03d}" for i in range(25)]
        for worker_id in reversed(ids):
            await storage.save_worker(make_worker(worker_id))
        pages: list[list[str]] = []
        after: str | None = None
        while True:
            page = [w.worker_id for w in await storage.list_workers(limit=10, after=after)]
            pages.append(page)
            if len(page) < 10:
                break
            after = page[-1]
        assert [len(p) for p in pages] == [10, 10, 5]
        assert [w for p in pages for w in p] == sorted(ids)
        assert await storage.list_workers(after=sorted(ids)[-1]) == []

    async def test_the_registry_is_read_whole_however_large(self, storage: StorageBackend) -> None:
        from pyworkflow.engine.workers import all_workers, read_liveness

        for i in range(12):
            await storage.save_worker(make_worker(f"w{i:02d}", last_beat=at(100 if i else 0)))
        assert [w.worker_id for w in await all_workers(storage, page_size=5)] == [
            f"w{i:02d}" for i in range(12)
        ]
        liveness = await read_liveness(storage, at(101), ttl=30)
        assert liveness.dead == {"w00"}

    async def test_deleting_a_worker_removes_only_it(self, storage: StorageBackend) -> None:
        await storage.save_worker(make_worker("w1"))
        await storage.save_worker(make_worker("w2"))
        assert await storage.delete_worker("w1") is True
        assert await storage.delete_worker("w1") is False
        assert [w.worker_id for w in await storage.list_workers()] == ["w2"]

    async def test_the_registry_starts_empty(self, storage: StorageBackend) -> None:
        assert await storage.list_workers() == []

    async def test_another_instance_sees_the_beat(
        self, storage: StorageBackend, request: pytest.FixtureRequest
    ) -> None:
        """What the sweeper relies on: a beat written by one process is read by another."""
        url = storage_url_or_skip(storage, request, "cross_process")
        await storage.save_worker(make_worker("w1", runs=["run_1"], last_beat=at(3)))
        other = storage_from_url(url)
        await other.connect()
        try:
            [seen] = await other.list_workers()
            assert seen.runs == ["run_1"]
            assert seen.last_beat == at(3)
        finally:
            await other.close()
