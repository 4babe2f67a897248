"""When schedules fire: cron (5 and 6 fields), intervals, calendar specs, time zones and
DST change days, start/end bounds, jitter; and the errors bad specs raise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pyworkflow import CalendarSpec, ScheduleSpec
from pyworkflow.scheduler import parse_spec


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def ticks(spec: ScheduleSpec, after: datetime, n: int) -> list[datetime]:
    out = []
    for _ in range(n):
        after = spec.next_tick(after)
        out.append(after)
    return out


def test_five_field_cron_fires_at_each_matching_minute() -> None:
    spec = ScheduleSpec(cron="*/20 9 * * *")
    assert ticks(spec, utc(2026, 1, 5, 8, 59), 4) == [
        utc(2026, 1, 5, 9, 0),
        utc(2026, 1, 5, 9, 20),
        utc(2026, 1, 5, 9, 40),
        utc(2026, 1, 6, 9, 0),
    ]


def test_six_field_cron_has_seconds_first() -> None:
    spec = ScheduleSpec(cron="15,45 * * * * *")
    assert ticks(spec, utc(2026, 1, 5, 9, 0, 0), 3) == [
        utc(2026, 1, 5, 9, 0, 15),
        utc(2026, 1, 5, 9, 0, 45),
        utc(2026, 1, 5, 9, 1, 15),
    ]


def test_interval_is_anchored_at_the_epoch_or_at_start_at() -> None:
    assert ticks(ScheduleSpec(interval="15m"), utc(2026, 1, 5, 9, 7), 2) == [
        utc(2026, 1, 5, 9, 15),
        utc(2026, 1, 5, 9, 30),
    ]
    anchored = ScheduleSpec(interval="1h", start_at=utc(2026, 1, 5, 9, 10))
    assert ticks(anchored, utc(2026, 1, 1), 2) == [utc(2026, 1, 5, 9, 10), utc(2026, 1, 5, 10, 10)]


def test_calendar_spec_weekdays_only() -> None:
    spec = ScheduleSpec(calendar=CalendarSpec(day_of_week="mon-fri", hour=9, minute=30))
    # 2026-01-09 is a Friday: the next one after it is Monday the 12th.
    assert ticks(spec, utc(2026, 1, 9, 10), 2) == [utc(2026, 1, 12, 9, 30), utc(2026, 1, 13, 9, 30)]


def test_several_calendar_specs_fire_at_each() -> None:
    spec = ScheduleSpec(calendar=[CalendarSpec(hour=8), CalendarSpec(hour=20, minute=15)])
    assert ticks(spec, utc(2026, 1, 5), 3) == [
        utc(2026, 1, 5, 8),
        utc(2026, 1, 5, 20, 15),
        utc(2026, 1, 6, 8),
    ]


def test_time_zone_wall_clock_follows_daylight_saving() -> None:
    spec = ScheduleSpec(cron="0 9 * * *", timezone="Europe/Paris")
    assert spec.next_tick(utc(2026, 1, 15)) == utc(2026, 1, 15, 8)  # CET = UTC+1
    assert spec.next_tick(utc(2026, 7, 15)) == utc(2026, 7, 15, 7)  # CEST = UTC+2


def test_dst_spring_forward_missing_time_fires_once() -> None:
    """02:30 does not exist in New York on 2026-03-08: that day fires once, at the
    instant the clock jumps past (03:30 EDT)."""
    spec = ScheduleSpec(cron="30 2 * * *", timezone="America/New_York")
    assert ticks(spec, utc(2026, 3, 7), 3) == [
        utc(2026, 3, 7, 7, 30),  # 02:30 EST
        utc(2026, 3, 8, 7, 30),  # the missing 02:30 -> 03:30 EDT
        utc(2026, 3, 9, 6, 30),  # 02:30 EDT
    ]


def test_dst_fall_back_repeated_time_fires_once() -> None:
    """01:30 happens twice in New York on 2026-11-01: it fires at the first one only."""
    spec = ScheduleSpec(cron="30 1 * * *", timezone="America/New_York")
    assert ticks(spec, utc(2026, 10, 31, 12), 3) == [
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT
        utc(2026, 11, 2, 6, 30),  # 01:30 EST the next day
        utc(2026, 11, 3, 6, 30),
    ]


def test_dst_hourly_cron_never_fires_twice_at_one_instant() -> None:
    spec = ScheduleSpec(cron="*/30 * * * *", timezone="America/New_York")
    got = ticks(spec, utc(2026, 3, 8, 6, 0), 6)
    assert got == sorted(set(got)) and len(got) == 6
    assert utc(2026, 3, 8, 7, 0) in got and utc(2026, 3, 8, 7, 30) in got


def test_start_and_end_bound_the_ticks() -> None:
    spec = ScheduleSpec(interval="1h", start_at=utc(2026, 1, 1, 10), end_at=utc(2026, 1, 1, 12))
    assert spec.ticks_between(utc(2026, 1, 1), utc(2026, 1, 2)) == [
        utc(2026, 1, 1, 10),
        utc(2026, 1, 1, 11),
        utc(2026, 1, 1, 12),
    ]
    assert spec.next_tick(utc(2026, 1, 1, 12)) is None


@pytest.mark.parametrize(
    "spec",
    [
        ScheduleSpec(interval="1h", start_at=utc(9999, 12, 31, 23)),
        ScheduleSpec(cron="0 9 * * *", start_at=utc(9999, 12, 31)),
        ScheduleSpec(calendar=CalendarSpec(hour=9), start_at=utc(9999, 12, 31)),
    ],
)
def test_no_tick_after_the_last_representable_year(spec: ScheduleSpec) -> None:
    assert spec.next_tick(utc(9999, 12, 31, 23, 30)) is None
    assert spec.ticks_between(utc(9999, 12, 30), utc(9999, 12, 31, 23, 59)) == (
        [utc(9999, 12, 31, 23)] if spec.interval else [utc(9999, 12, 31, 9)]
    )


def test_naive_start_is_utc() -> None:
    spec = ScheduleSpec(interval="1h", start_at=datetime(2026, 1, 1, 10))
    assert spec.start_at == utc(2026, 1, 1, 10)


def test_jitter_is_deterministic_and_bounded() -> None:
    spec = ScheduleSpec(interval="1m", jitter="30s")
    tick = utc(2026, 1, 1, 10)
    first = spec.jitter_for("s1", tick)
    assert first == spec.jitter_for("s1", tick)
    delays = {spec.jitter_for(f"s{i}", tick) for i in range(50)}
    assert all(timedelta(0) <= d < timedelta(seconds=30) for d in delays)
    assert len(delays) > 40  # spread, not all the same


def test_text_specs_are_cron_or_interval() -> None:
    assert parse_spec("0 9 * * mon-fri").cron == "0 9 * * mon-fri"
    assert parse_spec("15m").interval == "15m"
    assert parse_spec({"interval": 30, "timezone": "Asia/Tokyo"}).timezone == "Asia/Tokyo"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cron": "61 * * * *"}, "invalid cron expression"),
        ({"cron": "* * *"}, "invalid cron expression"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"interval": "soon"}, "soon"),
        ({"interval": "0s"}, "positive"),
        ({}, "exactly one of cron, interval or calendar"),
        ({"cron": "0 9 * * *", "interval": "1h"}, "exactly one"),
        (
            {"interval": "1h", "start_at": utc(2026, 2, 1), "end_at": utc(2026, 1, 1)},
            "end_at must be after start_at",
        ),
        ({"calendar": {"hour": 25}}, "invalid calendar spec"),
    ],
)
def test_bad_specs_raise_clear_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScheduleSpec(**kwargs)  # type: ignore[arg-type]
