"""Why a run is not moving: what it waits for, since when, and the command that fixes it.

:func:`diagnose` reads the run, its history and the worker registry (nothing else, and
writes nothing) and lists :class:`Cause` entries, most pressing first:

* a run that waits by design: a timer (sleep, retry delay, timeout) due at T, a hook
  pending since T, a signal wait since T, a child run still going;
* a run waiting at a flow-control gate: for a concurrency slot (who holds the slots,
  how many wait ahead) or for the start time its rate limit gave it;
* a run that should be moving and is not: due since T but not resumed (nothing serves
  the storage), a step or the run's message sent to a queue no live worker consumes, a
  lease held by a worker whose beats stopped, a workflow no live worker has registered;
* a run that ended for a reason an operator can act on: a non-determinism error (the
  code changed under it), a failure.

Used by ``pyworkflow runs why``, ``GET /api/runs/{run_id}/why`` and the dashboard's run
page.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pyworkflow.core.exceptions import HistoryCorruptedError, RunNotFoundError
from pyworkflow.core.queues import STEPS_QUEUE, WORKFLOWS_QUEUE
from pyworkflow.engine import flow
from pyworkflow.engine.owners import OwnerKind, is_delivery, owner_kind
from pyworkflow.engine.replay import History
from pyworkflow.engine.workers import all_workers
from pyworkflow.storage.base import FLOW_CONTROL, SIGNALS, WORKERS, StorageBackend
from pyworkflow.storage.schemas import Event, EventType, RunStatus, WorkerRecord, WorkflowRun

# A due run not resumed within this long is reported as stuck (timers poll every second
# or so; a busy scheduler may lag a little).
OVERDUE_AFTER = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class Cause:
    """One reason the run is where it is.

    Attributes:
        kind: what it is (``timer``, ``retry``, ``hook``, ``signal``, ``child``,
            ``overdue``, ``queued``, ``step``, ``no_consumer``, ``no_worker``,
            ``dead_owner``, ``lease_expired``, ``executing``, ``cancel``, ``unread_signals``,
            ``concurrency``, ``rate_limit``, ``nondeterminism``, ``failed``, ``ended``,
            ``corrupt``).
        message: one line for people.
        since: when the wait began, where known.
        until: when it ends by itself (a timer, a timeout), where known.
        fix: the command that would move it, where one exists.
        stuck: the run should be moving and is not (a ``fix`` is needed), as opposed
            to waiting by design.
    """

    kind: str
    message: str
    since: datetime | None = None
    until: datetime | None = None
    fix: str | None = None
    stuck: bool = False


@dataclass(slots=True)
class Diagnosis:
    """What :func:`diagnose` found for one run."""

    run_id: str
    workflow_name: str
    status: RunStatus
    causes: list[Cause] = field(default_factory=list)

    @property
    def stuck(self) -> bool:
        return any(cause.stuck for cause in self.causes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "workflow_name": self.workflow_name,
            "status": self.status.value,
            "stuck": self.stuck,
            "causes": [asdict(cause) for cause in self.causes],
        }


async def diagnose(
    storage: StorageBackend, run_id: str, *, now: datetime, lease_ttl: float
) -> Diagnosis:
    """Why ``run_id`` is where it is, as of ``now`` (a worker whose last beat is older
    than ``lease_ttl`` counts as stopped).

    Raises:
        RunNotFoundError: no such run.
    """
    run = await storage.get_run(run_id)
    if run is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    found = Diagnosis(run.run_id, run.workflow_name, run.status)
    try:
        events = await storage.get_events(run_id)
    except HistoryCorruptedError as exc:
        found.causes.append(
            Cause("corrupt", f"its history cannot be read: {exc}", fix=None, stuck=True)
        )
        return found
    if run.status.is_terminal:
        found.causes.append(_ended(run))
        return found
    registry = _Registry(await _workers(storage), now, lease_ttl)
    reader = _Reader(run, events, now)
    if run.cancel_requested_at is not None:
        found.causes.append(
            Cause(
                "cancel",
                f"cancellation requested ({run.cancel_reason or 'no reason given'}); the run "
                "acts on it when it next executes",
                since=run.cancel_requested_at,
            )
        )
    if run.status == RunStatus.SUSPENDED:
        found.causes += reader.waits()
        found.causes += await _unread_signals(storage, reader)
        found.causes += _overdue(run, now)
    elif flow.is_flow_queued(run.lease_owner):
        found.causes += await _at_gate(storage, run, reader, now)
    else:
        found.causes += _active(run, reader, registry, now)
    found.causes += registry.code_for(run)
    if not found.causes:
        found.causes.append(Cause("waiting", "waiting, with nothing recorded to wait for"))
    return found


async def _unread_signals(storage: StorageBackend, reader: _Reader) -> list[Cause]:
    """Signals the run holds (received, or still in its inbox) under names none of its
    waits asks for: the classic typo, a run waiting for ``approve`` that got ``approved``."""
    history = reader.history
    waited = {
        _op_name(op_id)
        for op_id, wait in history.signal_waits.items()
        if wait.index is None and not wait.timed_out
    }
    if not waited:
        return []
    held = Counter(s.name for s in history.signals if not s.taken)
    if SIGNALS in storage.capabilities:
        inbox = await storage.list_signals(reader.run.run_id, after_sequence=history.inbox_sequence)
        held.update(s.name for s in inbox)
    others = {name: n for name, n in held.items() if name not in waited}
    if not others:
        return []
    listed = ", ".join(f"{name} ({n})" for name, n in sorted(others.items()))
    return [
        Cause(
            "unread_signals",
            f"it holds signals no wait asks for: {listed}; it waits for "
            f"{', '.join(sorted(waited))} (a misspelt name?)",
        )
    ]


async def _at_gate(
    storage: StorageBackend, run: WorkflowRun, reader: _Reader, now: datetime
) -> list[Cause]:
    """A run waiting at a flow-control gate: its rate limit's start time, or the
    concurrency slot it waits for, who holds the slots and how many wait ahead."""
    causes: list[Cause] = []
    if run.lease_owner == flow.QUEUED_RATE:
        causes.append(
            Cause(
                "rate_limit",
                f"its start is delayed by workflow {run.workflow_name!r}'s rate limit until "
                f"{_at(run.lease_expires_at)}",
                since=run.updated_at,
                until=run.lease_expires_at,
            )
        )
    else:
        key = reader.history.concurrency_key
        place = None
        if FLOW_CONTROL in storage.capabilities:
            place = await flow.place_of(storage, run.workflow_name, key, run.run_id)
        which = f"workflow {run.workflow_name!r}" + ("" if key is None else f" key {key!r}")
        if place is None:
            detail = ""
        else:
            holders = ", ".join(place.holders) or "none"
            detail = (
                f" (limit {place.limit}): held by {holders}; {len(place.ahead)} "
                f"{'run waits' if len(place.ahead) == 1 else 'runs wait'} ahead of it"
            )
        causes.append(
            Cause(
                "concurrency",
                f"waiting for a concurrency slot of {which}{detail}",
                since=run.updated_at,
                fix=None
                if place is None or not place.holders
                else f"pyworkflow runs why {place.holders[0]}",
            )
        )
    if run.lease_expires_at is not None and run.lease_expires_at < now - OVERDUE_AFTER:
        causes.append(_lease_expired(run))  # its recheck is overdue: nobody serves it
    return causes


def _ended(run: WorkflowRun) -> Cause:
    error = run.error or ""
    if "NonDeterminismError" in error:
        return Cause(
            "nondeterminism",
            f"failed: the code no longer matches its history: {error}",
            since=run.completed_at,
            fix=f"deploy the code the run started with, or guard the change with patched(); "
            f"check with: pyworkflow verify --run {run.run_id}",
            stuck=True,
        )
    if run.status == RunStatus.FAILED:
        return Cause(
            "failed",
            f"failed: {error or 'no error recorded'}",
            since=run.completed_at,
            fix=f"pyworkflow runs retry {run.run_id}",
        )
    return Cause("ended", f"the run has ended ({run.status.value})", since=run.completed_at)


def _overdue(run: WorkflowRun, now: datetime) -> list[Cause]:
    if run.wake_at is None or run.wake_at > now - OVERDUE_AFTER:
        return []
    return [
        Cause(
            "overdue",
            f"due since {_at(run.wake_at)} but not resumed: no process serves its timers",
            since=run.wake_at,
            fix="start what serves this storage: pyworkflow scheduler with pyworkflow worker "
            "(Celery), or a process running workflows locally (LocalRuntime.serve)",
            stuck=True,
        )
    ]


def _active(run: WorkflowRun, reader: _Reader, registry: _Registry, now: datetime) -> list[Cause]:
    """A pending or running run: who holds it, and whether anyone can move it."""
    owner = run.lease_owner
    causes: list[Cause] = []
    expired = run.lease_expires_at is not None and run.lease_expires_at < now
    dead = registry.dead_owner(owner, run.run_id)
    if dead is not None:
        causes.append(
            Cause(
                "dead_owner",
                f"held by worker {dead.worker_id} ({dead.host}, pid {dead.pid}), whose beats "
                f"stopped at {_at(dead.last_beat)}; crash recovery takes it over",
                since=dead.last_beat,
                fix="make sure pyworkflow scheduler runs (its sweep recovers runs of dead "
                "workers), or a process running workflows locally",
                stuck=True,
            )
        )
    elif owner is not None and (is_delivery(owner) or owner_kind(owner) is OwnerKind.ROUND):
        steps = reader.dispatched_steps()
        if steps:
            for step_id, name, queue, since in steps:
                causes.append(
                    Cause("step", f"step {name} ({step_id}) sent to queue {queue}", since=since)
                )
                causes += registry.consumers_of(queue, "step")
        else:
            queue = run.queue or WORKFLOWS_QUEUE
            causes.append(
                Cause("queued", f"sent to queue {queue} for a worker", since=run.updated_at)
            )
            causes += registry.consumers_of(queue, "workflow")
        if expired:
            causes.append(_lease_expired(run))
    elif owner is None or expired:
        causes.append(_lease_expired(run))
    else:
        causes.append(
            Cause(
                "executing",
                f"executing on {owner} (lease until {_at(run.lease_expires_at)})",
                since=run.updated_at,
            )
        )
    return causes


_SERVE_FIX = "make sure pyworkflow scheduler runs (Celery), or a process running workflows locally"


def _lease_expired(run: WorkflowRun) -> Cause:
    return Cause(
        "lease_expired",
        "nobody holds it (its lease expired or was never taken); the next crash-recovery "
        "pass takes it over",
        since=run.lease_expires_at or run.updated_at,
        fix=_SERVE_FIX,
        stuck=True,
    )


class _Reader:
    """The run's history, with the time each operation began (from its events)."""

    def __init__(self, run: WorkflowRun, events: list[Event], now: datetime) -> None:
        self.run, self.now = run, now
        self.history = History.from_events(run.run_id, events)
        self.began: dict[str, datetime] = {}
        for event in events:
            key = _op_key(event)
            if key is not None:
                self.began[key] = event.timestamp  # the latest: a retry's attempt

    def waits(self) -> list[Cause]:
        """What a suspended run waits for, as its history says."""
        history, run_id = self.history, self.run.run_id
        causes: list[Cause] = []
        for op_id, wait in history.signal_waits.items():
            if wait.index is None and not wait.timed_out:
                name = _op_name(op_id)
                causes.append(
                    Cause(
                        "signal",
                        f"waiting for signal {name}",
                        since=self.began.get(op_id),
                        until=wait.timeout_at,
                        fix=f"pyworkflow runs signal {run_id} {name} --payload JSON",
                    )
                )
        for hook_id, hook in history.open_hooks():
            name = _op_name(hook_id)
            causes.append(
                Cause(
                    "hook",
                    f"waiting for hook {name} ({hook_id})",
                    since=self.began.get(hook_id),
                    until=hook.expires_at,
                    fix=f"pyworkflow hooks resume --run {run_id} {name} --payload JSON",
                )
            )
        for sleep_id, sleep in history.sleeps.items():
            if not sleep.completed and sleep.fire_at > self.now - OVERDUE_AFTER:
                causes.append(
                    Cause(
                        "timer",
                        f"sleeping ({sleep_id}) until {_at(sleep.fire_at)}",
                        since=self.began.get(sleep_id),
                        until=sleep.fire_at,
                    )
                )
        for step_id, step in history.steps.items():
            if step.retry_at is not None and not step.completed and step.error is None:
                causes.append(
                    Cause(
                        "retry",
                        f"step {step.name} ({step_id}) retries at {_at(step.retry_at)} "
                        f"(attempt {step.attempts + 1})",
                        since=self.began.get(step_id),
                        until=step.retry_at,
                    )
                )
        for child_id, child in history.children.items():
            if child.outcome is None:
                causes.append(
                    Cause(
                        "child",
                        f"waiting for child run {child.child_run_id} ({child_id})",
                        since=self.began.get(child_id),
                        fix=f"pyworkflow runs why {child.child_run_id}",
                    )
                )
        return causes

    def dispatched_steps(self) -> list[tuple[str, str, str, datetime | None]]:
        """``(step id, name, queue, sent at)`` of attempts out on step workers."""
        return [
            (step_id, step.name, step.queue or STEPS_QUEUE, self.began.get(step_id))
            for step_id, step in self.history.steps.items()
            if step.in_flight
        ]


