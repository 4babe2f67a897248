"""Testing helpers: run workflows locally against a given storage, and replay histories.

``start_local``/``resume_local`` use the local runtime (no Celery, no servers).
``verify_histories``, ``replay_history`` and ``assert_replays`` replay stored runs or
exported history files against the code (:mod:`pyworkflow.testing.replay`). The storage
conformance suite lives in :mod:`pyworkflow.testing.conformance`.
"""

from __future__ import annotations

from typing import Any

from pyworkflow.api import resume, start
from pyworkflow.engine.verify import Divergence, RunVerdict, VerifyReport
from pyworkflow.storage.base import StorageBackend
from pyworkflow.testing.crash_points import (
    CrashPointError,
    CrashPointsReport,
    check_crash_points,
)
from pyworkflow.testing.environment import WorkflowEnvironment
from pyworkflow.testing.replay import assert_replays, replay_history, verify_histories


async def start_local(
    workflow: Any, *args: Any, storage: StorageBackend | None = None, **kwargs: Any
) -> str:
    """Start ``workflow`` on the local runtime and run it until it completes or suspends."""
    run_id: str = await start(workflow, *args, runtime="local", storage=storage, **kwargs)
    return run_id


async def resume_local(run_id: str, storage: StorageBackend | None = None) -> None:
    """Resume ``run_id`` on the local runtime (replaying its history)."""
    await resume(run_id, storage=storage, runtime="local")


__all__ = [
    "CrashPointError",
    "CrashPointsReport",
    "Divergence",
    "RunVerdict",
    "VerifyReport",
    "WorkflowEnvironment",
    "assert_replays",
    "check_crash_points",
    "replay_history",
    "resume_local",
    "start_local",
    "verify_histories",
]
