"""Duration parsing (``"30s"``, ``"1h30m"``, numbers, timedeltas, datetimes) and what a
malformed duration does to a workflow run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pyworkflow import (
    get_workflow_events,
    get_workflow_run,
    sleep,
    start,
    wait_for_run,
    workflow,
)
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.utils.duration import duration_seconds, parse_duration, resolve_wake_time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("3d", timedelta(days=3)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d12h", timedelta(days=2, hours=12)),
        ("1w", timedelta(weeks=1)),
        ("500ms", timedelta(milliseconds=500)),
        ("0.5s", timedelta(milliseconds=500)),
    ],
)
def test_parse_duration_strings(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (10, timedelta(seconds=10)),
        (0, timedelta(0)),
        (1.5, timedelta(seconds=1.5)),
        (timedelta(minutes=2), timedelta(minutes=2)),
    ],
)
def test_parse_duration_numbers_and_timedeltas(value: object, expected: timedelta) -> None:
    assert parse_duration(value) == expected  # type: ignore[arg-type]


def test_duration_seconds_is_float_seconds() -> None:
    assert duration_seconds("1m30s") == 90.0
    assert duration_seconds(2) == 2.0


@pytest.mark.parametrize("bad", ["5 minutes", "abc", "", "-5s", "1x", "s5", "5m5", "1h 30"])
def test_malformed_duration_strings_raise_helpful_value_error(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(bad)
    message = str(info.value)
    assert repr(bad) in message  # names what was wrong
    assert "30s" in message  # and shows a form that works


@pytest.mark.parametrize("bad", [-5, -0.5, timedelta(seconds=-1)])
def test_negative_durations_raise_value_error(bad: object) -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_duration(bad)  # type: ignore[arg-type]


def test_unsupported_duration_type_raises_type_error() -> None:
    with pytest.raises(TypeError):
        parse_duration([1, 2])  # type: ignore[arg-type]


def test_resolve_wake_time_for_duration_adds_to_now() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert resolve_wake_time("1h30m", now) == datetime(2024, 5, 1, 13, 30, tzinfo=UTC)
    assert resolve_wake_time(45, now) == now + timedelta(seconds=45)


def test_resolve_wake_time_naive_datetime_is_utc() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    wake = resolve_wake_time(datetime(2024, 5, 2, 8, 15), now)
    assert wake == datetime(2024, 5, 2, 8, 15, tzinfo=UTC)
    assert wake.utcoffset() == timedelta(0)


def test_resolve_wake_time_aware_datetime_is_converted_to_utc() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    berlin_summer = timezone(timedelta(hours=2))
    wake = resolve_wake_time(datetime(2024, 5, 2, 10, 0, tzinfo=berlin_summer), now)
    assert wake == datetime(2024, 5, 2, 8, 0, tzinfo=UTC)
    assert wake.utcoffset() == timedelta(0)
    assert wake.hour == 8


def test_resolve_wake_time_past_datetime_is_kept() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    past = datetime(2020, 1, 1, tzinfo=UTC)
    assert resolve_wake_time(past, now) == past
    assert resolve_wake_time(past, now) <= now


# -- sleep() with the forms above, inside workflows --------------------------------------

seen_errors: list[BaseException] = []


@workflow(name="dur_bogus_sleep_wf")
async def bogus_sleep_wf() -> str:
    try:
        await sleep("bogus")
    except ValueError as exc:
        seen_errors.append(exc)
        raise
    return "unreachable"


@workflow(name="dur_past_datetime_wf")
async def past_datetime_wf() -> str:
    await sleep(datetime(2000, 1, 1))  # naive, in the past: no wait
    return "awake"


@workflow(name="dur_short_sleep_wf")
async def short_sleep_wf(duration: str) -> str:
    await sleep(duration)
    return f"slept {duration}"


async def test_malformed_sleep_raises_at_call_site_and_fails_run() -> None:
    seen_errors.clear()
    storage = InMemoryStorageBackend()
    run_id = await start(bogus_sleep_wf, storage=storage)

    assert len(seen_errors) == 1
    assert isinstance(seen_errors[0], ValueError)
    assert "bogus" in str(seen_errors[0])

    run = await get_workflow_run(run_id, storage=storage)
    assert run is not None
    assert run.status == "failed"
    assert run.error is not None
    assert "ValueError" in run.error
    assert "bogus" in run.error

    types = [e.type.value for e in await get_workflow_events(run_id, storage=storage)]
    assert "sleep.started" not in types
    assert types[0] == "workflow.started"
    assert types[-1] == "workflow.failed"


async def test_sleep_until_past_datetime_does_not_suspend() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(past_datetime_wf, storage=storage)
    run = await get_workflow_run(run_id, storage=storage)
    assert run is not None
    assert run.status == "completed"
    assert run.result == "awake"


@pytest.mark.parametrize("duration", ["100ms", "0.1s"])
async def test_short_sleep_strings_suspend_and_wake(duration: str) -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(short_sleep_wf, duration, storage=storage)
    run = await get_workflow_run(run_id, storage=storage)
    assert run is not None
    assert run.status in ("suspended", "completed")
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == "completed"
    assert run.result == f"slept {duration}"
    sleeps = [
        e for e in await get_workflow_events(run_id, storage=storage) if e.type == "sleep.started"
    ]
    assert len(sleeps) == 1
    assert sleeps[0].data["duration_seconds"] == pytest.approx(0.1, abs=0.01)