def _op_key(event: Event) -> str | None:
    data = event.data
    if event.type in (EventType.STEP_STARTED, EventType.STEP_RETRYING):
        return str(data.get("step_id"))
    if event.type is EventType.SIGNAL_WAITING:
        return str(data.get("wait_id"))
    if event.type is EventType.HOOK_CREATED:
        return str(data.get("hook_id"))
    if event.type is EventType.SLEEP_STARTED:
        return str(data.get("sleep_id"))
    if event.type is EventType.CHILD_WORKFLOW_STARTED:
        return str(data.get("child_id"))
    return None


class _Registry:
    """The worker registry as of one reading: who is alive, what they consume and run."""

    def __init__(self, workers: list[WorkerRecord] | None, now: datetime, ttl: float) -> None:
        self.known = workers is not None
        workers = workers or []
        cutoff = now - timedelta(seconds=ttl)
        self.live = [w for w in workers if w.last_beat >= cutoff]
        self.dead = {w.worker_id: w for w in workers if w.last_beat < cutoff}

    def dead_owner(self, owner: str | None, run_id: str) -> WorkerRecord | None:
        """The stopped worker holding the run: its lease owner, or the worker whose last
        beat listed the run (it was running one of the run's dispatched steps)."""
        if owner is not None and owner in self.dead:
            return self.dead[owner]
        if any(run_id in w.runs for w in self.live):
            return None  # a live worker is on it
        return next((w for w in self.dead.values() if run_id in w.runs), None)

    def consumers_of(self, queue: str, what: str) -> list[Cause]:
        celery = [w for w in self.live if w.kind == "celery"]
        if not self.known or any(queue in w.queues for w in celery):
            return []
        others = sorted({q for w in celery for q in w.queues})
        listening = f" (live workers consume {', '.join(others)})" if others else ""
        return [
            Cause(
                "no_consumer",
                f"no live worker consumes queue {queue}{listening}: the {what} waits there",
                fix=f"pyworkflow worker --queues {queue}",
                stuck=True,
            )
        ]

    def code_for(self, run: WorkflowRun) -> list[Cause]:
        """A run no live worker can execute: its workflow is registered in none of them
        (only judged from workers that report their workflows)."""
        reporting = [w for w in self.live if w.kind == "celery" and w.workflows]
        if not reporting or any(run.workflow_name in w.workflows for w in reporting):
            return []
        return [
            Cause(
                "no_worker",
                f"no live worker has workflow {run.workflow_name!r} registered "
                f"({len(reporting)} live workers report their workflows)",
                fix="start workers that import its module: pyworkflow --module MODULE worker",
                stuck=True,
            )
        ]


async def _workers(storage: StorageBackend) -> list[WorkerRecord] | None:
    if WORKERS not in storage.capabilities:
        return None
    return await all_workers(storage)


def _op_name(op_id: str) -> str:
    """The name in an operation id ``kind:name#n``."""
    return op_id.split(":", 1)[1].rsplit("#", 1)[0]


def _at(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


__all__ = ["Cause", "Diagnosis", "diagnose"]
