"""Flow-control gates (get_gate, save_gate) on every backend."""

from __future__ import annotations

from pyworkflow.testing.conformance_gates import GateConformance


class TestGateConformance(GateConformance):
    pass
