"""Conformance tests for the scans crash recovery makes, at depth: a run that needs
acting on is found however many newer runs the scan has to page past.

Earlier versions looked at the newest 1,000 runs only, so at scale an old run held by a
dead worker, or an old suspended run asked to cancel, was never found. These tests put
one such run behind :data:`NEWER` newer runs that match the same index query (and must
be left alone; an optional ``scan_depth`` fixture lowers the number for a backend
emulated too slowly to fill 5,000), then run the recovery policy's scans
(:mod:`pyworkflow.engine.recovery`) and check that they find exactly the old run, paging
with cursors (no page larger than the policy's page size, every page after the first
continuing from a cursor). Used like
:class:`~pyworkflow.testing.conformance.StorageConformance` (a ``storage`` fixture
yielding a fresh backend).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial
from typing import Any

import pytest

from pyworkflow.engine.recovery import (
    PAGE_SIZE,
    Recovery,
    cancel_signalled_runs,
    runs_to_recover,
)
from pyworkflow.engine.workers import read_liveness
from pyworkflow.storage.base import CANCELLATION, WORKERS, StorageBackend
from pyworkflow.storage.schemas import RunStatus, WorkerRecord
from pyworkflow.testing.conformance import at, make_run, optional_fixture

#: How many newer runs stand in front of the one the scan must find.
NEWER = 5_000
NOW = at(NEWER + 100)
LEASE_TTL = 30.0
# Lease owners of two Celery worker processes on another host (never judged by pid).
DEAD = "worker-host:4001:deadbeef0001"
LIVE = "worker-host:4002:a11ve0000002"


async def _in_chunks(calls: list[Callable[[], Awaitable[Any]]], size: int = 50) -> None:
    """Run ``calls`` a chunk at a time (backends with a connection pool fill faster)."""
    for first in range(0, len(calls), size):
        await asyncio.gather(*(call() for call in calls[first : first + size]))


def _watch_pages(storage: StorageBackend) -> list[dict[str, Any]]:
    """Record the keyword arguments of every ``list_runs`` call made on ``storage``."""
    calls: list[dict[str, Any]] = []
    original = storage.list_runs

    async def list_runs(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return await original(**kwargs)

    storage.list_runs = list_runs  # type: ignore[method-assign]
    return calls


def _depth(request: pytest.FixtureRequest) -> int:
    depth = optional_fixture(request, "scan_depth")
    return NEWER if depth is None else int(depth)


def _assert_cursor_paged(calls: list[dict[str, Any]], depth: int) -> None:
    assert len(calls) > depth // PAGE_SIZE, f"{len(calls)} pages for {depth} runs"
    assert all(call["limit"] <= PAGE_SIZE for call in calls)
    assert all(call.get("offset", 0) == 0 for call in calls)
    firsts = [call for call in calls if call.get("cursor") is None]
    # One first page per status the scan reads (running, pending; or suspended).
    assert len(firsts) <= 2, firsts


class ScanDepthConformance:
    """Recovery finds an old run behind :data:`NEWER` newer ones."""

    async def test_dead_owner_scan_reaches_a_run_behind_5000_newer(
        self, storage: StorageBackend, request: pytest.FixtureRequest
    ) -> None:
        if WORKERS not in storage.capabilities:
            pytest.skip("the backend keeps no worker registry")
        lease = NOW + timedelta(hours=1)  # unexpired: only the registry tells who died
        old = make_run("run-old", created_at=at(0), updated_at=at(0))
        old.lease_owner, old.lease_expires_at, old.last_sequence = DEAD, lease, 0
        await storage.create_run(old)

        async def newer(i: int) -> None:
            run = make_run(f"run-{i:05d}", created_at=at(1 + i), updated_at=at(1 + i))
            run.lease_owner, run.lease_expires_at = LIVE, lease
            await storage.create_run(run)

        await _in_chunks([partial(newer, i) for i in range(_depth(request))])
        beat = NOW - timedelta(seconds=1)
        await storage.save_worker(_worker(LIVE, beat))
        await storage.save_worker(_worker(DEAD, NOW - timedelta(seconds=10 * LEASE_TTL)))

        liveness = await read_liveness(storage, NOW, LEASE_TTL)
        assert liveness.dead == {DEAD}
        pages = _watch_pages(storage)
        found = [
            r
            async for r in runs_to_recover(
                storage, NOW, "sweep:me", lease_ttl=LEASE_TTL, liveness=liveness
            )
        ]
        assert found == [Recovery("run-old", steal_from=DEAD, counts=True)]
        _assert_cursor_paged(pages, _depth(request))

    async def test_cancel_requested_scan_reaches_a_run_behind_5000_newer(
        self, storage: StorageBackend, request: pytest.FixtureRequest
    ) -> None:
        if CANCELLATION not in storage.capabilities:
            pytest.skip("the backend records no cancellation requests")
        suspended = {"status": RunStatus.SUSPENDED, "wake_at": NOW + timedelta(days=1)}
        # Asked to cancel after its last write, by a process that could not wake it.
        await storage.create_run(
            make_run("run-old", created_at=at(0), updated_at=at(0), **suspended)
        )
        await storage.request_cancellation("run-old", "old", at(50))

        async def newer(i: int) -> None:
            # Asked to cancel too, but wrote since: it has seen the request.
            run_id = f"run-{i:05d}"
            written = NOW - timedelta(seconds=1)
            await storage.create_run(
                make_run(run_id, created_at=at(1 + i), updated_at=written, **suspended)
            )
            await storage.request_cancellation(run_id, "seen", at(1 + i))

        await _in_chunks([partial(newer, i) for i in range(_depth(request))])
        pages = _watch_pages(storage)
        assert await cancel_signalled_runs(storage) == ["run-old"]
        _assert_cursor_paged(pages, _depth(request))
        assert all(call["cancel_requested"] is True for call in pages)


def _worker(worker_id: str, last_beat: Any) -> WorkerRecord:
    return WorkerRecord(
        worker_id=worker_id,
        host="worker-host",
        pid=int(worker_id.split(":")[1]),
        kind="celery",
        queues=["pyworkflow.workflows"],
        runs=[],
        started_at=last_beat,
        last_beat=last_beat,
        version="test",
    )


__all__ = ["NEWER", "ScanDepthConformance"]
