"""Schedules: cron, interval and calendar triggers that start workflow runs.

``specs`` says when a schedule fires, ``model`` what a schedule holds, ``service`` how
due ticks become runs (exactly once). The public functions live in
:mod:`pyworkflow.schedules`.
"""

from pyworkflow.scheduler.model import Schedule, ScheduleEntry
from pyworkflow.scheduler.service import ScheduleService, tick_run_id
from pyworkflow.scheduler.specs import CalendarSpec, OverlapPolicy, ScheduleSpec, parse_spec

__all__ = [
    "CalendarSpec",
    "OverlapPolicy",
    "Schedule",
    "ScheduleEntry",
    "ScheduleService",
    "ScheduleSpec",
    "parse_spec",
    "tick_run_id",
]
