"""``/metrics`` of a Celery deployment's processes (the ``metrics_port`` setting, or
``--metrics-port`` of ``pyworkflow worker`` and ``pyworkflow scheduler``).

A worker runs tasks in pool processes its main process forked; each counts what it ran.
The main process serves the sum of all of them, pool processes that already exited
included, through ``prometheus_client``'s multiprocess mode: each process writes its
values to files in one directory (``PROMETHEUS_MULTIPROC_DIR``: a fresh temporary one
unless the environment names one) and a scrape adds them up.

A scheduler is one process: it serves its default registry, with the overdue backlog
(``pyworkflow_due_runs``) it counts.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from datetime import datetime
from typing import Any

from pyworkflow.engine.observing import set_up_default_observers
from pyworkflow.storage.base import StorageBackend
from pyworkflow.utils.log import logger

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
METRICS_HINT = 'serving metrics needs the metrics extra: pip install "pyworkflow-engine[metrics]"'

# The multiprocess directory this process made (removed when the worker stops).
_made_dir: str | None = None


def start_worker_metrics(port: int | None) -> None:
    """In a worker's main process, before it forks its pool: count metrics in every pool
    process, and serve their sum on ``port`` (``None``: count, serve nothing).

    Raises:
        SystemExit: ``port`` is set but cannot be served (no ``prometheus_client``, the
            port is taken): a worker asked to serve metrics does not start without.
    """
    global _made_dir
    if port is None:
        # Set up before the fork: a pool process inherits it instead of setting it up
        # (and importing prometheus_client) while it runs its first task.
        set_up_default_observers()
        return
    _require_client()
    if not os.environ.get(MULTIPROC_DIR):
        _made_dir = tempfile.mkdtemp(prefix="pyworkflow-metrics-")
        os.environ[MULTIPROC_DIR] = _made_dir
    from prometheus_client import CollectorRegistry, multiprocess, values

    # Values made from now on are written to the directory: the value class is chosen
    # when prometheus_client is imported, which a workflow module may have done already.
    # (pyworkflow's metrics all have labels: their values are made per label set, when a
    # pool process first counts one.)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    if not set_up_default_observers():
        logger.warning("metrics_enabled is off: port {} serves no pyworkflow metrics", port)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=os.environ[MULTIPROC_DIR])  # type: ignore[no-untyped-call]
    _serve(port, registry)


def stop_worker_metrics() -> None:
    """When the worker's main process stops: remove the directory it made."""
    global _made_dir
    if _made_dir is not None:
        shutil.rmtree(_made_dir, ignore_errors=True)
        _made_dir = None


def start_scheduler_metrics(port: int) -> DueRunsReporter:
    """Serve this process's default registry on ``port``, with the overdue backlog.

    Raises:
        SystemExit: the port cannot be served.
    """
    _require_client()
    from prometheus_client import REGISTRY

    set_up_default_observers()
    reporter = DueRunsReporter()
    _serve(port, REGISTRY)
    return reporter


class DueRunsReporter:
    """Counts the due runs in storage for ``pyworkflow_due_runs``."""

    def __init__(self) -> None:
        from pyworkflow.observability.metrics import DueRuns

        self.gauge = DueRuns()

    async def report(self, storage: StorageBackend, now: datetime) -> None:
        self.gauge.set(await storage.count_due_runs(now))


def _require_client() -> None:
    if importlib.util.find_spec("prometheus_client") is None:
        raise SystemExit(f"error: {METRICS_HINT}")


def _serve(port: int, registry: Any) -> None:
    from prometheus_client import start_http_server

    try:
        start_http_server(port, registry=registry)
    except OSError as exc:
        raise SystemExit(f"error: cannot serve metrics on port {port}: {exc}") from exc
    logger.info("serving metrics on port {}", port)
