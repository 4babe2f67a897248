"""The worker registry half of the storage contract on every backend."""

from __future__ import annotations

from pyworkflow.testing.conformance_workers import WorkerConformance


class TestWorkerConformance(WorkerConformance):
    pass
