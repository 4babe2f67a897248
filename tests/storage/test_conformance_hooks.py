"""Requests from outside a run (cancellation requests, hook records) on every backend."""

from __future__ import annotations

from pyworkflow.testing.conformance_hooks import HookConformance


class TestHookConformance(HookConformance):
    pass
