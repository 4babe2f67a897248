"""Runs' signal inboxes: one list per run (sequence ``n`` at index ``n - 1``) and a hash
of the signal ids it holds.

``send_signal`` is one script, O(1) (plus the record's size): it checks the run, answers a
repeated ``signal_id`` with the stored signal, else appends and makes a suspended run due.
Being idempotent by ``signal_id``, it is retried on connection errors like every command
(see "Retries" in :mod:`~pyworkflow.storage.redis.connection`): a retry of a send that
had landed returns the stored signal. ``list_signals``: one ``LRANGE``, O(after + k) at
worst (a list skips whole nodes), in practice about O(k).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pyworkflow.serialization import compact_json
from pyworkflow.storage.payloads import check_signal
from pyworkflow.storage.redis.codec import from_micros, micros
from pyworkflow.storage.redis.connection import RedisConnection
from pyworkflow.storage.schemas import SignalRecord


def _decode(run_id: str, sequence: int, item: str | bytes) -> SignalRecord:
    # The sequence is the item's position, so the script never edits JSON.
    d = json.loads(item)
    return SignalRecord(run_id, sequence, d["n"], d["p"], d["i"], from_micros(d["ts"]))


class SignalStore(RedisConnection):
    """The signal inboxes part of :class:`RedisStorageBackend`."""

    async def send_signal(
        self, run_id: str, name: str, payload: str, *, signal_id: str, now: datetime
    ) -> SignalRecord | None:
        check_signal(run_id, name, payload, self.payload_limit)
        ts = micros(now)
        item = compact_json({"n": name, "i": signal_id, "ts": ts, "p": payload})
        keys = [
            self._key("run", run_id),
            self._key("signals", run_id),
            self._key("sigids", run_id),
        ]
        _, scripts = self._client()
        with self._errors():
            reply: Any = await scripts.send_signal(
                keys=keys, args=[self._base, run_id, signal_id, ts, item]
            )
        if reply is None:
            return None
        return _decode(run_id, int(reply[0]), reply[1])

    async def list_signals(
        self, run_id: str, *, after_sequence: int = 0, limit: int = 1000
    ) -> list[SignalRecord]:
        if limit <= 0:
            return []
        first = max(after_sequence, 0)
        client, _ = self._client()
        with self._errors():
            items: list[Any] = await client.lrange(
                self._key("signals", run_id), first, first + limit - 1
            )
        return [_decode(run_id, n, i) for n, i in enumerate(items, first + 1)]
