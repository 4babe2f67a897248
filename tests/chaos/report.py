"""What the chaos run found: every run's stored state and history, checked against the
ledger of step-body executions (:mod:`tests.chaos.flows`), and the summary table.

A problem is one of:

* **failed**: the run ended ``failed`` (or ``cancelled``), or completed with a wrong
  result;
* **lost**: not terminal at the deadline (or never stored);
* **duplicate**: a history with two ``workflow.completed`` events, or two
  ``step.completed`` events of one step operation;
* **early wake-up**: the sleep's ``sleep.completed`` event, or a body execution of the
  step after the sleep, precedes the ``fire_at`` its ``sleep.started`` event stored;
* **unexecuted completion**: a ``step.completed`` event with no body execution of that
  step in the ledger (a result recorded that no body produced);
* **history anomaly**: sequence gaps, events after the terminal event, a completed run
  without ``sleep.completed``.

Step bodies running more than once are no problem (a step body runs at least once; its
completion is recorded exactly once): they are counted, not judged.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.chaos.flows import expected

TERMINAL_EVENTS = {"workflow.completed", "workflow.failed", "workflow.cancelled"}
PROBLEM_KINDS = ("failed", "lost", "duplicate", "early", "unexecuted", "anomaly")


@dataclass
class Ledger:
    """The ledger file, indexed: body executions per ``(n, step_id)`` (unix times) and
    how often each run's workflow body reached its ``return``."""

    bodies: dict[tuple[int, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    ends: Counter[int] = field(default_factory=Counter)
    after_sleep: dict[int, float] = field(default_factory=dict)  # earliest body time

    @classmethod
    def read(cls, path: Path) -> Ledger:
        found = cls()
        if not path.exists():
            return found
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 6:
                continue  # a line cut short by a full disk; never by a kill (one write)
            kind, n, step_id, _attempt, _pid, when = parts
            if kind == "end":
                found.ends[int(n)] += 1
                continue
            found.bodies[(int(n), step_id)].append(float(when))
            if kind == "after_sleep":
                earlier = found.after_sleep.get(int(n))
                found.after_sleep[int(n)] = min(float(when), earlier or float(when))
        return found

    @property
    def body_count(self) -> int:
        return sum(len(times) for times in self.bodies.values())

    @property
    def rerun_steps(self) -> int:
        return sum(1 for times in self.bodies.values() if len(times) > 1)


@dataclass
class Findings:
    """Everything the summary prints."""

    started: int = 0
    completed: int = 0
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    recorded_steps: int = 0
    recovery_attempts: list[int] = field(default_factory=list)
    problem_runs: list[str] = field(default_factory=list)
    # (latency, run id, longest quiet gap in its history and the events around it)
    slowest: list[tuple[float, str, str]] = field(default_factory=list)

    def add(self, kind: str, run_id: str, detail: str) -> None:
        self.problems[kind].append(f"{run_id}: {detail}")
        if run_id not in self.problem_runs:
            self.problem_runs.append(run_id)

    def count(self, kind: str) -> int:
        return len(self.problems.get(kind, []))

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())


def _normalize(error: str) -> str:
    """An error message with run ids and numbers taken out, to group alike errors."""
    text = re.sub(r"run_[0-9a-zA-Z]+|[0-9a-f]{12,}", "<id>", error.strip().splitlines()[0])
    return text[:200]


def _check_history(n: int, run: Any, events: list[Any], ledger: Ledger, out: Findings) -> None:
    run_id = run.run_id
    types = [e.type.value for e in events]
    if [e.sequence for e in events] != list(range(1, len(events) + 1)):
        out.add("anomaly", run_id, f"sequence gaps: {[e.sequence for e in events]}")
    ends = [i for i, t in enumerate(types) if t in TERMINAL_EVENTS]
    if types.count("workflow.completed") > 1:
        out.add("duplicate", run_id, f"{types.count('workflow.completed')} workflow.completed")
    if ends and ends[0] != len(types) - 1:
        out.add("anomaly", run_id, f"events after the terminal event: {types[ends[0] :]}")
    done = Counter(e.data.get("step_id") for e in events if e.type.value == "step.completed")
    out.recorded_steps += len(done)
    for step_id, times in done.items():
        if times > 1:
            out.add("duplicate", run_id, f"{step_id} completed {times} times")
        if not ledger.bodies.get((n, str(step_id))):
            out.add("unexecuted", run_id, f"{step_id} recorded completed, no body ran")
    _check_sleep(n, run, events, ledger, out)


def _check_sleep(n: int, run: Any, events: list[Any], ledger: Ledger, out: Findings) -> None:
    run_id = run.run_id
    started = [e for e in events if e.type.value == "sleep.started"]
    if not started:
        if run.status.value == "completed":
            out.add("anomaly", run_id, "completed without a sleep.started event")
        return
    fire_at = datetime.fromisoformat(started[0].data["fire_at"])
    if fire_at.tzinfo is None:
        fire_at = fire_at.replace(tzinfo=UTC)
    woke = [e for e in events if e.type.value == "sleep.completed"]
    if woke and woke[0].timestamp < fire_at:
        early = (fire_at - woke[0].timestamp).total_seconds()
        out.add("early", run_id, f"sleep.completed {early:.3f}s before fire_at {fire_at}")
    if not woke and run.status.value == "completed":
        out.add("anomaly", run_id, "completed without sleep.completed")
    body = ledger.after_sleep.get(n)
    if body is not None and body < fire_at.timestamp():
        early = fire_at.timestamp() - body
        out.add("early", run_id, f"step after the sleep ran {early:.3f}s before {fire_at}")


def _check_run(n: int, run: Any, events: list[Any], ledger: Ledger, out: Findings) -> None:
    status = run.status.value
    out.recovery_attempts.append(run.recovery_attempts)
    if not run.status.is_terminal:
        last = ", ".join(e.type.value for e in events[-4:])
        out.add(
            "lost",
            run.run_id,
            f"{status}, lease {run.lease_owner} until {run.lease_expires_at}, "
            f"wake_at {run.wake_at}, last events: {last}",
        )
    elif status == "completed":
        if run.result != expected(n):
            out.add("failed", run.run_id, f"result {run.result!r}, expected {expected(n)}")
            out.errors["wrong result"] += 1
        else:
            out.completed += 1
        if run.completed_at is not None:
            latency = (run.completed_at - run.created_at).total_seconds()
            out.latencies.append(latency)
            out.slowest.append((latency, run.run_id, _longest_gap(events)))
    else:
        error = run.error or f"(status {status}, no error)"
        out.add("failed", run.run_id, f"{status}: {error[:300]}")
        out.errors[_normalize(error)] += 1
    _check_history(n, run, events, ledger, out)


def _describe(event: Any) -> str:
    data = event.data
    what = data.get("step_id") or data.get("sleep_id") or data.get("reason") or ""
    return f"#{event.sequence} {event.type.value} {what}".strip()


def _longest_gap(events: list[Any]) -> str:
    """The longest wait between two consecutive events of a history, with both events:
    where a slow run spent its time."""
    if len(events) < 2:
        return "(one event)"
    pairs = list(zip(events, events[1:], strict=False))
    before, after = max(pairs, key=lambda pair: pair[1].timestamp - pair[0].timestamp)
    gap = (after.timestamp - before.timestamp).total_seconds()
    return f"{gap:.1f} s between {_describe(before)} and {_describe(after)}"


async def analyse(storage: Any, run_ids: dict[int, str], runs: int, ledger: Ledger) -> Findings:
    """Read every run and its history from storage and check them (see module doc)."""
    out = Findings(started=len(run_ids))
    for n in range(runs):
        run_id = run_ids.get(n)
        if run_id is None:
            out.add("lost", f"(run {n})", "start() never succeeded before the deadline")
            continue
        run = await storage.get_run(run_id)
        if run is None:
            out.add("lost", run_id, "start() returned its id, but it is not stored")
            continue
        _check_run(n, run, await storage.get_events(run_id), ledger, out)
    return out


@dataclass
class ChaosCounts:
    """What the chaos did."""

    worker_kills: int = 0
    scheduler_kills: int = 0
    pg_restarts: list[str] = field(default_factory=list)  # "crash, down 4.2 s"


def _seconds(values: Iterable[float]) -> str:
    ordered = sorted(values)
    if not ordered:
        return "n/a"
    return f"{statistics.median(ordered):.1f} s / {ordered[-1]:.1f} s"


def summary_rows(
    out: Findings, chaos: ChaosCounts, ledger: Ledger, wall: float
) -> list[tuple[str, object]]:
    """The (label, value) rows of the summary table."""
    failed = out.count("failed")
    errors = "; ".join(f"{count}x {text}" for text, count in out.errors.most_common(5))
    attempts = out.recovery_attempts or [0]
    return [
        ("runs started", out.started),
        ("completed (right result)", out.completed),
        ("failed", f"{failed}" + (f"  ({errors})" if errors else "")),
        ("lost (not terminal at the deadline)", out.count("lost")),
        ("duplicate completions", out.count("duplicate")),
        ("early wake-ups", out.count("early")),
        ("completions no body produced", out.count("unexecuted")),
        ("history anomalies", out.count("anomaly")),
        ("run latency median / max", _seconds(out.latencies)),
        ("worker SIGKILLs (process groups)", chaos.worker_kills),
        ("scheduler SIGKILLs", chaos.scheduler_kills),
        ("PostgreSQL restarts", f"{len(chaos.pg_restarts)} ({'; '.join(chaos.pg_restarts)})"),
        ("step bodies run / completions recorded", f"{ledger.body_count} / {out.recorded_steps}"),
        ("steps whose body ran more than once", ledger.rerun_steps),
        ("recovery attempts total / max per run", f"{sum(attempts)} / {max(attempts)}"),
        ("workflow bodies that reached return", sum(ledger.ends.values())),
        ("wall time", f"{wall:.0f} s"),
    ]


def print_summary(
    out: Findings, chaos: ChaosCounts, ledger: Ledger, wall: float, title: str
) -> None:
    rows = summary_rows(out, chaos, ledger, wall)
    width = max(len(label) for label, _ in rows) + 2
    print()
    print(title)
    print("-" * max(len(title), width + 24))
    for label, value in rows:
        print(f"{label:<{width}}{value}")
    if out.slowest:
        print("\nslowest runs (latency; longest wait between two events of the history):")
        for latency, run_id, gap in sorted(out.slowest, reverse=True)[:5]:
            print(f"  {run_id}  {latency:.1f} s; {gap}")
    for kind in PROBLEM_KINDS:
        lines = out.problems.get(kind, [])
        if lines:
            print(f"\n{kind} ({len(lines)}):")
            for line in lines[:20]:
                print(f"  {line}")
            if len(lines) > 20:
                print(f"  ... and {len(lines) - 20} more")


_LOG_NOISE = re.compile(
    r"^\[?\d{4}-\d\d-\d\d[ T][\d:.,]+\]?:?\s*|run_[0-9a-zA-Z]+|[0-9a-f]{12,}|\d+(\.\d+)?"
)
LOG_MARKS = ("ERROR", "CRITICAL", "Traceback", "WARNING")


def log_digest(logs: Iterable[Path]) -> Counter[str]:
    """Warning and error lines of the process logs, grouped with timestamps, ids and
    numbers taken out."""
    found: Counter[str] = Counter()
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            if any(mark in line for mark in LOG_MARKS):
                found[_LOG_NOISE.sub("#", line.strip())[:170]] += 1
    return found


def log_excerpts(logs: Iterable[Path], run_ids: list[str], per_run: int = 8) -> str:
    """Lines of the process logs that mention ``run_ids`` (a few per run)."""
    texts = {path.name: path.read_text(errors="replace").splitlines() for path in logs}
    found = []
    for run_id in run_ids:
        hits = [f"  {name}: {ln.strip()[:300]}" for name, lines in texts.items() for ln in lines]
        hits = [h for h in hits if run_id in h]
        if hits:
            found.append(f"{run_id}:")
            found.extend(hits[:per_run])
    return "\n".join(found)
