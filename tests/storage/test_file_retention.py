"""File backend retention: a deleted run leaves no file behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyworkflow.storage.file import FileStorageBackend
from pyworkflow.storage.schemas import RunStatus
from pyworkflow.testing.conformance import make_events, make_run
from pyworkflow.testing.conformance_hooks import make_hook


@pytest.fixture(autouse=True)
def _only_when_file_selected(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--backend", default=None) not in (None, "file"):
        pytest.skip("--backend selects another storage backend")


async def test_deleting_runs_leaves_no_file(tmp_path: Path) -> None:
    storage = FileStorageBackend(tmp_path)
    for run_id in ("a", "b"):
        run = make_run(run_id, status=RunStatus.FAILED, idempotency_key=f"k-{run_id}")
        run.last_sequence = 2
        await storage.create_run(run, make_events(run_id, 1, 2))
        await storage.save_hook(make_hook(f"h-{run_id}", run_id=run_id))
    assert await storage.delete_runs(["a", "b"]) == 2
    for folder in ("runs", "events", "keys", "hooks"):
        assert list((tmp_path / folder).iterdir()) == [], folder
