"""The worker registry beat: a thread with its own storage connection that keeps a
process's record fresh, lists the runs it is on, outlives a blocked event loop and a
storage outage, and removes the record on a clean stop. Real SQLite files."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from loguru import logger

from pyworkflow.core.exceptions import StorageUnavailableError
from pyworkflow.engine.workers import RETENTION, WorkerBeat, prune_workers
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.config import storage_from_url
from pyworkflow.storage.schemas import WorkerRecord, utcnow


@pytest.fixture
async def reader(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'wf.db'}"
    storage = storage_from_url(url)
    await storage.connect()
    yield url, storage
    await storage.close()


async def _until(predicate, limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_beat_lists_the_runs_held_and_a_stop_removes_the_record(reader) -> None:
    url, storage = reader
    beat = WorkerBeat("host:1:abc", lambda: storage_from_url(url), interval=0.05, queues=["q"])
    beat.start()
    try:
        with beat.holding("run_1"):

            async def listed() -> bool:
                return any(w.runs == ["run_1"] for w in await storage.list_workers())

            await _until(listed)
        [record] = await storage.list_workers()
        assert (record.worker_id, record.queues, record.kind) == ("host:1:abc", ["q"], "celery")

        async def released() -> bool:
            return [w.runs for w in await storage.list_workers()] == [[]]

        await _until(released)
    finally:
        beat.stop()
    assert await storage.list_workers() == []


async def test_beats_go_on_while_the_event_loop_is_blocked(reader) -> None:
    """What keeps a step that blocks its loop from looking dead: the beats come from
    another thread."""
    url, storage = reader
    beat = WorkerBeat("host:1:abc", lambda: storage_from_url(url), interval=0.05)
    beat.start()
    try:
        with beat.holding("run_1"):
            time.sleep(0.2)  # noqa: ASYNC251 - the first beat
            first = (await storage.list_workers())[0].last_beat
            time.sleep(0.5)  # noqa: ASYNC251 - blocking this loop is the point
            later = (await storage.list_workers())[0].last_beat
        assert (later - first).total_seconds() >= 0.3
    finally:
        beat.stop()


async def test_a_storage_outage_logs_one_warning_and_the_beats_resume(reader) -> None:
    url, storage = reader
    down = True
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING")

    def open_storage() -> StorageBackend:
        backend = storage_from_url(url)
        save = backend.save_worker

        async def flaky_save(worker: WorkerRecord) -> None:
            if down:
                raise StorageUnavailableError("connection refused")
            await save(worker)

        backend.save_worker = flaky_save  # type: ignore[method-assign]
        return backend

    beat = WorkerBeat("host:1:abc", open_storage, interval=0.02)
    beat.start()
    try:
        await asyncio.sleep(0.3)  # about 15 failed beats
        assert await storage.list_workers() == []
        down = False

        async def back() -> bool:
            return len(await storage.list_workers()) == 1

        await _until(back)
    finally:
        beat.stop()
        logger.remove(sink)
    warnings = [line for line in lines if "could not write its beat" in line]
    assert len(warnings) == 1, lines


async def test_records_of_workers_gone_longer_than_the_retention_are_pruned(reader) -> None:
    _, storage = reader
    now = utcnow()
    await storage.save_worker(WorkerRecord("gone", last_beat=now - RETENTION * 2))
    await storage.save_worker(WorkerRecord("dead-recently", last_beat=now - RETENTION / 2))
    await storage.save_worker(WorkerRecord("alive", last_beat=now))
    assert await prune_workers(storage, now) == 1
    assert [w.worker_id for w in await storage.list_workers()] == ["alive", "dead-recently"]


async def test_a_beat_reports_the_registered_workflows_and_old_records_still_read(reader) -> None:
    """Each beat lists the workflows registered in the process (``runs why`` names a
    workflow no live worker has); a record written before that field existed reads back
    with none, its other fields intact."""
    from pyworkflow import workflow

    @workflow(name="wb_reported")
    async def reported() -> None:
        return None

    url, storage = reader
    beat = WorkerBeat("host:2:def", lambda: storage_from_url(url), interval=0.05)
    beat.start()
    try:

        async def reporting() -> bool:
            return any("wb_reported" in w.workflows for w in await storage.list_workers())

        await _until(reporting)
    finally:
        beat.stop()

    old = '{"host": "h", "pid": 7, "kind": "celery", "queues": ["q"], "runs": ["r"]}'
    record = WorkerRecord.from_stored("old:1", utcnow(), old)
    assert (record.workflows, record.runs, record.queues, record.pid) == ([], ["r"], ["q"], 7)
