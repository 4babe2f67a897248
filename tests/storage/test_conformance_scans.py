"""Recovery scans at depth (a run behind 5,000 newer ones) on every backend."""

from __future__ import annotations

import pytest

from pyworkflow.testing.conformance_scans import NEWER, ScanDepthConformance

# Filling 5,000 runs takes minutes where every write is slow: moto emulates DynamoDB in
# this process (~10 writes/s on a loaded machine), and the file backend writes a file per
# run and lists by reading them all (it has no index; docs/storage.md). These depths
# still make the scans go past their first page (200 runs).
DEPTH = {"dynamodb": 250, "file": 600}


@pytest.fixture
def scan_depth(backend_name: str) -> int:
    return DEPTH.get(backend_name, NEWER)


class TestScanDepthConformance(ScanDepthConformance):
    pass
