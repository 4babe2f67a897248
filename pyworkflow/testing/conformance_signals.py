"""Conformance tests for runs' signal inboxes (``send_signal``, ``list_signals``). Used
exactly like :class:`~pyworkflow.testing.conformance.StorageConformance` (a ``storage``
fixture yielding a fresh backend).

(Before signals existed this module's name held the cancellation and hook tests; they
are :class:`~pyworkflow.testing.conformance_hooks.HookConformance` now.)
"""

from __future__ import annotations

import asyncio
import json

import pytest

from pyworkflow.core.exceptions import PayloadTooLargeError
from pyworkflow.storage.base import RETENTION, SIGNALS, StorageBackend
from pyworkflow.storage.schemas import RunStatus, SignalRecord
from pyworkflow.testing.conformance import append, at, create, fetch, make_run


async def send(
    storage: StorageBackend, run_id: str, name: str, value: object, signal_id: str, seconds: float
) -> SignalRecord | None:
    return await storage.send_signal(
        run_id, name, json.dumps(value), signal_id=signal_id, now=at(seconds)
    )


class SignalConformance:
    """Signal inboxes, as every backend must keep them."""

    async def test_backend_declares_signals(self, storage: StorageBackend) -> None:
        assert SIGNALS in storage.capabilities

    async def test_signals_are_numbered_and_listed_in_send_order(
        self, storage: StorageBackend
    ) -> None:
        await create(storage, "r1")
        for i, name in enumerate(["add", "add", "remove"]):
            stored = await send(storage, "r1", name, {"item": i}, f"s{i}", i)
            assert stored is not None and stored.sequence == i + 1
        signals = await storage.list_signals("r1")
        assert [s.sequence for s in signals] == [1, 2, 3]
        assert [s.name for s in signals] == ["add", "add", "remove"]
        assert [json.loads(s.payload) for s in signals] == [{"item": 0}, {"item": 1}, {"item": 2}]
        assert [s.signal_id for s in signals] == ["s0", "s1", "s2"]
        assert signals[2].sent_at == at(2) and signals[0].run_id == "r1"
        assert [s.sequence for s in await storage.list_signals("r1", after_sequence=1)] == [2, 3]
        assert [s.sequence for s in await storage.list_signals("r1", limit=2)] == [1, 2]
        assert await storage.list_signals("r1", after_sequence=3) == []

    async def test_inboxes_are_per_run(self, storage: StorageBackend) -> None:
        await create(storage, "r1")
        await create(storage, "r2")
        await send(storage, "r1", "a", 1, "x", 0)
        other = await send(storage, "r2", "b", 2, "x", 1)  # same signal id, other run
        assert other is not None and other.sequence == 1 and other.run_id == "r2"
        assert [s.name for s in await storage.list_signals("r1")] == ["a"]
        assert [s.name for s in await storage.list_signals("r2")] == ["b"]
        assert await storage.list_signals("unknown") == []

    async def test_a_repeated_send_stores_nothing_new(self, storage: StorageBackend) -> None:
        await create(storage, "r1")
        first = await send(storage, "r1", "add", 1, "same", 0)
        again = await send(storage, "r1", "add", 99, "same", 5)
        assert first is not None and again is not None
        assert again.sequence == first.sequence == 1 and json.loads(again.payload) == 1
        assert len(await storage.list_signals("r1")) == 1

    async def test_terminal_or_unknown_runs_take_no_signal(self, storage: StorageBackend) -> None:
        await storage.create_run(make_run("done", status=RunStatus.COMPLETED))
        assert await send(storage, "done", "add", 1, "s", 0) is None
        assert await storage.list_signals("done") == []
        assert await send(storage, "nope", "add", 1, "s", 0) is None

    async def test_sending_does_not_fence_out_the_runs_writer(
        self, storage: StorageBackend
    ) -> None:
        run = await create(storage, "r1", events=1, status=RunStatus.RUNNING)
        await send(storage, "r1", "add", 1, "s", 1)
        after = await fetch(storage, "r1")
        assert after.last_sequence == 1 and after.status == RunStatus.RUNNING
        assert after.updated_at == run.updated_at and after.wake_at is None
        await append(storage, "r1", 1)  # the writer appends at the sequence it knows
        assert (await fetch(storage, "r1")).last_sequence == 2

    async def test_a_suspended_run_becomes_due(self, storage: StorageBackend) -> None:
        await create(storage, "waiting", status=RunStatus.SUSPENDED)  # no timer
        await create(storage, "later", status=RunStatus.SUSPENDED, wake_at=at(3600))
        await create(storage, "sooner", status=RunStatus.SUSPENDED, wake_at=at(5))
        for run_id in ("waiting", "later", "sooner"):
            await send(storage, run_id, "go", None, "s", 10)
        assert (await fetch(storage, "waiting")).wake_at == at(10)
        assert (await fetch(storage, "later")).wake_at == at(10)
        assert (await fetch(storage, "sooner")).wake_at == at(5)  # already due earlier
        due = await storage.list_due_runs(at(10))
        assert set(due) == {"waiting", "later", "sooner"}
        run = await fetch(storage, "waiting")
        assert run.status == RunStatus.SUSPENDED and run.last_sequence == 1

    async def test_concurrent_senders_get_distinct_gapless_sequences(
        self, storage: StorageBackend
    ) -> None:
        await create(storage, "r1")
        sent = await asyncio.gather(*(send(storage, "r1", "add", i, f"s{i}", 0) for i in range(20)))
        assert sorted(s.sequence for s in sent if s is not None) == list(range(1, 21))
        signals = await storage.list_signals("r1")
        assert [s.sequence for s in signals] == list(range(1, 21))
        assert sorted(json.loads(s.payload) for s in signals) == list(range(20))

    async def test_a_reader_following_the_inbox_misses_nothing(
        self, storage: StorageBackend
    ) -> None:
        # What the run's owner does: read after the highest sequence it has taken. A
        # sequence given out of visibility order would be skipped for good.
        await create(storage, "r1")
        seen: list[int] = []
        done = asyncio.Event()

        async def follow() -> None:
            while True:
                finished = done.is_set()
                after = seen[-1] if seen else 0
                seen.extend(
                    s.sequence for s in await storage.list_signals("r1", after_sequence=after)
                )
                if finished:
                    return
                await asyncio.sleep(0)

        reader = asyncio.create_task(follow())
        await asyncio.gather(*(send(storage, "r1", "add", i, f"s{i}", 0) for i in range(30)))
        done.set()
        await reader
        assert seen == list(range(1, 31))

    async def test_an_oversized_payload_writes_nothing(self, storage: StorageBackend) -> None:
        await create(storage, "r1")
        huge = "x" * (storage.payload_limit.size + 10)
        with pytest.raises(PayloadTooLargeError):
            await send(storage, "r1", "add", huge, "s", 0)
        assert await storage.list_signals("r1") == []

    async def test_deleting_a_run_deletes_its_inbox(self, storage: StorageBackend) -> None:
        if RETENTION not in storage.capabilities:
            pytest.skip("backend does not delete runs")
        await create(storage, "r1", status=RunStatus.RUNNING)
        await send(storage, "r1", "add", 1, "s", 0)
        await append(storage, "r1", 1, status=RunStatus.COMPLETED)
        assert await storage.delete_runs(["r1"]) == 1
        assert await storage.list_signals("r1") == []


__all__ = ["SignalConformance", "send"]
