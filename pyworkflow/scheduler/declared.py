"""Schedules declared in code with ``@scheduled_workflow``: remembered at import, written
to storage by :func:`activate_declared` (workers and schedulers call it at start-up)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pyworkflow.scheduler.model import Schedule, spec_to_json
from pyworkflow.scheduler.specs import OverlapPolicy, ScheduleSpec
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import utcnow
from pyworkflow.utils.log import logger


@dataclass(frozen=True)
class DeclaredSchedule:
    schedule_id: str
    workflow_name: str
    spec: ScheduleSpec
    overlap_policy: OverlapPolicy
    catchup_window: float
    args: list[Any] = field(default_factory=list)  # encoded
    kwargs: dict[str, Any] = field(default_factory=dict)  # encoded


_DECLARED: dict[str, DeclaredSchedule] = {}


def declare(schedule: DeclaredSchedule) -> None:
    _DECLARED[schedule.schedule_id] = schedule


def declared() -> list[DeclaredSchedule]:
    return list(_DECLARED.values())


def forget_declared() -> None:
    """Drop every declaration (tests that declare schedules clean up with this)."""
    _DECLARED.clear()


async def activate_declared(storage: StorageBackend) -> list[str]:
    """Create declared schedules missing from storage; update those whose spec or
    policy changed in code (keeping their state). Returns the ids written."""
    written = []
    for item in declared():
        record = await storage.get_schedule(item.schedule_id)
        now = utcnow()
        if record is None:
            schedule = Schedule(
                schedule_id=item.schedule_id,
                workflow_name=item.workflow_name,
                spec=item.spec,
                overlap_policy=item.overlap_policy,
                catchup_window=item.catchup_window,
                args=item.args,
                kwargs=item.kwargs,
                next_tick=item.spec.next_tick(now),
                created_at=now,
            )
            schedule.next_run_time = schedule.next_tick
            if await storage.save_schedule(schedule.to_record(), expected_version=None):
                written.append(item.schedule_id)
            continue
        current = Schedule.from_record(record)
        same = (
            json.dumps(spec_to_json(current.spec), sort_keys=True)
            == json.dumps(spec_to_json(item.spec), sort_keys=True)
            and current.overlap_policy == item.overlap_policy
            and current.catchup_window == item.catchup_window
            and current.workflow_name == item.workflow_name
            and (current.args, current.kwargs) == (item.args, item.kwargs)
        )
        if same:
            continue
        current.spec, current.overlap_policy = item.spec, item.overlap_policy
        current.catchup_window, current.workflow_name = item.catchup_window, item.workflow_name
        current.args, current.kwargs = item.args, item.kwargs
        current.next_tick = item.spec.next_tick(now)
        current.next_run_time = current.next_tick
        if await storage.save_schedule(current.to_record(), expected_version=current.version):
            logger.info("schedule {} updated from its declaration", item.schedule_id)
            written.append(item.schedule_id)
    return written
