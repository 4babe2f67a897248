"""Golden replays run on the local runtime: start each test from default configuration
and stop the runtime's background services the test started on its event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import pyworkflow
from pyworkflow.runtime import get_runtime


@pytest.fixture(autouse=True)
async def _isolated_runtime() -> AsyncIterator[None]:
    pyworkflow.reset_config()
    yield
    await get_runtime("local").shutdown()
    pyworkflow.reset_config()
