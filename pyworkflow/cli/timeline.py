"""A run's events read as a person reads them: one-line summaries (``runs events``), a
timeline with durations (``runs logs``), and the live view of ``runs tail``.

Everything here is computed from the event log alone (``docs/events.md`` lists the
fields), so it works in a process that does not have the workflow's code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from pyworkflow.serialization.errors import error_summary
from pyworkflow.storage.schemas import Event, EventType, WorkflowRun, utcnow
from pyworkflow.utils.duration import human_duration, parse_time

# Fields left out of summaries: the format version, secrets' hashes, encoded step inputs.
_HIDDEN = frozenset({"v", "token_hash", "input"})


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters (with an ellipsis when cut)."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def summarize(event: Event, width: int = 100) -> str:
    """The event's data as ``key=value`` pairs on one line (errors as ``Type: message``)."""
    parts = []
    for key, value in event.data.items():
        if key in _HIDDEN or value is None:
            continue
        text = error_summary(value) if key == "error" else _value_text(value)
        parts.append(f"{key}={clip(text, 48)}")
    return clip(" ".join(parts), width)


def _call_text(data: dict[str, Any]) -> str:
    args = [_value_text(a) for a in data.get("args") or []]
    kwargs = [f"{k}={_value_text(v)}" for k, v in (data.get("kwargs") or {}).items()]
    return f"{data.get('workflow_name', '?')}({clip(', '.join(args + kwargs), 60)})"


def _clock(value: Any) -> str:
    """An ISO time from event data as ``HH:MM:SS`` UTC (the date only when not today)."""
    if not isinstance(value, str):
        return "?"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.date() == utcnow().date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Entry:
    """One line of a run's timeline."""

    sequence: int
    timestamp: datetime
    elapsed_seconds: float
    kind: str  # workflow, step, sleep, hook, signal, child, cancel, log, context
    message: str
    duration_seconds: float | None = None

    def row(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "timestamp": self.timestamp,
            "elapsed": f"+{human_duration(self.elapsed_seconds)}",
            "elapsed_seconds": round(self.elapsed_seconds, 6),
            "kind": self.kind,
            "message": self.message,
            "duration_seconds": (
                None if self.duration_seconds is None else round(self.duration_seconds, 6)
            ),
        }


