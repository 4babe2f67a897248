"""Schedules: one item each in the ``SCHEDULES`` partition, written with a
compare-and-set on ``version`` (by
:meth:`~pyworkflow.storage.dynamodb.client.TableClient._put_versioned`, as gates are)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pyworkflow.storage.dynamodb.client import TableClient
from pyworkflow.storage.dynamodb.codec import (
    Item,
    _from_micros,
    _micros,
    _n,
    _opt_dt,
    _payload,
    _payload_attrs,
    _s,
)
from pyworkflow.storage.dynamodb.expressions import _Expr
from pyworkflow.storage.dynamodb.keys import _SCHEDULE, _SCHEDULES_PK, _schedule_key
from pyworkflow.storage.payloads import check_schedule
from pyworkflow.storage.schemas import ScheduleRecord, ScheduleStatus

_SCHEDULE_STATUSES: dict[str, ScheduleStatus] = {s.value: s for s in ScheduleStatus}


def _schedule_item(schedule: ScheduleRecord, version: int, write_token: str) -> Item:
    """The schedule's item, stored at ``version``."""
    item: Item = {
        **_schedule_key(schedule.schedule_id),
        "schedule_id": _s(schedule.schedule_id),
        "workflow_name": _s(schedule.workflow_name),
        "schedule_status": _s(ScheduleStatus(schedule.status).value),
        "version": _n(version),
        "created_at": _n(_micros(schedule.created_at)),
        "updated_at": _n(_micros(schedule.updated_at)),
        "write_token": _s(write_token),
    }
    if schedule.next_run_time is not None:
        item["next_run_time"] = _n(_micros(schedule.next_run_time))
    # Plain or compressed, like a run payload (no attribute at all for empty data).
    data, _ = _payload_attrs("data", schedule.data or None)
    item.update(data)
    return item


def _item_to_schedule(item: Item) -> ScheduleRecord:
    return ScheduleRecord(
        schedule_id=item["schedule_id"]["S"],
        workflow_name=item["workflow_name"]["S"],
        status=_SCHEDULE_STATUSES[item["schedule_status"]["S"]],
        next_run_time=_opt_dt(item, "next_run_time"),
        data=_payload(item, "data") or "",
        version=int(item["version"]["N"]),
        created_at=_from_micros(item["created_at"]["N"]),
        updated_at=_from_micros(item["updated_at"]["N"]),
    )


class ScheduleStore(TableClient):
    """Schedule records."""

    async def save_schedule(
        self, schedule: ScheduleRecord, *, expected_version: int | None
    ) -> bool:
        """One conditional ``PutItem`` (see :meth:`TableClient._put_versioned`)."""
        check_schedule(schedule, self.payload_limit)
        return await self._put_versioned(schedule, expected_version, _schedule_item)

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        item = await self._get_item(_schedule_key(schedule_id))
        return None if item is None else _item_to_schedule(item)

    def _schedules_query(self, expr: _Expr, filters: Sequence[str]) -> Item:
        """A consistent ``Query`` of the schedules partition, in ``schedule_id`` order."""
        condition = (
            f"{expr.name('PK')} = {expr.value(_s(_SCHEDULES_PK))} "
            f"AND begins_with({expr.name('SK')}, {expr.value(_s(_SCHEDULE))})"
        )
        params: Item = {"KeyConditionExpression": condition, "ConsistentRead": True}
        if filters:
            params["FilterExpression"] = " AND ".join(filters)
        params.update(expr.params())
        return params

    async def list_schedules(
        self,
        *,
        workflow_name: str | None = None,
        status: ScheduleStatus | None = None,
        limit: int = 1000,
    ) -> list[ScheduleRecord]:
        if limit <= 0:
            return []
        expr = _Expr()
        filters = []
        if workflow_name is not None:
            filters.append(f"{expr.name('workflow_name')} = {expr.value(_s(workflow_name))}")
        if status is not None:
            value = expr.value(_s(ScheduleStatus(status).value))
            filters.append(f"{expr.name('schedule_status')} = {value}")
        params = self._schedules_query(expr, filters)
        params["Limit"] = min(1000, max(limit, 25))
        found: list[ScheduleRecord] = []
        async for page in self._query(**params):
            found.extend(_item_to_schedule(i) for i in page)
            if len(found) >= limit:
                break
        return found[:limit]

    async def list_due_schedules(self, now: datetime, limit: int = 100) -> list[ScheduleRecord]:
        """No index serves this: schedules are few, so the whole schedules partition is
        read (one consistent, filtered ``Query``) and the due ones ordered here."""
        if limit <= 0:
            return []
        expr = _Expr()
        filters = [
            f"{expr.name('schedule_status')} = {expr.value(_s(ScheduleStatus.ACTIVE.value))}",
            f"{expr.name('next_run_time')} <= {expr.value(_n(_micros(now)))}",
        ]
        due: list[ScheduleRecord] = []
        async for page in self._query(**self._schedules_query(expr, filters)):
            due.extend(_item_to_schedule(i) for i in page)
        due.sort(key=lambda s: (s.next_run_time or now, s.schedule_id))
        return due[:limit]

    async def delete_schedule(self, schedule_id: str) -> bool:
        return await self._delete_item(_schedule_key(schedule_id))
