"""Every CLI test starts in an empty project directory with default configuration."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import pyworkflow


@pytest.fixture(autouse=True)
def _isolated_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """cwd is a fresh ``tmp_path`` (no stray ``pyworkflow.config.yaml``), no
    ``PYWORKFLOW_*`` settings (the test servers' addresses are kept), fresh config."""
    for name in list(os.environ):
        if name.startswith("PYWORKFLOW_") and not name.startswith("PYWORKFLOW_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    pyworkflow.reset_config()
    yield
    pyworkflow.reset_config()
