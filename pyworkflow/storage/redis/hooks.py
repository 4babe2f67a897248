"""Cancellation requests and hooks (one hash per hook, indexed like runs).

``request_cancellation`` and ``get_hook`` are O(1); ``save_hook`` and ``update_hook``
O(log h) (h = hooks under the prefix); ``list_hooks`` walks the hook indexes as
``list_runs`` walks the run indexes (see :mod:`pyworkflow.storage.redis.runs`).
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime

from pyworkflow.storage.base import parse_cursor
from pyworkflow.storage.payloads import check_hook, check_hook_payload
from pyworkflow.storage.redis.codec import HOOKS, hook_from_hash, micros, text
from pyworkflow.storage.redis.connection import RedisConnection
from pyworkflow.storage.redis.keys import member
from pyworkflow.storage.schemas import HookRecord, HookStatus


class HookStore(RedisConnection):
    """The cancellation and hooks part of :class:`RedisStorageBackend`."""

    async def request_cancellation(self, run_id: str, reason: str | None, now: datetime) -> bool:
        args: list[str | int] = [
            self._base,
            micros(now),
            "0" if reason is None else "1",
            "" if reason is None else reason,
        ]
        _, scripts = self._client()
        with self._errors():
            asked = await scripts.cancel(keys=[self._key("run", run_id)], args=args)
        return bool(int(asked))

    async def save_hook(self, hook: HookRecord) -> HookRecord:
        check_hook(hook, self.payload_limit)
        pairs = HOOKS.pairs(hook)
        pairs += ("_m", member(micros(hook.created_at), hook.token_hash))
        keys = [
            self._key("hook", hook.token_hash),
            self._key("hookids", hook.run_id),
            self._key("hidx", "all"),
            self._key("hidx", "run", hook.run_id),
            self._key("hidx", "status", HookStatus(hook.status).value),
        ]
        args: list[str | int] = [self._base, hook.token_hash, hook.hook_id, len(pairs), *pairs]
        _, scripts = self._client()
        with self._errors():
            reply = await scripts.save_hook(keys=keys, args=args)
        if text(reply[0]) == "dup":
            existing = hook_from_hash(reply[1])
            if existing is not None:
                return existing
        return hook.copy()

    async def get_hook(self, token_hash: str) -> HookRecord | None:
        client, _ = self._client()
        with self._errors():
            raw = await client.hgetall(self._key("hook", token_hash))
        return hook_from_hash(raw)

    async def list_hooks(
        self,
        *,
        run_id: str | None = None,
        status: HookStatus | None = None,
        limit: int = 100,
        offset: int = 0,
        cursor: str | None = None,
    ) -> list[HookRecord]:
        """Newest ``created_at`` first (ties: ``token_hash`` descending), through the same
        lexicographic index walk as :meth:`list_runs` (a cursor is an exclusive upper
        bound of that walk)."""
        upper = "+" if cursor is None else "(" + member(*parse_cursor(cursor))
        if limit <= 0:
            return []
        keys = []
        if run_id is not None:
            keys.append(self._key("hidx", "run", run_id))
        if status is not None:
            keys.append(self._key("hidx", "status", HookStatus(status).value))
        if not keys:
            keys.append(self._key("hidx", "all"))
        _, scripts = self._client()
        with self._errors():
            rows = await scripts.query(
                keys=keys, args=[self._base, upper, "-", max(offset, 0), limit, "hook:"]
            )
        return [hook for hook in map(hook_from_hash, json.loads(rows)) if hook is not None]

    async def update_hook(
        self,
        token_hash: str,
        *,
        expected: HookStatus,
        status: HookStatus,
        payload: str | None = None,
        received_at: datetime | None = None,
    ) -> bool:
        check_hook_payload(token_hash, payload, self.payload_limit)
        args: list[str | int] = [
            self._base,
            HookStatus(expected).value,
            HookStatus(status).value,
            secrets.token_hex(8),
            "0" if payload is None else "1",
            "" if payload is None else payload,
            "0" if received_at is None else "1",
            "" if received_at is None else micros(received_at),
        ]
        _, scripts = self._client()
        with self._errors():
            won = await scripts.update_hook(keys=[self._key("hook", token_hash)], args=args)
        return bool(int(won))
