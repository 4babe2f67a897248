"""What happens to runs and steps, told once each: the one place where the engine reports
to the world outside it. The log lines of a run's life are written here; metrics
(:mod:`pyworkflow.observability.metrics`, installed by default when available) and any
other observer hook in with :func:`add_observer`.

* **Run events** are reported by whoever commits them (the run's log, a step worker's
  append, the write that creates a run), after the write landed: replay writes nothing
  again, so it never repeats a line, and a write that failed reports nothing.
* **Step attempts** are reported as they end, by the one attempt loop
  (``engine/attempts.py``), which only live attempts reach (a replayed step returns its
  recorded outcome without entering it).
* **Timer lateness** (a run woken by its due time: a sleep, a retry delay) is reported
  when its ``workflow.resumed`` commits; **queue waits** by the Celery task that took
  the message.

Observers are called on the engine's path, in the process where the event happened:
they must be cheap and must not raise (an observer that raises is logged and skipped,
never a failure of the run).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyworkflow.storage.schemas import Event, EventType
from pyworkflow.utils.log import LEVELS, log_level, logger


@dataclass(frozen=True, slots=True)
class RunRef:
    """The run an event is about."""

    run_id: str
    workflow_name: str


@dataclass(frozen=True, slots=True)
class StepAttempt:
    """One live attempt of a step body, as it ended."""

    run: RunRef
    step_id: str
    step_name: str
    attempt: int
    status: str  # "completed", "failed" or "cancelled"
    seconds: float  # wall time of the body


class Observer:
    """Receives what happened (override what you need; every method defaults to nothing)."""

    def run_events(self, run: RunRef, events: Sequence[Event]) -> None:
        """Events of ``run`` that were just committed (in sequence order)."""

    def step_attempt(self, attempt: StepAttempt) -> None:
        """A live attempt of a step body ended."""

    def timer_fired(self, run: RunRef, lateness: float) -> None:
        """``run`` woke from its due time ``lateness`` seconds after it."""

    def message_waited(self, kind: str, name: str, seconds: float) -> None:
        """A ``kind`` ("workflow" or "step") message for ``name`` waited ``seconds`` in
        the broker between being sent (or its countdown ending) and its task starting."""


_observers: tuple[Observer, ...] = ()
# What installs a process's default observers (metrics), run once before the first
# report: set by the engine (:mod:`pyworkflow.engine.observing`), which reads the
# configuration this layer cannot see.
_defaults: Callable[[], object] | None = None


def set_defaults(set_up: Callable[[], object] | None) -> None:
    """Have ``set_up`` install this process's default observers before the first report
    (``None``: none)."""
    global _defaults
    _defaults = set_up


def _set_up_defaults() -> None:
    global _defaults
    set_up, _defaults = _defaults, None
    if set_up is not None:
        try:
            set_up()
        except Exception:  # noqa: BLE001 - observing must never break a run
            logger.exception("setting up the default observers failed")


def add_observer(observer: Observer) -> None:
    """Have ``observer`` told about what happens in this process from now on."""
    global _observers
    if observer not in _observers:
        _observers = (*_observers, observer)


def remove_observer(observer: Observer) -> None:
    global _observers
    _observers = tuple(o for o in _observers if o is not observer)


def _tell(method: str, *args: Any) -> None:
    for observer in _observers:
        try:
            getattr(observer, method)(*args)
        except Exception:  # noqa: BLE001 - observing must never break a run
            logger.exception("observer {!r} failed in {}", observer, method)


# -- the engine calls these -----------------------------------------------------------------


def events_committed(
    run_id: str, workflow_name: str, events: Sequence[Event], *, due_at: datetime | None = None
) -> None:
    """``events`` of the run were just committed. ``due_at``: the run was woken because
    this wake-up time had come (its ``workflow.resumed`` tells when it actually woke)."""
    if not events:
        return
    if _defaults is not None:
        _set_up_defaults()
    run = RunRef(run_id, workflow_name)
    failed_step: dict[str, Any] | None = None
    threshold = log_level()
    for event in events:
        kind = event.type
        if kind is EventType.STEP_FAILED:
            failed_step = event.data
        line = _LINES.get(kind)
        if line is not None and line[0] >= threshold:  # (cheap when the level is off)
            line[1](run, event.data, failed_step)
        if kind is EventType.WORKFLOW_RESUMED and due_at is not None:
            lateness = max(0.0, (event.timestamp - due_at).total_seconds())
            logger.debug(
                "run {} woke {:.3f}s after its due time",
                run_id,
                lateness,
                run_id=run_id,
                workflow_name=workflow_name,
            )
            _tell("timer_fired", run, lateness)
    if _observers:
        _tell("run_events", run, events)


def observed() -> bool:
    """Whether any observer listens (what only observers need can then be skipped)."""
    if _defaults is not None:
        _set_up_defaults()
    return bool(_observers)


def step_attempt_ended(attempt: StepAttempt) -> None:
    if _observers:
        _tell("step_attempt", attempt)


def message_waited(kind: str, name: str, seconds: float) -> None:
    if _defaults is not None:
        _set_up_defaults()
    if _observers:
        _tell("message_waited", kind, name, max(0.0, seconds))


# -- the lines a run's life writes (one per committed event) -------------------------------


def _run_fields(run: RunRef) -> dict[str, Any]:
    return {"run_id": run.run_id, "workflow_name": run.workflow_name}


def _step_fields(run: RunRef, data: dict[str, Any]) -> dict[str, Any]:
    return {
        **_run_fields(run),
        "step_id": data.get("step_id"),
        "step_name": data.get("step_name"),
        "attempt": data.get("attempt"),
    }


def _error_text(data: dict[str, Any] | None) -> str:
    error = (data or {}).get("error")
    if isinstance(error, dict):
        kind, message = error.get("type"), error.get("message")
        # The stored type is qualified (module.Class): the class name reads as Python's.
        return f"{str(kind).rpartition('.')[2]}: {message}" if kind else str(message)
    return str(error) if error is not None else "unknown error"


def _started(run: RunRef, _data: dict[str, Any], _failed: Any) -> None:
    logger.info("run {} of workflow {} started", run.run_id, run.workflow_name, **_run_fields(run))


def _suspended(run: RunRef, data: dict[str, Any], _: Any) -> None:
    until = f" until {data['wake_at']}" if data.get("wake_at") else ""
    logger.info(
        "run {} suspended ({}){}",
        run.run_id,
        data.get("reason") or "waiting",
        until,
        reason=data.get("reason"),
        wake_at=data.get("wake_at"),
        **_run_fields(run),
    )


def _resumed(run: RunRef, _data: dict[str, Any], _failed: Any) -> None:
    logger.info("run {} resumed", run.run_id, **_run_fields(run))


def _recovered(run: RunRef, data: dict[str, Any], _: Any) -> None:
    logger.info(
        "run {} recovered (recovery attempt {}): {}",
        run.run_id,
        data.get("recovery_attempt"),
        data.get("reason"),
        recovery_attempt=data.get("recovery_attempt"),
        **_run_fields(run),
    )


def _completed(run: RunRef, _data: dict[str, Any], _failed: Any) -> None:
    logger.info("run {} completed", run.run_id, **_run_fields(run))


def _failed(run: RunRef, data: dict[str, Any], _: Any) -> None:
    logger.warning(
        "run {} failed: {}",
        run.run_id,
        _error_text(data),
        error=_error_text(data),
        **_run_fields(run),
    )


def _cancelled(run: RunRef, data: dict[str, Any], _: Any) -> None:
    logger.info(
        "run {} cancelled ({})",
        run.run_id,
        data.get("reason") or "no reason given",
        reason=data.get("reason"),
        **_run_fields(run),
    )


def _continued(run: RunRef, data: dict[str, Any], _: Any) -> None:
    logger.info(
        "run {} continued as new run {}",
        run.run_id,
        data.get("new_run_id"),
        new_run_id=data.get("new_run_id"),
        **_run_fields(run),
    )


def _step_completed(run: RunRef, data: dict[str, Any], _: Any) -> None:
    logger.debug(
        "step {} of run {} completed (attempt {})",
        data.get("step_name"),
        run.run_id,
        data.get("attempt"),
        **_step_fields(run, data),
    )


def _step_failed(run: RunRef, data: dict[str, Any], _: Any) -> None:
    if data.get("will_retry"):
        return  # the step.retrying after it says it, with when
    logger.warning(
        "step {} of run {} failed for good (attempt {}): {}",
        data.get("step_name"),
        run.run_id,
        data.get("attempt"),
        _error_text(data),
        error=_error_text(data),
        **_step_fields(run, data),
    )


def _step_retrying(run: RunRef, data: dict[str, Any], failed: dict[str, Any] | None) -> None:
    fields = _step_fields(run, data)
    fields["attempt"] = (failed or {}).get("attempt", (data.get("attempt") or 1) - 1)
    logger.warning(
        "step {} of run {} attempt {} failed ({}); attempt {} in {}s",
        data.get("step_name"),
        run.run_id,
        fields["attempt"],
        _error_text(failed),
        data.get("attempt"),
        data.get("delay_seconds"),
        error=_error_text(failed),
        retry_at=data.get("retry_at"),
        **fields,
    )


_DEBUG, _INFO, _WARNING = (LEVELS[name] for name in ("DEBUG", "INFO", "WARNING"))

# Each event's line: the level it is written at, and what writes it.
_LINES = {
    EventType.WORKFLOW_STARTED: (_INFO, _started),
    EventType.WORKFLOW_SUSPENDED: (_INFO, _suspended),
    EventType.WORKFLOW_RESUMED: (_INFO, _resumed),
    EventType.WORKFLOW_INTERRUPTED: (_INFO, _recovered),
    EventType.WORKFLOW_COMPLETED: (_INFO, _completed),
    EventType.WORKFLOW_FAILED: (_WARNING, _failed),
    EventType.WORKFLOW_CANCELLED: (_INFO, _cancelled),
    EventType.WORKFLOW_CONTINUED_AS_NEW: (_INFO, _continued),
    EventType.STEP_COMPLETED: (_DEBUG, _step_completed),
    EventType.STEP_FAILED: (_WARNING, _step_failed),
    EventType.STEP_RETRYING: (_WARNING, _step_retrying),
}
