"""Retention (deleting finished runs with their data) on every backend."""

from __future__ import annotations

from pyworkflow.testing.conformance_retention import RetentionConformance


class TestRetentionConformance(RetentionConformance):
    pass
