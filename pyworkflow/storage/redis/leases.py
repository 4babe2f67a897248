"""Timers and leases: due and stale runs, and the lease compare-and-set.

Complexity (n = runs under the prefix, k = results):

* ``acquire_lease``, ``release_lease``: O(1) (plus the size of the run record);
  ``renew_leases``: O(1) per run.
* ``list_due_runs``, ``next_wake_time``, ``list_stale_runs``: O(log n + k).
* ``claim_due_runs``: O(log n + m), m = due runs read (due runs leased by someone else
  are skipped, and read again until their leases end).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pyworkflow.storage.redis.codec import from_micros, micros, run_from_hash, text
from pyworkflow.storage.redis.connection import RedisConnection
from pyworkflow.storage.schemas import WorkflowRun

_RENEW_CHUNK = 500  # run keys per renew script: bounds one script's run time


class LeaseStore(RedisConnection):
    """The timers and leases part of :class:`RedisStorageBackend`."""

    async def list_due_runs(self, now: datetime, limit: int = 100) -> list[str]:
        if limit <= 0:
            return []
        client, _ = self._client()
        with self._errors():
            ids: list[Any] = await client.zrangebyscore(
                self._key("wake"), "-inf", micros(now), start=0, num=limit
            )
        return [text(i) for i in ids]

    async def claim_due_runs(
        self, now: datetime, owner: str, expires_at: datetime, limit: int = 100
    ) -> list[str]:
        """Lease up to ``limit`` due runs in one atomic script (see the module docstring)."""
        if limit <= 0:
            return []
        _, scripts = self._client()
        with self._errors():
            ids = await scripts.claim(
                keys=[self._key("wake")],
                args=[self._base, micros(now), owner, micros(expires_at), limit],
            )
        return [text(i) for i in ids]

    async def next_wake_time(self) -> datetime | None:
        _, scripts = self._client()
        with self._errors():
            raw = await scripts.next_wake(keys=[self._key("wake")], args=[self._base])
        return None if raw is None else from_micros(raw)

    async def list_stale_runs(self, now: datetime, limit: int = 100) -> list[WorkflowRun]:
        if limit <= 0:
            return []
        _, scripts = self._client()
        with self._errors():
            rows = await scripts.stale(
                keys=[self._key("active")], args=[self._base, micros(now), limit]
            )
        return [run for run in map(run_from_hash, json.loads(rows)) if run is not None]

    async def acquire_lease(
        self,
        run_id: str,
        owner: str,
        expires_at: datetime,
        now: datetime,
        *,
        steal_from: str | None = None,
    ) -> bool:
        args: list[str | int] = [
            self._base,
            run_id,
            owner,
            micros(expires_at),
            micros(now),
            "0" if steal_from is None else "1",
            "" if steal_from is None else steal_from,
        ]
        _, scripts = self._client()
        with self._errors():
            won = await scripts.acquire(keys=[self._key("run", run_id)], args=args)
        return bool(int(won))

    async def renew_leases(self, run_ids: Sequence[str], owner: str, expires_at: datetime) -> None:
        ids = list(dict.fromkeys(run_ids))
        expires = micros(expires_at)
        _, scripts = self._client()
        for start in range(0, len(ids), _RENEW_CHUNK):
            chunk = ids[start : start + _RENEW_CHUNK]
            with self._errors():
                await scripts.renew(
                    keys=[self._key("run", i) for i in chunk],
                    args=[self._base, owner, expires, *chunk],
                )

    async def release_lease(self, run_id: str, owner: str) -> None:
        _, scripts = self._client()
        with self._errors():
            await scripts.release(keys=[self._key("run", run_id)], args=[self._base, run_id, owner])
