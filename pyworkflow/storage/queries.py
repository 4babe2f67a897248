"""Small read helpers built only on the :class:`StorageBackend` contract."""

from __future__ import annotations

from pyworkflow.storage.base import HOOKS, StorageBackend
from pyworkflow.storage.schemas import HookStatus, RunStatus, WorkflowRun


async def final_run(storage: StorageBackend, run_id: str) -> WorkflowRun | None:
    """The run at the end of ``run_id``'s continue-as-new chain (itself if none)."""
    run = await storage.get_run(run_id)
    while run is not None and run.continued_to_run_id:
        following = await storage.get_run(run.continued_to_run_id)
        if following is None:
            break
        run = following
    return run


async def signalled_suspended_runs(storage: StorageBackend) -> list[str]:
    """Suspended runs with something to see that nobody woke them for: a received hook
    payload, or a cancellation whose requester could not wake the run (it exited)."""
    received = []
    if HOOKS in storage.capabilities:  # a third-party backend may not store hooks
        received = await storage.list_hooks(status=HookStatus.RECEIVED, limit=100)
    found: dict[str, None] = {}
    for hook in received:
        run = await storage.get_run(hook.run_id)
        if run is not None and run.status == RunStatus.SUSPENDED:
            found[run.run_id] = None
    for run in await storage.list_runs(status=RunStatus.SUSPENDED, limit=1000):
        if run.cancel_requested_at is not None:
            found[run.run_id] = None
    return list(found)
