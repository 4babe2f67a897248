"""The worker registry: one item per worker in the ``WORKERS`` partition, sorted by
``worker_id``.

No index: the partition holds the registry and nothing else, so ``list_workers`` is one
consistent ``Query`` in key order that never reads a run item, and a table created by an
earlier release needs no ``UpdateTable``. A worker item carries no index key attribute,
so it is in no index either. A beat is one unconditional ``PutItem`` (1 WCU for the usual
record of well under 1 KB); one partition takes on the order of 1,000 such writes per
second, i.e. thousands of worker processes beating every few seconds.
"""

from __future__ import annotations

from pyworkflow.storage.dynamodb.client import TableClient
from pyworkflow.storage.dynamodb.codec import (
    Item,
    _from_micros,
    _micros,
    _n,
    _payload,
    _payload_attrs,
    _s,
)
from pyworkflow.storage.dynamodb.expressions import _Expr
from pyworkflow.storage.dynamodb.keys import _WORKER, _WORKERS_PK, _worker_key
from pyworkflow.storage.schemas import WorkerRecord


def _worker_item(worker: WorkerRecord) -> Item:
    item: Item = {
        **_worker_key(worker.worker_id),
        "worker_id": _s(worker.worker_id),
        "last_beat": _n(_micros(worker.last_beat)),
    }
    # Plain or compressed, like a schedule's data (a worker holding many runs).
    data, _ = _payload_attrs("data", worker.data_json())
    item.update(data)
    return item


def _item_to_worker(item: Item) -> WorkerRecord:
    # The data is only validated (WorkerRecord.from_stored), never evaluated.
    return WorkerRecord.from_stored(
        item["worker_id"]["S"],
        _from_micros(item["last_beat"]["N"]),
        _payload(item, "data") or "",
    )


class WorkerStore(TableClient):
    """Worker registry records."""

    async def save_worker(self, worker: WorkerRecord) -> None:
        """One unconditional ``PutItem``: it replaces the whole item (idempotent, so an
        SDK retry of a put that landed is harmless)."""
        await self._call("put_item", Item=_worker_item(worker))

    async def list_workers(
        self, *, limit: int = 1000, after: str | None = None
    ) -> list[WorkerRecord]:
        if limit <= 0:
            return []
        expr = _Expr()
        if after is None:
            sk = f"begins_with({expr.name('SK')}, {expr.value(_s(_WORKER))})"
        else:  # the partition holds worker items only, all keyed _WORKER + worker_id
            sk = f"{expr.name('SK')} > {expr.value(_worker_key(after)['SK'])}"
        condition = f"{expr.name('PK')} = {expr.value(_s(_WORKERS_PK))} AND {sk}"
        found: list[WorkerRecord] = []
        pages = self._query(
            KeyConditionExpression=condition,
            ConsistentRead=True,
            Limit=min(limit, 1000),
            **expr.params(),
        )
        async for page in pages:
            found.extend(_item_to_worker(i) for i in page)
            if len(found) >= limit:
                break
        return found[:limit]

    async def delete_worker(self, worker_id: str) -> bool:
        return await self._delete_item(_worker_key(worker_id))
