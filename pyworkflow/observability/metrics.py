"""Prometheus metrics of runs, steps, timers and queues (the optional extra ``metrics``).

An :class:`~pyworkflow.observability.lifecycle.Observer` turns what the engine reports
into ``prometheus_client`` collectors, so every count has the same "once each" guarantee
as the log lines: run and step outcomes are counted where their event is stored (never
again on replay), durations where a live attempt ended.

Metrics are on by default in any process that has ``prometheus_client`` (setting
``metrics_enabled``), recorded in its default registry; :func:`enable_metrics` records
them in another registry instead. Serving them:

* the dashboard server's ``/metrics``;
* ``pyworkflow worker --metrics-port N`` (or the ``metrics_port`` setting for
  ``celery -A pyworkflow.celery.app worker``): the worker's main process serves what
  all its pool processes count, through ``prometheus_client``'s multiprocess mode
  (:mod:`pyworkflow.celery.worker_metrics`);
* ``pyworkflow scheduler --metrics-port N``: also the overdue backlog
  (``pyworkflow_due_runs``), which only a scheduler reports;
* your own process: ``prometheus_client.start_http_server(N)``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from pyworkflow.observability import lifecycle
from pyworkflow.storage.schemas import Event, EventType

# Seconds: from a fast step (1 ms) to a long one (10 min).
DURATION_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    600,
)
# Seconds late: a healthy deployment wakes runs within the poll interval (1 s by default).
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)

# How a run ended, by its final event.
_FINISHED = {
    EventType.WORKFLOW_COMPLETED: "completed",
    EventType.WORKFLOW_FAILED: "failed",
    EventType.WORKFLOW_CANCELLED: "cancelled",
    EventType.WORKFLOW_CONTINUED_AS_NEW: "continued_as_new",
}


class Metrics(lifecycle.Observer):
    """pyworkflow's collectors in one registry, fed by the engine's lifecycle reports."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.runs_started = Counter(
            "pyworkflow_runs_started",
            "Runs stored (started by start(), a parent, continue_as_new or a schedule).",
            ["workflow"],
            registry=registry,
        )
        self.runs_finished = Counter(
            "pyworkflow_runs_finished",
            "Runs that ended, by status: completed, failed, cancelled, continued_as_new.",
            ["workflow", "status"],
            registry=registry,
        )
        self.runs_recovered = Counter(
            "pyworkflow_runs_recovered",
            "Runs taken over after the process executing them died.",
            ["workflow"],
            registry=registry,
        )
        self.steps = Counter(
            "pyworkflow_steps",
            "Step outcomes recorded, by status: completed, failed (no retry left), cancelled.",
            ["workflow", "step", "status"],
            registry=registry,
        )
        self.step_retries = Counter(
            "pyworkflow_step_retries",
            "Step attempts that failed and were scheduled to be retried.",
            ["workflow", "step"],
            registry=registry,
        )
        self.step_duration = Histogram(
            "pyworkflow_step_duration_seconds",
            "Wall time of each live step attempt (replayed steps are not attempts), by status.",
            ["workflow", "step", "status"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.timer_lateness = Histogram(
            "pyworkflow_timer_lateness_seconds",
            "How long after its due time a run woke from a sleep or a retry delay.",
            ["workflow"],
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )
        self.queue_lag = Histogram(
            "pyworkflow_queue_lag_seconds",
            "Celery: seconds a message waited in the broker (from being sent, or from the "
            "end of its countdown, to its task starting); name is the workflow or the step.",
            ["kind", "name"],
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )

        # Each label set's child, looked up once: labels() takes a lock and checks the
        # values on every call, which a step would pay twice.
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, metric: Counter | Histogram, *values: str) -> Any:
        key = (metric, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    # -- lifecycle.Observer -------------------------------------------------------------

    def run_events(self, run: lifecycle.RunRef, events: Sequence[Event]) -> None:
        workflow = run.workflow_name
        for event in events:
            kind = event.type
            if kind is EventType.STEP_STARTED:
                continue  # (the most frequent: nothing to count)
            if kind is EventType.STEP_COMPLETED:
                self._child(self.steps, workflow, _step(event.data), "completed").inc()
            elif kind is EventType.WORKFLOW_STARTED:
                self._child(self.runs_started, workflow).inc()
            elif kind in _FINISHED:
                self._child(self.runs_finished, workflow, _FINISHED[kind]).inc()
            elif kind is EventType.WORKFLOW_INTERRUPTED:
                self._child(self.runs_recovered, workflow).inc()
            elif kind is EventType.STEP_FAILED and not event.data.get("will_retry"):
                self._child(self.steps, workflow, _step(event.data), "failed").inc()
            elif kind is EventType.STEP_CANCELLED:
                self._child(self.steps, workflow, _step(event.data), "cancelled").inc()
            elif kind is EventType.STEP_RETRYING:
                self._child(self.step_retries, workflow, _step(event.data)).inc()

    def step_attempt(self, attempt: lifecycle.StepAttempt) -> None:
        duration = self._child(
            self.step_duration, attempt.run.workflow_name, attempt.step_name, attempt.status
        )
        duration.observe(attempt.seconds)

    def timer_fired(self, run: lifecycle.RunRef, lateness: float) -> None:
        self._child(self.timer_lateness, run.workflow_name).observe(lateness)

    def message_waited(self, kind: str, name: str, seconds: float) -> None:
        self._child(self.queue_lag, kind, name).observe(seconds)


def _step(data: Mapping[str, object]) -> str:
    name = data.get("step_name")
    return name if isinstance(name, str) else "unknown"


class DueRuns:
    """``pyworkflow_due_runs``: runs whose wake-up time has passed and that no worker has
    taken yet (the overdue backlog), by workflow. Set by a scheduler after each count."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.gauge = Gauge(
            "pyworkflow_due_runs",
            "Runs whose wake-up time has passed and that wait to be sent to a worker "
            "(reported by the scheduler).",
            ["workflow"],
            registry=registry,
        )
        self._shown: set[str] = set()

    def set(self, counts: Mapping[str, int]) -> None:
        for workflow in self._shown - counts.keys():
            self.gauge.labels(workflow).set(0)  # drained: say 0 rather than go stale
        for workflow, count in counts.items():
            self.gauge.labels(workflow).set(count)
        self._shown |= counts.keys()


_lock = threading.Lock()
_installed: Metrics | None = None


def enable_metrics(registry: CollectorRegistry | None = None) -> Metrics:
    """Count pyworkflow's metrics in ``registry`` (default: ``prometheus_client``'s
    default registry) from now on, in this process; returns the collectors. Replaces
    the metrics enabled before (their collectors leave their registry)."""
    global _installed
    with _lock:
        if _installed is not None and (registry is None or _installed.registry is registry):
            return _installed
        _uninstall()
        _installed = Metrics(registry if registry is not None else REGISTRY)
        lifecycle.add_observer(_installed)
        return _installed


def disable_metrics() -> None:
    """Stop counting (the collectors leave their registry), and do not start by default."""
    with _lock:
        lifecycle.set_defaults(None)
        _uninstall()


def installed() -> Metrics | None:
    """The metrics this process counts, if enabled."""
    return _installed


def _uninstall() -> None:
    global _installed
    if _installed is None:
        return
    lifecycle.remove_observer(_installed)
    for collector in (
        _installed.runs_started,
        _installed.runs_finished,
        _installed.runs_recovered,
        _installed.steps,
        _installed.step_retries,
        _installed.step_duration,
        _installed.timer_lateness,
        _installed.queue_lag,
    ):
        _installed.registry.unregister(collector)
    _installed = None
