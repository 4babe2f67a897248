"""The sparse ``runs_cancel_requested`` index: which queries it answers, and building it
for runs asked to cancel before it existed.

A run item carries ``gsi_cancel = "CANCEL"`` while the run is asked to cancel and not
finished (see :func:`~pyworkflow.storage.dynamodb.run_items._cancel_attrs`), so the
index holds just those runs, sorted by ``created_sk`` and projecting ``status``: crash
recovery's ``list_runs(status=SUSPENDED, cancel_requested=True)`` reads that one
partition with a ``FilterExpression`` on ``status``. Requests recorded by a release
before the index carry no ``gsi_cancel``; :meth:`CancelIndex.connect` adds it once per
table (walking the unfinished runs through ``runs_by_status``), then records that in a
``MIGRATIONS``/``cancel_index`` item.
"""

from __future__ import annotations

import contextlib

from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from pyworkflow.storage.base import RunQuery
from pyworkflow.storage.dynamodb.client import TableClient
from pyworkflow.storage.dynamodb.codec import Item, _s
from pyworkflow.storage.dynamodb.expressions import _Expr
from pyworkflow.storage.dynamodb.keys import (
    _CANCEL,
    _CANCEL_INDEX_SK,
    _MIGRATIONS_PK,
    INDEX_STATUS,
    _run_key,
)
from pyworkflow.storage.dynamodb.run_items import _TERMINAL
from pyworkflow.storage.schemas import TERMINAL_STATUSES, RunStatus

_MARKER: Item = {"PK": _s(_MIGRATIONS_PK), "SK": _s(_CANCEL_INDEX_SK)}
_UNFINISHED = [s.value for s in RunStatus if s not in TERMINAL_STATUSES]


class CancelIndex(TableClient):
    """Builds ``runs_cancel_requested`` for older requests; tells which queries it serves."""

    _cancel_indexed = False

    @staticmethod
    def _open_cancel_query(query: RunQuery) -> bool:
        """Whether ``runs_cancel_requested`` holds every run ``query`` can return: it asks
        for runs asked to cancel in an unfinished status."""
        return bool(query.cancel_requested) and (
            query.status is not None and RunStatus(query.status) not in TERMINAL_STATUSES
        )

    async def connect(self) -> None:
        """Open the client and prepare the table, then index the cancellation requests
        recorded before ``runs_cancel_requested`` existed (once per table)."""
        await super().connect()
        await self._ensure_cancel_index()

    async def _ensure_cancel_index(self) -> None:
        if self._cancel_indexed:
            return
        if await self._get_item(_MARKER) is None:
            for status in _UNFINISHED:
                await self._index_requests_of(status)
            await self._call("put_item", Item=dict(_MARKER))
        self._cancel_indexed = True

    async def _index_requests_of(self, status: str) -> None:
        """Add ``gsi_cancel`` to the runs in ``status`` asked to cancel without it.

        Each write is conditioned on the request still being there and the run not
        finished, so it never indexes a run whose writer moved on meanwhile. Processes
        connecting at once may both walk; the writes are idempotent.
        """
        expr = _Expr()
        params: Item = {
            "IndexName": INDEX_STATUS,
            "KeyConditionExpression": f"{expr.name('status')} = {expr.value(_s(status))}",
            **expr.params(),
        }
        async for page in self._query(**params):
            ids = [item["run_id"]["S"] for item in page]
            items = await self._batch_get_runs(ids, ("cancel_requested_at", "gsi_cancel"))
            for run_id, item in items.items():
                if "cancel_requested_at" in item and "gsi_cancel" not in item:
                    await self._index_request(run_id)

    async def _index_request(self, run_id: str) -> None:
        expr = _Expr()
        terminal = ", ".join(expr.value(_s(s)) for s in _TERMINAL)
        condition = (
            f"attribute_exists({expr.name('cancel_requested_at')}) "
            f"AND NOT ({expr.name('status')} IN ({terminal}))"
        )
        with contextlib.suppress(ClientError):  # the run changed meanwhile: nothing to do
            await self._call(
                "update_item",
                expected=("ConditionalCheckFailedException",),
                Key=_run_key(run_id),
                UpdateExpression=f"SET {expr.name('gsi_cancel')} = {expr.value(_s(_CANCEL))}",
                ConditionExpression=condition,
                **expr.params(),
            )
