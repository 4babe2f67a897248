"""The ``outages`` marker: long server-outage tests run only when asked for.

``make outages`` (``pytest -m outages``) runs them; in any other run they are skipped,
so the default suite stays within its time budget.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "outages: long outage tests on private servers (make outages)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "outages" in (config.getoption("markexpr", "") or ""):
        return
    skip = pytest.mark.skip(reason="long outage test: run `make outages` (pytest -m outages)")
    for item in items:
        if item.get_closest_marker("outages") is not None:
            item.add_marker(skip)
