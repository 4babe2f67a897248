"""The timeline's spans, built from event logs written by hand in the documented shapes
(docs/events.md), and their layout on the chart; no storage and no browser needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pyworkflow.server.spans import UNFINISHED, build_spans, layout
from pyworkflow.storage.schemas import Event, EventType

T0 = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)


def _log(*entries: tuple[float, EventType, dict[str, Any]]) -> list[Event]:
    return [
        Event("run_1", kind, data, sequence=n, timestamp=T0 + timedelta(seconds=at))
        for n, (at, kind, data) in enumerate(entries, start=1)
    ]


def _step(attempt: int, **data: Any) -> dict[str, Any]:
    return {"step_id": "step:charge#1", "step_name": "charge", "attempt": attempt, **data}


RETRIED_STEP = (
    (0.0, EventType.WORKFLOW_STARTED, {"workflow_name": "order", "args": [], "kwargs": {}}),
    (1.0, EventType.STEP_STARTED, _step(1)),
    (
        1.5,
        EventType.STEP_FAILED,
        _step(
            1,
            will_retry=True,
            error={"type": "x.Timeout", "message": "gateway"},
        ),
    ),
    (
        1.5,
        EventType.STEP_RETRYING,
        _step(2, retry_at=(T0 + timedelta(seconds=4)).isoformat()),
    ),
    (4.0, EventType.STEP_STARTED, _step(2)),
    (5.0, EventType.STEP_COMPLETED, _step(2, result=1)),
    (
        6.0,
        EventType.SLEEP_STARTED,
        {"sleep_id": "sleep:cool#1", "name": "cool", "fire_at": None, "duration_seconds": 2},
    ),
    (8.0, EventType.SLEEP_COMPLETED, {"sleep_id": "sleep:cool#1"}),
    (8.0, EventType.HOOK_CREATED, {"hook_id": "hook:ok#1", "name": "ok", "token_hash": "ab" * 32}),
    (9.0, EventType.HOOK_RECEIVED, {"hook_id": "hook:ok#1", "payload": {}}),
    (
        9.0,
        EventType.CHILD_WORKFLOW_STARTED,
        {"child_id": "child:sub#1", "child_run_id": "run_2", "workflow_name": "sub"},
    ),
    (
        9.5,
        EventType.CHILD_WORKFLOW_FAILED,
        {
            "child_id": "child:sub#1",
            "child_run_id": "run_2",
            "error": {"type": "a.Boom", "message": "no"},
        },
    ),
    (10.0, EventType.WORKFLOW_COMPLETED, {"result": 1}),
)


def test_one_span_per_operation_with_status_duration_and_attempts() -> None:
    spans = build_spans(_log(*RETRIED_STEP))
    assert [(s.kind, s.name, s.status) for s in spans] == [
        ("workflow", "order", "completed"),
        ("step", "charge", "completed"),
        ("sleep", "cool", "completed"),
        ("hook", "ok", "received"),
        ("child", "sub", "failed"),
    ]
    workflow, step, sleep, hook, child = spans
    assert workflow.seconds == 10.0
    assert (step.start, step.seconds, step.attempts) == (T0 + timedelta(seconds=1), 4.0, 2)
    assert step.detail == "Timeout: gateway"  # what made it retry
    assert sleep.seconds == 2.0 and sleep.detail == "2s"
    assert hook.seconds == 1.0
    assert child.run_id == "run_2" and child.detail == "Boom: no"


def test_a_retried_step_has_its_attempts_and_the_wait_as_segments() -> None:
    step = build_spans(_log(*RETRIED_STEP))[1]
    shape = [
        (s.status, (s.start - T0).total_seconds(), (s.end - T0).total_seconds())
        for s in step.segments
        if s.end
    ]
    assert shape == [("failed", 1.0, 1.5), ("waiting", 1.5, 4.0), ("completed", 4.0, 5.0)]


def test_operations_still_going_are_open() -> None:
    fire_at = (T0 + timedelta(hours=1)).isoformat()
    log = _log(
        (0.0, EventType.WORKFLOW_STARTED, {"workflow_name": "ship"}),
        (1.0, EventType.SLEEP_STARTED, {"sleep_id": "sleep:s#1", "name": None, "fire_at": fire_at}),
        (1.0, EventType.WORKFLOW_SUSPENDED, {"reason": "waiting", "wake_at": fire_at}),
        (2.0, EventType.WORKFLOW_RESUMED, {}),
    )
    workflow, sleep = build_spans(log[:3])
    assert workflow.end is None and workflow.status == "suspended"
    assert sleep.end is None and sleep.status == "sleeping" and sleep.name == "sleep:s#1"
    assert sleep.planned_end == T0 + timedelta(hours=1)
    assert build_spans(log)[0].status == "running"  # resumed (a recovery, a cancel)


def test_what_a_finished_run_left_open_ends_with_it() -> None:
    spans = build_spans(
        _log(
            (0.0, EventType.WORKFLOW_STARTED, {"workflow_name": "ship"}),
            (1.0, EventType.SLEEP_STARTED, {"sleep_id": "sleep:s#1", "name": "pickup"}),
            (3.0, EventType.HOOK_CREATED, {"hook_id": "hook:h#1", "name": "h"}),
            (5.0, EventType.HOOK_DISPOSED, {"hook_id": "hook:h#1", "reason": "run ended"}),
            (
                5.0,
                EventType.WORKFLOW_CANCELLED,
                {"reason": "stop", "error": {"type": "x.CancellationError", "message": "stop"}},
            ),
        )
    )
    workflow, sleep, hook = spans
    assert (workflow.status, workflow.detail) == ("cancelled", "CancellationError: stop")
    assert (sleep.status, sleep.seconds) == (UNFINISHED, 4.0)
    assert (hook.status, hook.seconds) == ("disposed", 2.0)


def test_a_fatal_step_failure_ends_the_step() -> None:
    spans = build_spans(
        _log(
            (0.0, EventType.WORKFLOW_STARTED, {"workflow_name": "refund"}),
            (0.1, EventType.STEP_STARTED, _step(1)),
            (
                0.3,
                EventType.STEP_FAILED,
                _step(
                    1,
                    will_retry=False,
                    fatal=True,
                    error={"type": "FatalError", "message": "closed"},
                ),
            ),
        )
    )
    step = spans[1]
    assert (step.status, step.detail, round(step.seconds or 0, 6)) == (
        "failed",
        "FatalError: closed",
        0.2,
    )


def test_layout_places_bars_in_percent_of_the_run() -> None:
    chart = layout(build_spans(_log(*RETRIED_STEP)), now=T0 + timedelta(seconds=99))
    assert chart is not None and chart.seconds == 10.0 and chart.start == T0
    bars = {row.span.name: row.bar for row in chart.rows}
    assert (bars["order"].left, bars["order"].width) == (0.0, 100.0)
    assert (bars["charge"].left, bars["charge"].width) == (10.0, 40.0)
    assert (bars["sub"].left, bars["sub"].width) == (90.0, 5.0)
    charge = next(row for row in chart.rows if row.span.name == "charge")
    assert [(s.left, s.width, s.status) for s in charge.segments] == [
        (10.0, 5.0, "failed"),
        (15.0, 25.0, "waiting"),
        (40.0, 10.0, "completed"),
    ]
    assert chart.ticks[0] == (0.0, 0.0) and chart.ticks[-1] == (100.0, 10.0)


def test_layout_draws_open_spans_until_now_and_instants_visibly() -> None:
    events = _log(
        (0.0, EventType.WORKFLOW_STARTED, {"workflow_name": "w"}),
        (2.0, EventType.STEP_STARTED, _step(1)),
        (2.0, EventType.STEP_COMPLETED, _step(1)),
    )
    chart = layout(build_spans(events), now=T0 + timedelta(seconds=4))
    assert chart is not None and chart.seconds == 4.0
    workflow, step = chart.rows
    assert workflow.bar.width == 100.0 and workflow.seconds == 4.0  # open: until now
    assert step.bar.left == 50.0 and step.bar.width > 0  # an instant is still drawn
    assert layout([], now=T0) is None


def test_a_signal_wait_is_a_span_until_it_takes_a_signal_or_times_out() -> None:
    timeout_at = (T0 + timedelta(minutes=5)).isoformat()
    waiting = {"wait_id": "signal:cart#2", "name": "cart", "timeout_at": timeout_at}
    log = _log(
        (0.0, EventType.WORKFLOW_STARTED, {"workflow_name": "shop"}),
        (1.0, EventType.SIGNAL_CONSUMED, {"wait_id": "signal:cart#1", "name": "cart", "index": 0}),
        (1.0, EventType.SIGNAL_WAITING, waiting),
        (3.0, EventType.SIGNAL_RECEIVED, {"index": 1, "name": "cart", "sequence": 1}),
        (3.0, EventType.SIGNAL_CONSUMED, {"wait_id": "signal:cart#2", "name": "cart", "index": 1}),
        (4.0, EventType.SIGNAL_WAITING, {"wait_id": "signal:cart#3", "name": "cart"}),
        (9.0, EventType.SIGNAL_TIMED_OUT, {"wait_id": "signal:cart#3", "name": "cart"}),
    )
    workflow, took, gave_up = build_spans(log)  # a signal taken at once is no wait: no span
    assert (took.kind, took.name, took.status) == ("signal", "cart", "received")
    assert took.end is not None and (took.end - took.start) == timedelta(seconds=2)
    assert took.planned_end == T0 + timedelta(minutes=5)
    assert (gave_up.status, gave_up.end) == ("expired", T0 + timedelta(seconds=9))
