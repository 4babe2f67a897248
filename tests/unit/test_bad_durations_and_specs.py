"""Bad durations and schedule specs are refused with a ValueError that names the value and
what was wrong (the field, the allowed range, the maximum), never an OverflowError or a
raw croniter error, and a schedule that can never fire is refused when it is created."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from pyworkflow import get_workflow_run, sleep, start, workflow
from pyworkflow.scheduler.cron import check_cron
from pyworkflow.scheduler.specs import CalendarSpec, ScheduleSpec
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.utils.duration import MAX_DURATION, parse_duration

# -- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (float("inf"), "inf"),
        ("99999999999d", "'99999999999d'"),
        (10**400, "1000000000"),
        (timedelta.max, "timedelta(days=999999999"),
        ("9" * 400 + "d", "'9999"),  # a float overflowing to inf while parsing
        (36525 * 86400 + 1, "3155760001"),
    ],
)
def test_too_long_durations_name_the_value_and_the_maximum(value: object, shown: str) -> None:
    with pytest.raises(ValueError, match="too long: the maximum is 36525 days") as info:
        parse_duration(value)  # type: ignore[arg-type]
    assert shown in str(info.value)
    assert len(str(info.value)) < 200  # a huge input is shortened, not echoed whole


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "not NaN"),
        (float("-inf"), "must not be negative: -inf"),
        (-(10**400), "must not be negative"),
    ],
)
def test_nan_and_negative_infinity_are_value_errors(value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(value)


def test_the_maximum_itself_is_accepted() -> None:
    assert parse_duration(MAX_DURATION) == timedelta(days=36525)
    assert parse_duration("36525d") == MAX_DURATION


@workflow(name="bad_sleep")
async def bad_sleep() -> None:
    await sleep(float("inf"))


async def test_an_infinite_sleep_fails_the_run_with_a_value_error() -> None:
    storage = InMemoryStorageBackend()
    run = await get_workflow_run(await start(bad_sleep, storage=storage), storage=storage)
    assert run is not None and run.status.value == "failed"
    assert run.error is not None and run.error.startswith("ValueError: duration inf is too long")


# -- cron --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("99 * * * *", "minute value 99 is out of range 0-59"),
        ("1,99 * * * *", "minute value 99 is out of range 0-59"),
        ("0 25 * * *", "hour value 25 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month value 0 is out of range 1-31"),
        ("0 0 * 13 *", "month value 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week value 8 is out of range 0-7"),
        ("61 * * * * *", "second value 61 is out of range 0-59"),
        ("0 0 1 foo *", "month value 'foo' is not a number 1-12 or a name"),
        ("*/0 * * * *", "minute step '0' must be a whole number >= 1"),
        ("0 1-99 * * *", "hour value 99 is out of range 0-23"),
        ("* * *", "it has 3 fields; expected 5"),
        ("0 0 30 2 *", "it never fires (day-of-month '30' does not exist in month '2')"),
        ("0 0 31 4,6,9,11 *", "never fires"),
    ],
)
def test_bad_cron_names_the_field_the_value_and_the_range(cron: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"invalid cron expression {cron!r}")) as info:
        ScheduleSpec(cron=cron)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "cron",
    ["0 0 29 2 *", "0 9 * * mon-fri", "0 0 L * *", "0 0 * * mon#2", "0 0 30 2 mon", "*/15 * * * *"],
)
def test_valid_crons_pass(cron: str) -> None:
    assert check_cron(cron) == cron


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"hour": 25}, "hour value 25 is out of range 0-23"),
        ({"month": 2, "day_of_month": 30}, "never fires"),
        ({"hour": [1, -1]}, "hour item '-1'"),
        ({"minute": "*/0"}, "minute step '0'"),
    ],
)
def test_bad_calendar_specs_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="invalid calendar spec") as info:
        CalendarSpec(**fields)  # type: ignore[arg-type]
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("interval", "message"),
    [
        (0, "interval must be a positive duration, got 0"),
        ("0s", "interval must be a positive duration"),
        (-5, "must not be negative: -5"),
        (float("nan"), "not NaN"),
        (float("inf"), "too long"),
        ("99999999999d", "too long"),
    ],
)
def test_bad_intervals_are_refused(interval: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScheduleSpec(interval=interval)  # type: ignore[arg-type]


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Nowhere/City'"):
        ScheduleSpec(cron="0 9 * * *", timezone="Nowhere/City")
