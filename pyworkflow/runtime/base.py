"""The :class:`Runtime` interface: where workflow code runs (in-process, or on workers)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from pyworkflow.engine.runs import RunRequest
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import WorkflowRun


class Runtime(ABC):
    """Executes runs. ``start`` creates and runs one; ``resume`` continues a stored one."""

    name: str

    @abstractmethod
    async def start(self, request: RunRequest, storage: StorageBackend) -> str:
        """Create the run (idempotency-key aware) and execute or enqueue it; return its id."""

    async def start_detached(self, request: RunRequest, storage: StorageBackend) -> str:
        """Create the run and have it executed without waiting for it (schedules use
        this); by default the same as :meth:`start`."""
        return await self.start(request, storage)

    @abstractmethod
    async def start_transient(self, request: RunRequest) -> str:
        """Run without an event log; return the run id."""

    @abstractmethod
    async def resume(self, run_id: str, storage: StorageBackend) -> None:
        """Continue a stored run (a no-op for terminal runs or sleeps not yet due)."""

    async def wake(self, run_id: str, storage: StorageBackend) -> None:  # noqa: B027
        """Resume ``run_id`` soon even if its timer is not due (something it waits for
        happened: a cancellation, a hook payload, a child's end)."""

    def get_transient_run(self, run_id: str) -> WorkflowRun | None:  # noqa: ARG002
        """A transient run this runtime executed, if it still remembers it."""
        return None

    async def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Stop background services started by this runtime."""