class TimelineBuilder:
    """Turns events into :class:`Entry` lines, one event at a time (``tail`` feeds it as
    events arrive; ``logs`` feeds the whole log)."""

    def __init__(self) -> None:
        self.start: datetime | None = None
        self._began: dict[str, datetime] = {}  # operation id (or step attempt) -> start
        self._names: dict[str, str] = {}  # operation id -> display name
        self._pending: dict[str, Entry] = {}  # step attempts without an outcome yet

    def _since(self, key: str, event: Event) -> float | None:
        began = self._began.get(key)
        return None if began is None else (event.timestamp - began).total_seconds()

    def feed(self, event: Event) -> list[Entry]:
        """The timeline lines ``event`` adds (none for bookkeeping events)."""
        if self.start is None:
            self.start = event.timestamp
        line = self._line(event)
        if line is None:
            return []
        kind, message, duration = line
        elapsed = (event.timestamp - self.start).total_seconds()
        return [Entry(event.sequence, event.timestamp, elapsed, kind, message, duration)]

    def open_steps(self) -> list[Entry]:
        """Step attempts that started and have no outcome (yet): e.g. out on a worker."""
        return list(self._pending.values())

    def _line(self, event: Event) -> tuple[str, str, float | None] | None:  # noqa: C901, PLR0911, PLR0912
        data, kind = event.data, event.type
        if kind is EventType.WORKFLOW_STARTED:
            self._began["workflow"] = event.timestamp
            extra = f" (retry of {data['retry_of']})" if data.get("retry_of") else ""
            return "workflow", f"started {_call_text(data)}{extra}", None
        if kind is EventType.WORKFLOW_RESUMED:
            return "workflow", "resumed", None
        if kind is EventType.WORKFLOW_SUSPENDED:
            until = f" until {_clock(data['wake_at'])}" if data.get("wake_at") else ""
            return "workflow", f"suspended ({data.get('reason', 'waiting')}){until}", None
        if kind is EventType.WORKFLOW_INTERRUPTED:
            attempt = data.get("recovery_attempt")
            return "workflow", f"interrupted: {data.get('reason')} (recovery {attempt})", None
        if kind is EventType.WORKFLOW_COMPLETED:
            took = self._since("workflow", event)
            result = clip(_value_text(data.get("result")), 60)
            return "workflow", f"completed in {human_duration(took)}: {result}", took
        if kind is EventType.WORKFLOW_FAILED:
            took = self._since("workflow", event)
            error = clip(error_summary(data.get("error")), 80)
            return "workflow", f"failed after {human_duration(took)}: {error}", took
        if kind is EventType.WORKFLOW_CANCELLED:
            took = self._since("workflow", event)
            reason = data.get("reason") or "no reason given"
            return "workflow", f"cancelled after {human_duration(took)}: {reason}", took
        if kind is EventType.WORKFLOW_CONTINUED_AS_NEW:
            return "workflow", f"continued as new run {data.get('new_run_id')}", None
        if kind in _STEP_EVENTS:
            return self._step_line(event)
        if kind is EventType.SLEEP_STARTED:
            sleep_id = str(data.get("sleep_id"))
            self._began[sleep_id] = event.timestamp
            name = f" {data['name']}" if data.get("name") else ""
            length = human_duration(data.get("duration_seconds"))
            until = _clock(data.get("fire_at"))
            return "sleep", f"sleep{name} {length} (until {until})", None
        if kind is EventType.SLEEP_COMPLETED:
            took = self._since(str(data.get("sleep_id")), event)
            return "sleep", f"sleep done after {human_duration(took)}", took
        if kind in _HOOK_EVENTS:
            return self._hook_line(event)
        if kind in _CHILD_EVENTS:
            return self._child_line(event)
        if kind in _SIGNAL_EVENTS:
            return self._signal_line(event)
        if kind is EventType.CANCELLATION_REQUESTED:
            reason = data.get("reason") or "no reason given"
            return "cancel", f"cancellation reached the workflow: {reason}", None
        if kind is EventType.STEP_CONTEXT_SET:
            return "context", "step context set", None
        if kind.value.startswith("log."):
            level = kind.value.split(".", 1)[1]
            return "log", f"[{level}] {data.get('message', '')}", None
        return None

    def _step_line(self, event: Event) -> tuple[str, str, float | None] | None:
        data, kind = event.data, event.type
        step_id, attempt = str(data.get("step_id")), data.get("attempt")
        name = str(data.get("step_name") or step_id)
        key = f"{step_id}@{attempt}"
        if kind is EventType.STEP_STARTED:
            self._began[key] = event.timestamp
            where = " (sent to a step worker)" if data.get("dispatched") else ""
            self._pending[key] = Entry(
                event.sequence,
                event.timestamp,
                0.0 if self.start is None else (event.timestamp - self.start).total_seconds(),
                "step",
                f"step {name} running (attempt {attempt}){where}",
            )
            return None  # shown with its outcome (or by open_steps while it has none)
        self._pending.pop(key, None)
        took = self._since(key, event)
        if kind is EventType.STEP_COMPLETED:
            return (
                "step",
                f"step {name} completed in {human_duration(took)} (attempt {attempt})",
                took,
            )
        if kind is EventType.STEP_FAILED:
            error = clip(error_summary(data.get("error")), 80)
            then = "; will retry" if data.get("will_retry") else ""
            fatal = " (fatal)" if data.get("fatal") else ""
            message = (
                f"step {name} failed after {human_duration(took)} (attempt {attempt})"
                f"{fatal}: {error}{then}"
            )
            return "step", message, took
        if kind is EventType.STEP_RETRYING:
            delay = human_duration(data.get("delay_seconds"))
            when = _clock(data.get("retry_at"))
            return "step", f"step {name} retrying in {delay} at {when} (attempt {attempt})", None
        reason = data.get("reason") or "cancelled"
        return "step", f"step {name} cancelled (attempt {attempt}): {reason}", took

    def _hook_line(self, event: Event) -> tuple[str, str, float | None]:
        data, kind = event.data, event.type
        hook_id = str(data.get("hook_id"))
        if kind is EventType.HOOK_CREATED:
            self._began[hook_id] = event.timestamp
            self._names[hook_id] = str(data.get("name") or hook_id)
            expires = f" (expires {_clock(data['expires_at'])})" if data.get("expires_at") else ""
            return "hook", f"waiting for hook {self._names[hook_id]}{expires}", None
        name = self._names.get(hook_id, hook_id)
        took = self._since(hook_id, event)
        if kind is EventType.HOOK_RECEIVED:
            return "hook", f"hook {name} received after {human_duration(took)}", took
        if kind is EventType.HOOK_EXPIRED:
            return "hook", f"hook {name} expired after {human_duration(took)}", took
        return "hook", f"hook {name} disposed: {data.get('reason') or 'run ended'}", None

    def _signal_line(self, event: Event) -> tuple[str, str, float | None]:
        data, kind = event.data, event.type
        name, wait_id = str(data.get("name")), str(data.get("wait_id"))
        if kind is EventType.SIGNAL_RECEIVED:
            return "signal", f"signal {name} received (#{data.get('sequence')})", None
        if kind is EventType.SIGNAL_WAITING:
            self._began[wait_id] = event.timestamp
            until = f" (timeout {_clock(data['timeout_at'])})" if data.get("timeout_at") else ""
            return "signal", f"waiting for signal {name}{until}", None
        took = self._since(wait_id, event) if wait_id in self._began else None
        after = "" if took is None else f" after {human_duration(took)}"
        if kind is EventType.SIGNAL_CONSUMED:
            return "signal", f"took signal {name}{after}", took
        return "signal", f"no signal {name} came{after}: timed out", took

    def _child_line(self, event: Event) -> tuple[str, str, float | None]:
        data, kind = event.data, event.type
        child_id = str(data.get("child_id"))
        run_id = data.get("child_run_id")
        if kind is EventType.CHILD_WORKFLOW_STARTED:
            self._began[child_id] = event.timestamp
            self._names[child_id] = str(data.get("workflow_name") or child_id)
            return "child", f"child {self._names[child_id]} started: {run_id}", None
        name = self._names.get(child_id, child_id)
        took = self._since(child_id, event)
        if kind is EventType.CHILD_WORKFLOW_COMPLETED:
            return "child", f"child {name} completed after {human_duration(took)}", took
        verb = "failed" if kind is EventType.CHILD_WORKFLOW_FAILED else "cancelled"
        error = clip(error_summary(data.get("error")), 80)
        return "child", f"child {name} {verb} after {human_duration(took)}: {error}", took


