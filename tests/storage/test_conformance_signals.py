"""Runs' signal inboxes (send_signal, list_signals) on every backend."""

from __future__ import annotations

from pyworkflow.testing.conformance_signals import SignalConformance


class TestSignalConformance(SignalConformance):
    pass
