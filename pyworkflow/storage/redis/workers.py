"""The worker registry: one small hash per worker and a set of their ids.

Every worker process rewrites its record every few seconds, so ``save_worker`` is one
script call (``DEL`` + ``HSET`` of two fields + ``ZADD``), O(log w) for w workers under
the prefix; ``delete_worker`` the same; ``list_workers`` one script, O(log w + k).
"""

from __future__ import annotations

import json

from pyworkflow.storage.redis.codec import from_micros, micros
from pyworkflow.storage.redis.connection import RedisConnection
from pyworkflow.storage.schemas import WorkerRecord


class WorkerStore(RedisConnection):
    """The worker registry part of :class:`RedisStorageBackend`."""

    def _worker_keys(self, worker_id: str) -> list[str]:
        return [self._key("worker", worker_id), self._key("widx", "all")]

    async def save_worker(self, worker: WorkerRecord) -> None:
        args: list[str | int] = [worker.worker_id, micros(worker.last_beat), worker.data_json()]
        _, scripts = self._client()
        with self._errors():
            await scripts.save_worker(keys=self._worker_keys(worker.worker_id), args=args)

    async def list_workers(
        self, *, limit: int = 1000, after: str | None = None
    ) -> list[WorkerRecord]:
        if limit <= 0:
            return []
        _, scripts = self._client()
        start = "-" if after is None else f"({after}"  # exclusive lexicographic bound
        with self._errors():
            rows = await scripts.list_workers(
                keys=[self._key("widx", "all")], args=[self._base, limit, start]
            )
        # The stored data is only ever validated (WorkerRecord.from_stored), never run.
        return [
            WorkerRecord.from_stored(worker_id, from_micros(beat), data)
            for worker_id, beat, data in json.loads(rows)
        ]

    async def delete_worker(self, worker_id: str) -> bool:
        _, scripts = self._client()
        with self._errors():
            existed = await scripts.delete_worker(
                keys=self._worker_keys(worker_id), args=[worker_id]
            )
        return bool(int(existed))
