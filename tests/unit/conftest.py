"""Shared fixtures for the unit tests: fresh configuration, a temporary working directory,
and no background runtime services left behind by a test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import pyworkflow
from pyworkflow.runtime import get_runtime


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts from default configuration in an empty working directory, so
    nothing reads a stray ``pyworkflow.config.yaml`` or writes into the repository."""
    for name in list(os.environ):
        if name.startswith("PYWORKFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    pyworkflow.reset_config()
    yield
    pyworkflow.reset_config()


@pytest.fixture(autouse=True)
async def _stop_local_runtime() -> AsyncIterator[None]:
    """Stop the local runtime's timer/heartbeat services started on this test's loop."""
    yield
    await get_runtime("local").shutdown()
