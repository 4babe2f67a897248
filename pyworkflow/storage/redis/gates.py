"""Flow-control gates: one hash per gate, ``{prefix}:gate:<key>``.

A gate is read and written whole by its key and never listed, so it needs no index:
``get_gate`` is one ``HGETALL`` and ``save_gate`` one compare-and-set script on the
hash's ``version`` field, both O(1) (plus the data's size). Limits that share a gate
across processes rely on that script: of two saves from one version, Redis runs one
first and the other then finds the new version. Like ``save_schedule``, the save carries
a random write token (``_w``), so a retry of a save whose reply was lost (see "Retries"
in :mod:`~pyworkflow.storage.redis.connection`) reports its own success, not a false
conflict that would make the engine think another process took the slot.
"""

from __future__ import annotations

import secrets

from pyworkflow.storage.payloads import check_gate
from pyworkflow.storage.redis.codec import GATES, gate_from_hash
from pyworkflow.storage.redis.connection import RedisConnection
from pyworkflow.storage.schemas import GateRecord


class GateStore(RedisConnection):
    """The flow-control gates part of :class:`RedisStorageBackend`."""

    async def get_gate(self, key: str) -> GateRecord | None:
        client, _ = self._client()
        with self._errors():
            raw = await client.hgetall(self._key("gate", key))
        return gate_from_hash(raw)

    async def save_gate(self, gate: GateRecord, *, expected_version: int | None) -> bool:
        """One script: compare the stored ``version`` field with ``expected_version`` (or
        check the gate is absent), then replace the hash."""
        return await self._save_gate(gate, expected_version, secrets.token_hex(8))

    async def _save_gate(self, gate: GateRecord, expected_version: int | None, token: str) -> bool:
        """:meth:`save_gate` with an explicit write token (tests replay a retry)."""
        check_gate(gate, self.payload_limit)
        version = 1 if expected_version is None else expected_version + 1
        record = gate.copy()
        record.version = version
        args: list[str | int] = [
            self._base,
            "" if expected_version is None else expected_version,
            version,
            token,
            *GATES.pairs(record),
            "_w",
            token,
        ]
        _, scripts = self._client()
        with self._errors():
            saved = await scripts.save_gate(keys=[self._key("gate", gate.key)], args=args)
        if int(saved):
            gate.version = version
            return True
        return False
