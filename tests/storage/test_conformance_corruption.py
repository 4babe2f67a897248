"""Undecodable stored events raise HistoryCorruptedError, on every backend with a
``corrupt_event`` hook."""

from __future__ import annotations

from pyworkflow.testing.conformance_corruption import CorruptionConformance


class TestCorruptionConformance(CorruptionConformance):
    pass
