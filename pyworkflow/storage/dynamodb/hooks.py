"""Signals from outside a run: cancellation requests and hooks (with chunked payloads,
the ``hooks_by_status`` index and compare-and-set status updates)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime

from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from pyworkflow.core.exceptions import StorageError
from pyworkflow.storage.base import parse_cursor
from pyworkflow.storage.dynamodb.client import _MAX_ATTEMPTS, TableClient, _backoff, _Cancelled
from pyworkflow.storage.dynamodb.codec import (
    Item,
    _blob_attrs,
    _bytes,
    _from_micros,
    _micros,
    _n,
    _s,
)
from pyworkflow.storage.dynamodb.expressions import _Expr, _update_expression
from pyworkflow.storage.dynamodb.hook_items import (
    _hook_items,
    _hook_order,
    _item_to_hook,
    _old_part_keys,
    _part_items,
)
from pyworkflow.storage.dynamodb.keys import (
    _CANCEL,
    _HOOK,
    _HOOKID,
    INDEX_HOOKS,
    _hook_gsi,
    _hook_id_key,
    _hook_key,
    _hook_sk,
    _run_key,
    _run_pk,
)
from pyworkflow.storage.dynamodb.run_items import _TERMINAL
from pyworkflow.storage.payloads import check_hook, check_hook_payload
from pyworkflow.storage.schemas import HookRecord, HookStatus


class HookStore(TableClient):
    """Cancellation requests and hooks."""

    async def request_cancellation(self, run_id: str, reason: str | None, now: datetime) -> bool:
        """A conditional ``UpdateItem`` of the run's cancel fields (never of
        ``last_sequence``, so the run's writer is not fenced out). It writes only while
        no request is recorded; a failed condition is re-read to tell "already asked"
        (``True``) from a terminal or unknown run (``False``)."""
        # gsi_cancel puts the run into runs_cancel_requested (its sparse index).
        sets: Item = {"cancel_requested_at": _n(_micros(now)), "gsi_cancel": _s(_CANCEL)}
        removes: list[str] = []
        if reason is None:
            removes.append("cancel_reason")
        else:
            sets["cancel_reason"] = _s(reason)
        for attempt in range(_MAX_ATTEMPTS):
            expr = _Expr()
            terminal = ", ".join(expr.value(_s(s)) for s in _TERMINAL)
            condition = (
                f"attribute_exists({expr.name('PK')}) "
                f"AND NOT ({expr.name('status')} IN ({terminal})) "
                f"AND attribute_not_exists({expr.name('cancel_requested_at')})"
            )
            with contextlib.suppress(ClientError):
                await self._call(
                    "update_item",
                    expected=("ConditionalCheckFailedException",),
                    Key=_run_key(run_id),
                    UpdateExpression=_update_expression(expr, sets, removes),
                    ConditionExpression=condition,
                    **expr.params(),
                )
                return True
            current = await self._get_item(_run_key(run_id), ("status", "cancel_requested_at"))
            if current is None or current["status"]["S"] in _TERMINAL:
                return False
            if "cancel_requested_at" in current:
                return True  # asked before (the first time and reason stay)
            await _backoff(attempt)  # the run's writer cleared a request meanwhile
        raise StorageError(f"dynamodb: request_cancellation({run_id!r}) kept racing updates")

    async def save_hook(self, hook: HookRecord) -> HookRecord:
        """One transaction: the hook item and its ``RUN#<run_id>``/``HOOKID#<hook_id>``
        item, both ``attribute_not_exists``, plus payload chunks. A failed condition is
        re-read: the run's stored hook with that ``hook_id`` is returned; a token hash
        held by another run's hook is replaced (as the reference backend does)."""
        check_hook(hook, self.payload_limit)
        version = uuid.uuid4().hex
        head, parts = _hook_items(hook, version)
        pointer: Item = {
            **_hook_id_key(hook.run_id, hook.hook_id),
            "token_hash": _s(hook.token_hash),
        }
        stored_pointer: Item | None = None
        old: Item | None = None
        for attempt in range(_MAX_ATTEMPTS):
            expr = _Expr()
            actions: list[Item] = []
            # The hook item: new, or (replacing) exactly the one read below.
            if old is None:
                head_condition = f"attribute_not_exists({expr.name('PK')})"
            else:
                token = expr.value(old["write_token"])
                head_condition = f"{expr.name('write_token')} = {token}"
            actions.append(
                {"Put": {"Item": head, "ConditionExpression": head_condition, **expr.params()}}
            )
            expr = _Expr()
            if stored_pointer is None:
                pointer_condition = f"attribute_not_exists({expr.name('PK')})"
            else:  # it names a hook that no longer has this run and hook_id
                stale = expr.value(stored_pointer["token_hash"])
                pointer_condition = f"{expr.name('token_hash')} = {stale}"
            actions.append(
                {
                    "Put": {
                        "Item": pointer,
                        "ConditionExpression": pointer_condition,
                        **expr.params(),
                    }
                }
            )
            actions.extend({"Put": {"Item": item}} for item in parts)
            if old is not None:
                old_id = (old["run_id"]["S"], old["hook_id"]["S"])
                if old_id != (hook.run_id, hook.hook_id):
                    expr = _Expr()
                    mine = expr.value(_s(hook.token_hash))
                    actions.append(
                        {
                            "Delete": {
                                "Key": _hook_id_key(*old_id),
                                "ConditionExpression": f"{expr.name('token_hash')} = {mine}",
                                **expr.params(),
                            }
                        }
                    )
                actions.extend({"Delete": {"Key": k}} for k in _old_part_keys(hook.token_hash, old))
            try:
                await self._transact(actions, f"save_hook({hook.hook_id!r})")
                return hook.copy()
            except _Cancelled:
                pass
            stored_pointer = await self._get_item(_hook_id_key(hook.run_id, hook.hook_id))
            if stored_pointer is not None:
                existing = await self.get_hook(stored_pointer["token_hash"]["S"])
                if existing is not None and (existing.run_id, existing.hook_id) == (
                    hook.run_id,
                    hook.hook_id,
                ):
                    return existing  # the run saved this hook before (a replay)
            old = await self._get_item(_hook_key(hook.token_hash))
            if old is not None and (old["run_id"]["S"], old["hook_id"]["S"]) == (
                hook.run_id,
                hook.hook_id,
            ):
                loaded = await self._load_hook(old)
                if loaded is not None:
                    return loaded
            if attempt:
                await _backoff(attempt)
        raise StorageError(f"dynamodb: save_hook({hook.hook_id!r}) kept racing updates")

    async def get_hook(self, token_hash: str) -> HookRecord | None:
        item = await self._get_item(_hook_key(token_hash))
        return None if item is None else await self._load_hook(item)

    async def _load_hook(self, item: Item) -> HookRecord | None:
        """The hook of ``item``, with its chunked payload read when it has one (re-reading
        the item if a concurrent update replaced the chunks meanwhile)."""
        token_hash = item["token_hash"]["S"]
        for attempt in range(_MAX_ATTEMPTS):
            keys = _old_part_keys(token_hash, item)
            if not keys:
                return _item_to_hook(item, None)
            expr = _Expr()
            condition = (
                f"{expr.name('PK')} = {expr.value(keys[0]['PK'])} AND {expr.name('SK')} "
                f"BETWEEN {expr.value(keys[0]['SK'])} AND {expr.value(keys[-1]['SK'])}"
            )
            parts: list[bytes] = []
            async for page in self._query(
                KeyConditionExpression=condition, ConsistentRead=True, **expr.params()
            ):
                parts.extend(_bytes(i["part"]["B"]) for i in page)
            if len(parts) == len(keys):
                return _item_to_hook(item, b"".join(parts))
            fresh = await self._get_item(_hook_key(token_hash))
            if fresh is None:
                return None
            item = fresh
            await _backoff(attempt)
        raise StorageError("dynamodb: the payload chunks of a hook kept changing while read")

    async def list_hooks(
        self,
        *,
        run_id: str | None = None,
        status: HookStatus | None = None,
        limit: int = 100,
        offset: int = 0,
        cursor: str | None = None,
    ) -> list[HookRecord]:
        """By run: the run's ``HOOKID#`` items (one consistent ``Query`` of its partition)
        and a ``BatchGetItem`` of their hooks. Otherwise the ``hooks_by_status`` index, one
        partition per wanted status, newest first; candidates are re-checked against the
        consistent hook items and the statuses merged in ``(created_at, token_hash)``
        order."""
        if limit <= 0:
            return []
        offset = max(offset, 0)
        wanted = offset + limit
        want_status = None if status is None else HookStatus(status).value
        after = None if cursor is None else parse_cursor(cursor)
        if run_id is not None:
            heads = [
                h
                for h in await self._run_hooks(run_id)
                if (want_status is None or h["hook_status"]["S"] == want_status)
                and (after is None or _hook_order(h) < after)
            ]
        else:
            statuses = [want_status] if want_status else [s.value for s in HookStatus]
            found = await asyncio.gather(*(self._hooks_in(s, wanted, after) for s in statuses))
            heads = [h for group in found for h in group]
        heads.sort(key=_hook_order, reverse=True)
        hooks = await asyncio.gather(*(self._load_hook(h) for h in heads[offset:wanted]))
        return [h for h in hooks if h is not None]

    async def _run_hooks(self, run_id: str) -> list[Item]:
        expr = _Expr()
        condition = (
            f"{expr.name('PK')} = {expr.value(_s(_run_pk(run_id)))} "
            f"AND begins_with({expr.name('SK')}, {expr.value(_s(_HOOKID))})"
        )
        hashes: list[str] = []
        async for page in self._query(
            KeyConditionExpression=condition, ConsistentRead=True, **expr.params()
        ):
            hashes.extend(i["token_hash"]["S"] for i in page)
        heads = await self._batch_get_hooks(hashes)
        return [h for h in heads.values() if h["run_id"]["S"] == run_id]

    async def _hooks_in(
        self, status: str, wanted: int, after: tuple[int, str] | None = None
    ) -> list[Item]:
        """The newest ``wanted`` hooks with ``status`` ordered after ``after`` (a parsed
        cursor: the index's sort key is then an exclusive upper bound of the query),
        index candidates re-checked."""
        expr = _Expr()
        partition = expr.value(_s(_hook_gsi(status)))
        condition = f"{expr.name('gsi_hook')} = {partition}"
        if after is not None:
            bound = _hook_sk(_from_micros(str(after[0])), after[1])
            condition += f" AND {expr.name('hook_sk')} < {expr.value(_s(bound))}"
        params: Item = {
            "IndexName": INDEX_HOOKS,
            "KeyConditionExpression": condition,
            "ScanIndexForward": False,
            "Limit": min(1000, max(25, wanted)),
            **expr.params(),
        }
        matched: list[Item] = []
        async for page in self._query(**params):
            hashes = [i["PK"]["S"][len(_HOOK) :] for i in page]
            heads = await self._batch_get_hooks(hashes)
            for token_hash in hashes:
                head = heads.get(token_hash)
                if head is not None and head["hook_status"]["S"] == status:
                    matched.append(head)
            if len(matched) >= wanted:
                break
        return matched

    async def update_hook(
        self,
        token_hash: str,
        *,
        expected: HookStatus,
        status: HookStatus,
        payload: str | None = None,
        received_at: datetime | None = None,
    ) -> bool:
        """Read the hook, then write it under ``hook_status = :expected AND write_token =
        :read`` (the item is unchanged since the read). One ``UpdateItem``, or a
        transaction when payload chunks are written or replaced ones deleted. A lost
        race re-reads: another status answers ``False``; our own write token (an SDK
        retry of a write that did land) answers ``True``."""
        check_hook_payload(token_hash, payload, self.payload_limit)
        expected_value, status_value = HookStatus(expected).value, HookStatus(status).value
        version = uuid.uuid4().hex
        sets: Item = {
            "hook_status": _s(status_value),
            "gsi_hook": _s(_hook_gsi(status_value)),
            "write_token": _s(version),
        }
        removes: list[str] = []
        parts: list[bytes] = []
        if received_at is not None:
            sets["received_at"] = _n(_micros(received_at))
        if payload is not None:
            payload_sets, payload_removes, parts = _blob_attrs("payload", payload)
            sets.update(payload_sets)
            removes.extend(payload_removes)
            if parts:
                sets["payload_part"] = _s(version)
            else:
                removes.append("payload_part")
        key = _hook_key(token_hash)
        for attempt in range(_MAX_ATTEMPTS):
            head = await self._get_item(key)
            if head is None:
                return False
            if head["write_token"]["S"] == version:
                return True
            if head["hook_status"]["S"] != expected_value:
                return False
            if attempt:
                await _backoff(attempt)  # expected -> expected updates raced ours
            expr = _Expr()
            condition = (
                f"{expr.name('hook_status')} = {expr.value(_s(expected_value))} "
                f"AND {expr.name('write_token')} = {expr.value(head['write_token'])}"
            )
            update: Item = {
                "Key": key,
                "UpdateExpression": _update_expression(expr, sets, removes),
                "ConditionExpression": condition,
                **expr.params(),
            }
            stale = _old_part_keys(token_hash, head) if payload is not None else []
            try:
                if parts or stale:
                    await self._transact(
                        [
                            {"Update": update},
                            *(
                                {"Put": {"Item": i}}
                                for i in _part_items(token_hash, version, parts)
                            ),
                            *({"Delete": {"Key": k}} for k in stale),
                        ],
                        f"update_hook({token_hash[:12]!r})",
                    )
                else:
                    await self._call(
                        "update_item", expected=("ConditionalCheckFailedException",), **update
                    )
                return True
            except (_Cancelled, ClientError):
                continue
        raise StorageError("dynamodb: update_hook kept racing concurrent updates")