_STEP_EVENTS = frozenset(
    {
        EventType.STEP_STARTED,
        EventType.STEP_COMPLETED,
        EventType.STEP_FAILED,
        EventType.STEP_RETRYING,
        EventType.STEP_CANCELLED,
    }
)
_HOOK_EVENTS = frozenset(
    {
        EventType.HOOK_CREATED,
        EventType.HOOK_RECEIVED,
        EventType.HOOK_EXPIRED,
        EventType.HOOK_DISPOSED,
    }
)
_SIGNAL_EVENTS = frozenset(
    {
        EventType.SIGNAL_RECEIVED,
        EventType.SIGNAL_WAITING,
        EventType.SIGNAL_CONSUMED,
        EventType.SIGNAL_TIMED_OUT,
    }
)
_CHILD_EVENTS = frozenset(
    {
        EventType.CHILD_WORKFLOW_STARTED,
        EventType.CHILD_WORKFLOW_COMPLETED,
        EventType.CHILD_WORKFLOW_FAILED,
        EventType.CHILD_WORKFLOW_CANCELLED,
    }
)


def timeline(events: list[Event]) -> list[Entry]:
    """The whole timeline of a log, with still-open step attempts at their place."""
    builder = TimelineBuilder()
    entries = [entry for event in events for entry in builder.feed(event)]
    entries += builder.open_steps()
    entries.sort(key=lambda e: e.sequence)
    return entries


# -- the live view of ``runs tail`` ---------------------------------------------------------

_MARKS = {
    "completed": ("✔", "green"),
    "failed": ("✘", "red"),
    "retrying": ("↻", "yellow"),
    "cancelled": ("■", "red"),
    "running": ("…", "cyan"),
    "sleeping": ("☾", "blue"),
    "waiting": ("…", "magenta"),
    "received": ("✔", "green"),
    "expired": ("✘", "red"),
    "disposed": ("■", "red"),
    "done": ("✔", "green"),
}


@dataclass
class _Operation:
    kind: str
    name: str
    state: str
    attempt: int | None = None
    began: datetime | None = None
    ended: datetime | None = None
    until: datetime | None = None


