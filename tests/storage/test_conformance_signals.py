"""The signal half of the storage contract (cancellation requests, hook records) on
every backend."""

from __future__ import annotations

from pyworkflow.testing.conformance_signals import SignalConformance


class TestSignalConformance(SignalConformance):
    pass
