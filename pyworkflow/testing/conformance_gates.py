"""Conformance tests for flow-control gates (``get_gate``, ``save_gate``). Used exactly
like :class:`~pyworkflow.testing.conformance.StorageConformance` (a ``storage`` fixture
yielding a fresh backend)."""

from __future__ import annotations

import asyncio
import json

import pytest

from pyworkflow.core.exceptions import PayloadTooLargeError
from pyworkflow.storage.base import FLOW_CONTROL, StorageBackend
from pyworkflow.storage.schemas import GateRecord
from pyworkflow.testing.conformance import at


def gate(key: str, value: object, seconds: float = 0) -> GateRecord:
    return GateRecord(key=key, data=json.dumps(value), updated_at=at(seconds))


class GateConformance:
    """Flow-control gates, as every backend must keep them."""

    async def test_backend_declares_flow_control(self, storage: StorageBackend) -> None:
        assert FLOW_CONTROL in storage.capabilities

    async def test_insert_then_read_back(self, storage: StorageBackend) -> None:
        assert await storage.get_gate("concurrency:charge:acme") is None
        new = gate("concurrency:charge:acme", {"holders": ["r1"]}, 3)
        assert await storage.save_gate(new, expected_version=None)
        assert new.version == 1
        stored = await storage.get_gate("concurrency:charge:acme")
        assert stored == GateRecord("concurrency:charge:acme", new.data, 1, at(3))
        assert await storage.get_gate("concurrency:charge:other") is None

    async def test_a_second_insert_of_a_key_is_refused(self, storage: StorageBackend) -> None:
        assert await storage.save_gate(gate("k", {"n": 1}), expected_version=None)
        assert not await storage.save_gate(gate("k", {"n": 2}), expected_version=None)
        stored = await storage.get_gate("k")
        assert stored is not None and json.loads(stored.data) == {"n": 1}

    async def test_updates_compare_and_set_on_the_version(self, storage: StorageBackend) -> None:
        assert await storage.save_gate(gate("k", {"n": 1}), expected_version=None)
        second = gate("k", {"n": 2}, 5)
        assert await storage.save_gate(second, expected_version=1)
        assert second.version == 2
        stale = gate("k", {"n": 99})
        assert not await storage.save_gate(stale, expected_version=1)
        assert stale.version == 0
        stored = await storage.get_gate("k")
        assert stored is not None and stored.version == 2 and stored.updated_at == at(5)
        assert json.loads(stored.data) == {"n": 2}
        assert not await storage.save_gate(gate("absent", {}), expected_version=1)
        assert await storage.get_gate("absent") is None

    async def test_of_concurrent_saves_from_one_version_one_wins(
        self, storage: StorageBackend
    ) -> None:
        assert await storage.save_gate(gate("k", {"n": 0}), expected_version=None)
        attempts = [gate("k", {"n": i}) for i in range(1, 9)]
        won = await asyncio.gather(*(storage.save_gate(g, expected_version=1) for g in attempts))
        assert sum(won) == 1
        winner = attempts[won.index(True)]
        stored = await storage.get_gate("k")
        assert stored is not None and stored.version == 2 and stored.data == winner.data

    async def test_concurrent_inserts_of_one_key_store_one(self, storage: StorageBackend) -> None:
        attempts = [gate("fresh", {"n": i}) for i in range(6)]
        won = await asyncio.gather(*(storage.save_gate(g, expected_version=None) for g in attempts))
        assert sum(won) == 1
        stored = await storage.get_gate("fresh")
        assert stored is not None and stored.data == attempts[won.index(True)].data

    async def test_keys_of_any_text_up_to_255_characters(self, storage: StorageBackend) -> None:
        keys = ["concurrency:wf:" + "é" * 240, "rate:wf", "concurrency:wf:a b/c'\"%_"]
        for i, key in enumerate(keys):
            assert await storage.save_gate(gate(key, {"i": i}), expected_version=None)
        for i, key in enumerate(keys):
            stored = await storage.get_gate(key)
            assert stored is not None and json.loads(stored.data) == {"i": i}
        assert await storage.get_gate("concurrency:wf:a b/c'\"%") is None  # no pattern match

    async def test_oversized_data_is_refused_before_writing(self, storage: StorageBackend) -> None:
        huge = "x" * (storage.payload_limit.size + 10)
        with pytest.raises(PayloadTooLargeError, match="flow-control gate 'big'"):
            await storage.save_gate(gate("big", {"x": huge}), expected_version=None)
        assert await storage.get_gate("big") is None
