"""A run's operations as spans over time: what the dashboard's timeline draws.

Built from the event log alone (``docs/events.md`` lists the fields), so it needs no
workflow code: one span for the workflow itself and one per operation (step, sleep, hook,
signal wait, child workflow), from the event that began it to the one that ended it. A step's
attempts are the span's segments, with the waits between them, so retries show as
separate pieces of one bar.

:func:`layout` turns spans into positions on a 0-100 scale for a chart that covers the
run from its first event until its end (or ``now`` while it runs).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pyworkflow.serialization.errors import error_summary
from pyworkflow.storage.schemas import Event, EventType
from pyworkflow.utils.duration import parse_time

SpanKind = Literal["workflow", "step", "sleep", "hook", "signal", "child"]

#: The status of a span still open when its run ended (a sleep or child the run never
#: came back to): it did not finish, and nothing more will happen to it.
UNFINISHED = "unfinished"

_WORKFLOW_ENDS = {
    EventType.WORKFLOW_COMPLETED: "completed",
    EventType.WORKFLOW_FAILED: "failed",
    EventType.WORKFLOW_CANCELLED: "cancelled",
    EventType.WORKFLOW_CONTINUED_AS_NEW: "continued",
}
_HOOK_ENDS = {
    EventType.HOOK_RECEIVED: "received",
    EventType.HOOK_EXPIRED: "expired",
    EventType.HOOK_DISPOSED: "disposed",
}
_CHILD_ENDS = {
    EventType.CHILD_WORKFLOW_COMPLETED: "completed",
    EventType.CHILD_WORKFLOW_FAILED: "failed",
    EventType.CHILD_WORKFLOW_CANCELLED: "cancelled",
}


@dataclass
class Segment:
    """One piece of a span: a step attempt (``running``, ``completed``, ``failed``,
    ``cancelled``) or the wait before the next attempt (``waiting``)."""

    start: datetime
    end: datetime | None
    status: str


@dataclass
class Span:
    """One operation of a run over time; ``end`` is ``None`` while it is open."""

    kind: SpanKind
    key: str  # the operation id (``step:charge#1``), or "workflow"
    name: str
    start: datetime
    end: datetime | None = None
    status: str = "running"
    attempts: int = 1
    detail: str = ""  # an error's "Type: message", a hook's expiry, a sleep's length
    planned_end: datetime | None = None  # a sleep's fire_at, a hook's expiry, a retry's time
    run_id: str | None = None  # a child workflow's run
    segments: list[Segment] = field(default_factory=list)

    @property
    def seconds(self) -> float | None:
        """How long the span took (``None`` while open)."""
        return None if self.end is None else (self.end - self.start).total_seconds()


def build_spans(events: Iterable[Event]) -> list[Span]:
    """The run's spans in the order their operations began (the workflow's first)."""
    builder = _Builder()
    for event in events:
        builder.feed(event)
    return builder.finish()


class _Builder:
    def __init__(self) -> None:
        self.spans: dict[str, Span] = {}
        self.ended: datetime | None = None

    def feed(self, event: Event) -> None:
        kind = event.type
        if kind is EventType.WORKFLOW_STARTED:
            name = str(event.data.get("workflow_name") or "workflow")
            self.spans["workflow"] = Span("workflow", "workflow", name, event.timestamp)
        elif kind in (EventType.WORKFLOW_SUSPENDED, EventType.WORKFLOW_RESUMED):
            workflow = self.spans.get("workflow")
            if workflow is not None and workflow.end is None:
                suspended = kind is EventType.WORKFLOW_SUSPENDED
                workflow.status = "suspended" if suspended else "running"
        elif kind in _WORKFLOW_ENDS:
            self.ended = event.timestamp
            self._close("workflow", event, _WORKFLOW_ENDS[kind])
            if kind is not EventType.WORKFLOW_CONTINUED_AS_NEW:
                self._note("workflow", error_summary(event.data.get("error") or ""))
        elif kind.value.startswith("step."):
            self._step(event)
        elif kind is EventType.SLEEP_STARTED:
            self._sleep(event)
        elif kind is EventType.SLEEP_COMPLETED:
            self._close(str(event.data.get("sleep_id")), event, "completed")
        elif kind is EventType.HOOK_CREATED:
            self._open(event, "hook", "hook_id", str(event.data.get("name") or ""), "waiting")
            self.spans[str(event.data.get("hook_id"))].planned_end = parse_time(
                event.data.get("expires_at")
            )
        elif kind in _HOOK_ENDS:
            self._close(str(event.data.get("hook_id")), event, _HOOK_ENDS[kind])
        elif kind is EventType.SIGNAL_WAITING:  # a wait that found no signal yet
            span = self._open(
                event, "signal", "wait_id", str(event.data.get("name") or ""), "waiting"
            )
            span.planned_end = parse_time(event.data.get("timeout_at"))
        elif kind is EventType.SIGNAL_CONSUMED:
            self._close(str(event.data.get("wait_id")), event, "received")
        elif kind is EventType.SIGNAL_TIMED_OUT:
            self._close(str(event.data.get("wait_id")), event, "expired")
        elif kind is EventType.CHILD_WORKFLOW_STARTED:
            name = str(event.data.get("workflow_name") or "")
            span = self._open(event, "child", "child_id", name, "running")
            span.run_id = event.data.get("child_run_id")
        elif kind in _CHILD_ENDS:
            key = str(event.data.get("child_id"))
            self._close(key, event, _CHILD_ENDS[kind])
            self._note(key, error_summary(event.data.get("error") or ""))

    def finish(self) -> list[Span]:
        """Close what the run left open when it ended; spans in the order they began."""
        if self.ended is not None:
            for span in self.spans.values():
                if span.end is None:
                    span.end, span.status = self.ended, UNFINISHED
                    for segment in span.segments:
                        segment.end = segment.end or self.ended
        return sorted(self.spans.values(), key=lambda s: (s.kind != "workflow", s.start))

    def _open(self, event: Event, kind: SpanKind, id_field: str, name: str, status: str) -> Span:
        key = str(event.data.get(id_field))
        span = Span(kind, key, name or key, event.timestamp, status=status)
        self.spans[key] = span
        return span

    def _close(self, key: str, event: Event, status: str) -> None:
        span = self.spans.get(key)
        if span is not None and span.end is None:
            span.end, span.status = event.timestamp, status

    def _note(self, key: str, detail: str) -> None:
        if key in self.spans and detail:
            self.spans[key].detail = detail

    def _sleep(self, event: Event) -> None:
        data = event.data
        span = self._open(event, "sleep", "sleep_id", str(data.get("name") or ""), "sleeping")
        span.planned_end = parse_time(data.get("fire_at"))
        seconds = data.get("duration_seconds")
        if isinstance(seconds, int | float):
            span.detail = f"{seconds:g}s"

    def _step(self, event: Event) -> None:
        data, kind, at = event.data, event.type, event.timestamp
        key = str(data.get("step_id"))
        span = self.spans.get(key)
        if span is None:
            name = str(data.get("step_name") or key)
            span = self.spans[key] = Span("step", key, name, at)
        attempt = data.get("attempt")
        if isinstance(attempt, int):
            span.attempts = max(span.attempts, attempt)
        if kind is EventType.STEP_STARTED:
            _end_last(span, at, "waiting")
            span.segments.append(Segment(at, None, "running"))
            span.status, span.end = "running", None
        elif kind is EventType.STEP_RETRYING:
            span.status, span.planned_end = "retrying", parse_time(data.get("retry_at"))
            span.segments.append(Segment(at, None, "waiting"))
        else:
            outcome = {EventType.STEP_COMPLETED: "completed", EventType.STEP_FAILED: "failed"}
            status = outcome.get(kind, "cancelled")
            _end_last(span, at, "running", status)
            if kind is EventType.STEP_FAILED and data.get("will_retry"):
                span.status = "retrying"
            else:
                span.status, span.end = status, at
            if kind is not EventType.STEP_COMPLETED:
                span.detail = error_summary(data.get("error") or data.get("reason") or "")


def _end_last(span: Span, at: datetime, open_status: str, new_status: str | None = None) -> None:
    """End the span's last segment at ``at`` if it is an open one of ``open_status``."""
    if span.segments and span.segments[-1].end is None:
        last = span.segments[-1]
        if last.status == open_status:
            last.end = at
            last.status = new_status or last.status


