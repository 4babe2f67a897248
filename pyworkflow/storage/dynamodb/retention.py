"""Retention: :meth:`delete_runs` removes finished runs with every item that belongs to
them.

A run's items: its partition ``RUN#<run_id>`` (the ``META`` projection, events and their
chunks, tag items, ``HOOKID#`` items, its signal inbox: ``SIGNAL#`` items with their
chunks and ``SIGNALID#`` items), its idempotency item ``IDEM#<key>``, and each of
its hooks' partitions ``HOOK#<token_hash>`` (the hook and its payload chunks). Index
entries are attributes of those items, so they go with them.

Per run: one consistent ``Query`` of the run's partition (keys and the few attributes
needed), one per hook partition, then ``BatchWriteItem`` deletes of everything but the
projection (25 per request, unprocessed items retried), the idempotency item deleted
only while it still names the run, and last the ``META`` item, deleted under the
condition that the run is terminal. The projection is the commit point: an interrupted
deletion leaves the run readable, terminal and found by the next purge, which removes
the rest. A run that is not terminal is skipped before anything is written; a terminal
run takes no new signal (a send's transaction requires a status that is not terminal),
so the partition read holds the whole inbox. Runs of a
batch are deleted :data:`PARALLEL` at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from pyworkflow.core.exceptions import StorageError
from pyworkflow.storage.dynamodb.client import _MAX_ATTEMPTS, TableClient, _backoff
from pyworkflow.storage.dynamodb.codec import Item, _s
from pyworkflow.storage.dynamodb.expressions import _Expr
from pyworkflow.storage.dynamodb.keys import _HOOKID, _IDEM_SK, _RUN_SK, _hook_pk, _run_pk
from pyworkflow.storage.schemas import TERMINAL_STATUSES

#: Runs of one ``delete_runs`` call deleted concurrently.
PARALLEL = 16
#: Items per ``BatchWriteItem`` request (DynamoDB's limit).
MAX_BATCH_WRITE = 25
_TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)


class RetentionStore(TableClient):
    """The retention part of :class:`DynamoDBStorageBackend`."""

    async def delete_runs(self, run_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(run_ids))
        gate = asyncio.Semaphore(PARALLEL)

        async def one(run_id: str) -> bool:
            async with gate:
                return await self._delete_run(run_id)

        return sum(await asyncio.gather(*(one(run_id) for run_id in ids)))

    async def _delete_run(self, run_id: str) -> bool:
        items = await self._partition(_run_pk(run_id), ("status", "idempotency_key", "token_hash"))
        meta = next((i for i in items if i["SK"]["S"] == _RUN_SK), None)
        if meta is None or meta.get("status", {}).get("S") not in _TERMINAL:
            return False
        keys = [{"PK": i["PK"], "SK": i["SK"]} for i in items if i is not meta]
        for item in items:
            if item["SK"]["S"].startswith(_HOOKID) and "token_hash" in item:
                keys += await self._hook_keys(item["token_hash"]["S"], run_id)
        await self._batch_delete(keys)
        key = meta.get("idempotency_key", {}).get("S")
        if key is not None:
            idem = {"PK": _s(f"IDEM#{key}"), "SK": _s(_IDEM_SK)}
            await self._delete_item(idem, attribute="run_id", allowed=[run_id])
        meta_key = {"PK": meta["PK"], "SK": meta["SK"]}
        return await self._delete_item(meta_key, attribute="status", allowed=_TERMINAL)

    async def _partition(self, pk: str, attributes: Sequence[str]) -> list[Item]:
        """Every item of partition ``pk``: its keys and ``attributes`` (when present)."""
        expr = _Expr()
        projection = ", ".join(expr.name(a) for a in ("PK", "SK", *attributes))
        condition = f"{expr.name('PK')} = {expr.value(_s(pk))}"
        found: list[Item] = []
        async for page in self._query(
            KeyConditionExpression=condition,
            ProjectionExpression=projection,
            ConsistentRead=True,
            **expr.params(),
        ):
            found.extend(page)
        return found

    async def _hook_keys(self, token_hash: str, run_id: str) -> list[Item]:
        """The keys of the hook's items, if the hook under this hash is the run's (a hash
        reused by another run's hook belongs to that run now)."""
        items = await self._partition(_hook_pk(token_hash), ("run_id",))
        owner = next((i for i in items if "run_id" in i), None)
        if owner is None or owner["run_id"]["S"] != run_id:
            return []
        return [{"PK": i["PK"], "SK": i["SK"]} for i in items]

    async def _batch_delete(self, keys: list[Item]) -> None:
        for start in range(0, len(keys), MAX_BATCH_WRITE):
            chunk = keys[start : start + MAX_BATCH_WRITE]
            pending: Item = {self.table_name: [{"DeleteRequest": {"Key": k}} for k in chunk]}
            client = await self._get_client()
            for attempt in range(_MAX_ATTEMPTS * 2):
                try:
                    response = await client.batch_write_item(RequestItems=pending)
                except (ClientError, BotoCoreError) as exc:
                    raise self._error("batch_write_item", exc) from exc
                pending = response.get("UnprocessedItems") or {}
                if not pending:
                    break
                await _backoff(attempt)
            else:
                raise StorageError(
                    f"dynamodb ({self.table_name}): batch delete kept being throttled"
                )


__all__ = ["MAX_BATCH_WRITE", "PARALLEL", "RetentionStore"]
