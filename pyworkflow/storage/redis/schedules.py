"""Schedules: one hash per schedule, an id set and a due set.

Complexity (s = schedules under the prefix, k = results): ``save_schedule`` (one
compare-and-set script on the ``version`` field), ``get_schedule`` and
``delete_schedule`` O(log s); ``list_due_schedules`` O(log s + k); ``list_schedules``
walks the ids in order, O(s) at worst with a filter (schedules are few).
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime

from pyworkflow.storage.payloads import check_schedule
from pyworkflow.storage.redis.codec import SCHEDULES, micros, schedule_from_hash
from pyworkflow.storage.redis.connection import RedisConnection
from pyworkflow.storage.schemas import ScheduleRecord, ScheduleStatus


class ScheduleStore(RedisConnection):
    """The schedules part of :class:`RedisStorageBackend`."""

    def _schedule_keys(self, schedule_id: str) -> list[str]:
        return [
            self._key("schedule", schedule_id),
            self._key("sidx", "all"),
            self._key("sidx", "due"),
        ]

    async def save_schedule(
        self, schedule: ScheduleRecord, *, expected_version: int | None
    ) -> bool:
        """One script: compare the stored ``version`` field with ``expected_version`` (or
        check the schedule is absent), then replace the hash and its index entries."""
        check_schedule(schedule, self.payload_limit)
        version = 1 if expected_version is None else expected_version + 1
        record = schedule.copy()
        record.version = version
        token = secrets.token_hex(8)
        pairs = [*SCHEDULES.pairs(record), "_w", token]
        due = (
            micros(record.next_run_time)
            if ScheduleStatus(record.status) == ScheduleStatus.ACTIVE
            and record.next_run_time is not None
            else ""
        )
        args: list[str | int] = [
            self._base,
            record.schedule_id,
            "" if expected_version is None else expected_version,
            version,
            token,
            due,
            len(pairs),
            *pairs,
        ]
        _, scripts = self._client()
        with self._errors():
            saved = await scripts.save_schedule(
                keys=self._schedule_keys(record.schedule_id), args=args
            )
        if int(saved):
            schedule.version = version
            return True
        return False

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        client, _ = self._client()
        with self._errors():
            raw = await client.hgetall(self._key("schedule", schedule_id))
        return schedule_from_hash(raw)

    async def list_schedules(
        self,
        *,
        workflow_name: str | None = None,
        status: ScheduleStatus | None = None,
        limit: int = 1000,
    ) -> list[ScheduleRecord]:
        if limit <= 0:
            return []
        args: list[str | int] = [
            self._base,
            "0" if workflow_name is None else "1",
            "" if workflow_name is None else workflow_name,
            "0" if status is None else "1",
            "" if status is None else ScheduleStatus(status).value,
            limit,
        ]
        _, scripts = self._client()
        with self._errors():
            rows = await scripts.list_schedules(keys=[self._key("sidx", "all")], args=args)
        return [s for s in map(schedule_from_hash, json.loads(rows)) if s is not None]

    async def list_due_schedules(self, now: datetime, limit: int = 100) -> list[ScheduleRecord]:
        if limit <= 0:
            return []
        _, scripts = self._client()
        with self._errors():
            rows = await scripts.due_schedules(
                keys=[self._key("sidx", "due")], args=[self._base, micros(now), limit]
            )
        return [s for s in map(schedule_from_hash, json.loads(rows)) if s is not None]

    async def delete_schedule(self, schedule_id: str) -> bool:
        _, scripts = self._client()
        with self._errors():
            existed = await scripts.delete_schedule(
                keys=self._schedule_keys(schedule_id), args=[schedule_id]
            )
        return bool(int(existed))
