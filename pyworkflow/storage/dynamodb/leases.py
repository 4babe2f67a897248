"""Timers and leases: the sparse ``runs_due`` index, claiming due runs, stale-run
recovery and the compare-and-set lease on a run item."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from pyworkflow.storage.dynamodb.client import TableClient
from pyworkflow.storage.dynamodb.codec import _EPOCH, Item, _micros, _n, _s, _sort_key
from pyworkflow.storage.dynamodb.expressions import (
    _Expr,
    _lease_free_condition,
    _update_expression,
)
from pyworkflow.storage.dynamodb.keys import _DUE, INDEX_DUE, INDEX_STATUS, _run_key
from pyworkflow.storage.dynamodb.run_items import _TERMINAL, _item_to_run
from pyworkflow.storage.schemas import TERMINAL_STATUSES, RunStatus, WorkflowRun

_STALE_CANDIDATES = [
    s.value for s in RunStatus if s not in TERMINAL_STATUSES and s != RunStatus.SUSPENDED
]


class LeaseStore(TableClient):
    """Due timers, leases and stale runs."""

    def _due_query(self, now: datetime | None, extra_filter: Callable[[_Expr], str] | None) -> Item:
        expr = _Expr()
        condition = f"{expr.name('gsi_due')} = {expr.value(_s(_DUE))}"
        if now is not None:
            # Every due_sk of a wake_at <= now sorts below the digits of now + 1 µs.
            upper = _sort_key(_micros(now) + 1)
            condition += f" AND {expr.name('due_sk')} < {expr.value(_s(upper))}"
        params: Item = {"IndexName": INDEX_DUE, "KeyConditionExpression": condition}
        if extra_filter is not None:
            params["FilterExpression"] = extra_filter(expr)
        params.update(expr.params())
        return params

    async def _verified_due(self, ids: list[str], now: datetime | None) -> list[tuple[int, str]]:
        """``(wake_at micros, run_id)`` of the ids that really are due (consistent read)."""
        items = await self._batch_get_runs(ids, ("status", "wake_at"))
        due = []
        for run_id in ids:
            item = items.get(run_id)
            if item is None or item.get("status", {}).get("S") != RunStatus.SUSPENDED.value:
                continue
            wake = item.get("wake_at")
            if wake is None or (now is not None and int(wake["N"]) > _micros(now)):
                continue
            due.append((int(wake["N"]), run_id))
        return sorted(due)

    async def list_due_runs(self, now: datetime, limit: int = 100) -> list[str]:
        if limit <= 0:
            return []
        found: list[str] = []
        params = self._due_query(now, None)
        params["Limit"] = min(1000, max(limit, 25))
        async for page in self._query(**params):
            ids = [i["run_id"]["S"] for i in page]
            found.extend(run_id for _, run_id in await self._verified_due(ids, now))
            if len(found) >= limit:
                break
        return found[:limit]

    async def claim_due_runs(
        self, now: datetime, owner: str, expires_at: datetime, limit: int = 100
    ) -> list[str]:
        """Query the due index, skipping runs whose lease is held (a filter on the
        projected lease attributes), then lease candidates in ``wake_at`` order with a
        conditional update that re-checks status, wake time and lease on the run."""
        if limit <= 0:
            return []
        params = self._due_query(now, lambda expr: _lease_free_condition(expr, owner, now))
        params["Limit"] = min(1000, max(limit * 2, 25))
        claimed: list[str] = []
        async for page in self._query(**params):
            candidates = [i["run_id"]["S"] for i in page]
            while candidates and len(claimed) < limit:
                batch, candidates = (
                    candidates[: limit - len(claimed)],
                    candidates[limit - len(claimed) :],
                )
                results = await asyncio.gather(
                    *(self._lease(r, owner, expires_at, now, None, due_at=now) for r in batch)
                )
                claimed.extend(r for r, ok in zip(batch, results, strict=True) if ok)
            if len(claimed) >= limit:
                break
        return claimed

    async def next_wake_time(self) -> datetime | None:
        params = self._due_query(None, None)
        params["Limit"] = 25
        async for page in self._query(**params):
            due = await self._verified_due([i["run_id"]["S"] for i in page], None)
            if due:
                return _EPOCH + timedelta(microseconds=due[0][0])
        return None

    async def list_stale_runs(self, now: datetime, limit: int = 100) -> list[WorkflowRun]:
        if limit <= 0:
            return []
        stale: list[WorkflowRun] = []
        cutoff = _micros(now)
        for status in _STALE_CANDIDATES:
            expr = _Expr()
            params: Item = {
                "IndexName": INDEX_STATUS,
                "KeyConditionExpression": f"{expr.name('status')} = {expr.value(_s(status))}",
                "Limit": min(1000, max(limit, 25)),
                **expr.params(),
            }
            async for page in self._query(**params):
                ids = [i["run_id"]["S"] for i in page]
                items = await self._batch_get_runs(ids)
                for run_id in ids:
                    item = items.get(run_id)
                    if item is None or item["status"]["S"] != status:
                        continue  # the index entry was stale
                    expires = item.get("lease_expires_at")
                    if expires is None or int(expires["N"]) < cutoff:
                        stale.append(_item_to_run(item))
                if len(stale) >= limit:
                    return stale[:limit]
        return stale

    async def _lease(
        self,
        run_id: str,
        owner: str,
        expires_at: datetime,
        now: datetime,
        steal_from: str | None,
        *,
        due_at: datetime | None = None,
    ) -> bool:
        expr = _Expr()
        terminal = ", ".join(expr.value(_s(s)) for s in _TERMINAL)
        status = expr.name("status")
        conditions = [
            f"attribute_exists({expr.name('PK')})",
            f"NOT ({status} IN ({terminal}))",
            _lease_free_condition(expr, owner, now, steal_from),
        ]
        if due_at is not None:  # a claim: the run must still be due on the base item
            conditions.append(f"{status} = {expr.value(_s(RunStatus.SUSPENDED.value))}")
            conditions.append(f"{expr.name('wake_at')} <= {expr.value(_n(_micros(due_at)))}")
        sets = {"lease_owner": _s(owner), "lease_expires_at": _n(_micros(expires_at))}
        try:
            await self._call(
                "update_item",
                expected=("ConditionalCheckFailedException",),
                Key=_run_key(run_id),
                UpdateExpression=_update_expression(expr, sets, ()),
                ConditionExpression=" AND ".join(conditions),
                **expr.params(),
            )
        except ClientError:
            return False
        return True

    async def acquire_lease(
        self,
        run_id: str,
        owner: str,
        expires_at: datetime,
        now: datetime,
        *,
        steal_from: str | None = None,
    ) -> bool:
        return await self._lease(run_id, owner, expires_at, now, steal_from)

    async def _update_if_owner(
        self, run_id: str, owner: str, sets: Item, removes: list[str]
    ) -> None:
        expr = _Expr()
        # A failed condition means: not (or no longer) the holder, or no such run.
        with contextlib.suppress(ClientError):
            await self._call(
                "update_item",
                expected=("ConditionalCheckFailedException",),
                Key=_run_key(run_id),
                UpdateExpression=_update_expression(expr, sets, removes),
                ConditionExpression=f"{expr.name('lease_owner')} = {expr.value(_s(owner))}",
                **expr.params(),
            )

    async def renew_leases(self, run_ids: Sequence[str], owner: str, expires_at: datetime) -> None:
        ids = list(dict.fromkeys(run_ids))
        sets = {"lease_expires_at": _n(_micros(expires_at))}
        for start in range(0, len(ids), 25):  # bounded concurrency
            await asyncio.gather(
                *(self._update_if_owner(r, owner, sets, []) for r in ids[start : start + 25])
            )

    async def release_lease(self, run_id: str, owner: str) -> None:
        await self._update_if_owner(run_id, owner, {}, ["lease_owner", "lease_expires_at"])