@dataclass
class TailView:
    """What ``runs tail`` shows: the run's header and one line per operation (step,
    sleep, hook, child) with its state; re-rendered by Rich ``Live`` on every refresh,
    so running steps' durations and sleeps' progress bars move between polls."""

    run: WorkflowRun
    operations: dict[str, _Operation] = field(default_factory=dict)

    def feed(self, event: Event) -> None:  # noqa: C901 - one branch per event kind
        data, kind, at = event.data, event.type, event.timestamp
        if kind in _STEP_EVENTS:
            key = str(data.get("step_id"))
            name = str(data.get("step_name") or key)
            op = self.operations.setdefault(key, _Operation("step", name, "running"))
            op.attempt = data.get("attempt", op.attempt)
            if kind is EventType.STEP_STARTED:
                op.state, op.began, op.ended, op.until = "running", at, None, None
            elif kind is EventType.STEP_COMPLETED:
                op.state, op.ended = "completed", at
            elif kind is EventType.STEP_FAILED:
                op.state, op.ended = ("retrying" if data.get("will_retry") else "failed"), at
            elif kind is EventType.STEP_RETRYING:
                op.state, op.until = "retrying", parse_time(data.get("retry_at"))
            else:
                op.state, op.ended = "cancelled", at
        elif kind is EventType.SLEEP_STARTED:
            key = str(data.get("sleep_id"))
            name = str(data.get("name") or f"sleep {human_duration(data.get('duration_seconds'))}")
            until = parse_time(data.get("fire_at"))
            self.operations[key] = _Operation("sleep", name, "sleeping", began=at, until=until)
        elif kind is EventType.SLEEP_COMPLETED:
            sleeping = self.operations.get(str(data.get("sleep_id")))
            if sleeping is not None:
                sleeping.state, sleeping.ended = "done", at
        elif kind in _HOOK_EVENTS:
            key = str(data.get("hook_id"))
            if kind is EventType.HOOK_CREATED:
                name = str(data.get("name") or key)
                self.operations[key] = _Operation("hook", name, "waiting", began=at)
            elif key in self.operations:
                state = kind.value.split(".", 1)[1]
                self.operations[key].state, self.operations[key].ended = state, at
        elif kind in _CHILD_EVENTS:
            key = str(data.get("child_id"))
            if kind is EventType.CHILD_WORKFLOW_STARTED:
                name = f"{data.get('workflow_name')} ({data.get('child_run_id')})"
                self.operations[key] = _Operation("child", name, "running", began=at)
            elif key in self.operations:
                state = kind.value.split(".", 1)[1]
                self.operations[key].state, self.operations[key].ended = state, at

    def __rich__(self) -> RenderableType:
        now = utcnow()
        run = self.run
        header = Text.assemble(
            ("run ", "dim"),
            (run.run_id, "bold"),
            ("  workflow ", "dim"),
            (run.workflow_name, "bold"),
            ("  status ", "dim"),
            (run.status.value, _status_style(run.status.value)),
        )
        if run.status.is_terminal:
            top: RenderableType = header
        else:
            top = Spinner("dots", text=header, style="cyan")
        table = Table(box=None, show_header=True, header_style="dim", pad_edge=False)
        for column in ("", "kind", "operation", "state", "attempt", "time", ""):
            table.add_column(column)
        for op in self.operations.values():
            mark, style = _MARKS.get(op.state, ("·", "white"))
            end = op.ended or (now if op.state in {"running", "waiting", "sleeping"} else None)
            took = None if op.began is None or end is None else (end - op.began).total_seconds()
            table.add_row(
                Text(mark, style=style),
                op.kind,
                Text(op.name),
                Text(op.state, style=style),
                "-" if op.attempt is None else str(op.attempt),
                human_duration(took),
                self._bar(op, now),
            )
        return Group(top, table)

    @staticmethod
    def _bar(op: _Operation, now: datetime) -> RenderableType:
        if op.kind != "sleep" or op.began is None or op.until is None:
            return Text("")
        total = max((op.until - op.began).total_seconds(), 0.001)
        done = total if op.state == "done" else (now - op.began).total_seconds()
        percent = round(100 * min(max(done / total, 0.0), 1.0))
        return ProgressBar(total=100, completed=percent, width=20)


def _status_style(status: str) -> str:
    return {
        "completed": "green",
        "failed": "red",
        "cancelled": "red",
        "suspended": "blue",
        "running": "cyan",
    }.get(status, "white")