# -- layout ---------------------------------------------------------------------------------

#: The narrowest bar drawn (percent of the chart): an instant is still visible.
MIN_WIDTH = 0.4


@dataclass(frozen=True)
class Bar:
    """Where a span (or a segment) sits on the chart, in percent of its width."""

    left: float
    width: float
    status: str


@dataclass(frozen=True)
class Row:
    """One line of the chart: the span, its bar, its segments' bars, and how long it
    took (so far, while open)."""

    span: Span
    bar: Bar
    segments: list[Bar]
    seconds: float


@dataclass(frozen=True)
class Chart:
    """The rows over a window from ``start`` lasting ``seconds``, and axis ticks as
    ``(percent, seconds since start)``."""

    rows: list[Row]
    start: datetime
    seconds: float
    ticks: list[tuple[float, float]]


def layout(spans: list[Span], now: datetime, ticks: int = 4) -> Chart | None:
    """Place ``spans`` on a chart from the first span's start until the last end (or
    ``now`` for spans still open); ``None`` when there is nothing to draw."""
    if not spans:
        return None
    start = min(s.start for s in spans)
    end = max(max((s.end or now) for s in spans), start)
    total = max((end - start).total_seconds(), 1e-6)

    def bar(begin: datetime, finish: datetime | None, status: str) -> Bar:
        left = 100 * (begin - start).total_seconds() / total
        width = 100 * ((finish or now) - begin).total_seconds() / total
        left = min(max(left, 0.0), 100 - MIN_WIDTH)
        return Bar(round(left, 3), round(min(max(width, MIN_WIDTH), 100 - left), 3), status)

    rows = [
        Row(
            span,
            bar(span.start, span.end, span.status),
            [bar(seg.start, seg.end, seg.status) for seg in span.segments],
            ((span.end or now) - span.start).total_seconds(),
        )
        for span in spans
    ]
    marks = [(round(100 * i / ticks, 3), total * i / ticks) for i in range(ticks + 1)]
    return Chart(rows, start, total, marks)
