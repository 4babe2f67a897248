"""The schedule half of the storage contract (compare-and-set schedule records) on every
backend that implements it so far."""

from __future__ import annotations

import pytest

from pyworkflow.testing.conformance_schedules import ScheduleConformance

# Backends join as they implement the schedule methods of the contract.
IMPLEMENTED = {"memory", "file", "redis", "dynamodb", "sqlite", "postgres", "mysql"}


@pytest.fixture(autouse=True)
def _only_implemented(backend_name: str) -> None:
    if backend_name not in IMPLEMENTED:
        pytest.skip(f"{backend_name} does not store schedules yet")


class TestScheduleConformance(ScheduleConformance):
    pass
