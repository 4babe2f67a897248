"""pytest fixtures for testing your workflows, installed with pyworkflow-engine (entry point
``pytest11``, so no ``conftest.py`` line is needed). A test that uses none of them is not
touched: nothing is configured, imported or started for it.

* ``pyworkflow_env``: a fresh embedded engine for the test, a
  :class:`~pyworkflow.testing.WorkflowEnvironment` (its own in-memory storage, the local
  runtime, a timer clock the test advances). ``@pytest.mark.pyworkflow_env(time_skipping=True)``
  makes it skip ahead whenever every run waits for a timer.
* ``pyworkflow_crash_points``: :func:`~pyworkflow.testing.check_crash_points`, to await
  with the workflow and its arguments.

The fixtures are ``async`` and need pytest-asyncio (``asyncio_mode = "auto"``, or
``@pytest.mark.asyncio`` on the test).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

MARKER = "pyworkflow_env"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(time_skipping=False, poll=0.01): options of the pyworkflow_env fixture",
    )


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only without pytest-asyncio

    @pytest.fixture
    def pyworkflow_env() -> Any:
        pytest.fail("pyworkflow_env is an async fixture: pip install pytest-asyncio")

else:

    @pytest_asyncio.fixture
    async def pyworkflow_env(  # type: ignore[misc]  # (the other one: no pytest-asyncio)
        request: pytest.FixtureRequest,
    ) -> AsyncIterator[Any]:
        """A fresh embedded engine for this test (see the module docstring)."""
        from pyworkflow.testing.environment import WorkflowEnvironment

        marker = request.node.get_closest_marker(MARKER)
        options = dict(marker.kwargs) if marker is not None else {}
        async with WorkflowEnvironment(**options) as env:
            yield env


@pytest.fixture
def pyworkflow_crash_points() -> Any:
    """``await pyworkflow_crash_points(workflow, *args, drive=..., reset=..., check=...)``:
    see :func:`pyworkflow.testing.check_crash_points`."""
    from pyworkflow.testing.crash_points import check_crash_points

    return check_crash_points
