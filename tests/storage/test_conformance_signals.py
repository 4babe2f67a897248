"""The signal half of the storage contract (cancellation, hooks) on every backend that
implements it so far."""

from __future__ import annotations

import pytest

from pyworkflow.testing.conformance_signals import SignalConformance

# Backends join as they implement the hook/cancellation methods of the contract.
IMPLEMENTED = {"memory", "file", "redis", "dynamodb", "sqlite", "postgres", "mysql"}


@pytest.fixture(autouse=True)
def _only_implemented(backend_name: str) -> None:
    if backend_name not in IMPLEMENTED:
        pytest.skip(f"{backend_name} does not store hooks and cancellation requests yet")


class TestSignalConformance(SignalConformance):
    pass
