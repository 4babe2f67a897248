"""Small read helpers built only on the :class:`StorageBackend` contract."""

from __future__ import annotations

from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import WorkflowRun


async def final_run(storage: StorageBackend, run_id: str) -> WorkflowRun | None:
    """The run at the end of ``run_id``'s continue-as-new chain (itself if none)."""
    run = await storage.get_run(run_id)
    while run is not None and run.continued_to_run_id:
        following = await storage.get_run(run.continued_to_run_id)
        if following is None:
            break
        run = following
    return run
