"""The schedule half of the storage contract (compare-and-set schedule records) on every
backend."""

from __future__ import annotations

from pyworkflow.testing.conformance_schedules import ScheduleConformance


class TestScheduleConformance(ScheduleConformance):
    pass
