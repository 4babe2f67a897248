"""Storage faults on demand: make chosen writes of a real backend fail as a dropped
connection would, to test that runs survive them.

    faults = StorageFaults(storage, fail_appends={2}, landed=True)
    with faults:
        run_id = await start(my_workflow, storage=storage)

``landed=False``: the write fails before it reaches storage (nothing written).
``landed=True``: the write is committed, then the caller sees the failure (a connection
lost during COMMIT): the engine must find out from storage what happened.
"""

from __future__ import annotations

from collections.abc import Collection
from types import TracebackType
from typing import Any

from pyworkflow.core.exceptions import StorageUnavailableError
from pyworkflow.storage.base import StorageBackend


class StorageFaults:
    """Fails the N-th calls (counting from 1) of ``append_events`` / ``create_run`` /
    ``save_gate`` on one backend instance while installed (a context manager); counts
    every call."""

    def __init__(
        self,
        storage: StorageBackend,
        *,
        fail_appends: Collection[int] = (),
        fail_creates: Collection[int] = (),
        fail_gate_saves: Collection[int] = (),
        landed: bool = False,
    ) -> None:
        self.storage = storage
        self.fail_appends = set(fail_appends)
        self.fail_creates = set(fail_creates)
        self.fail_gate_saves = set(fail_gate_saves)
        self.landed = landed
        self.appends = 0
        self.creates = 0
        self.gate_saves = 0
        self.injected = 0

    def __enter__(self) -> StorageFaults:
        append, create = self.storage.append_events, self.storage.create_run
        save_gate = self.storage.save_gate

        async def faulty_append(*args: Any, **kwargs: Any) -> None:
            self.appends += 1
            await self._call(append, self.appends in self.fail_appends, args, kwargs)

        async def faulty_create(*args: Any, **kwargs: Any) -> Any:
            self.creates += 1
            return await self._call(create, self.creates in self.fail_creates, args, kwargs)

        async def faulty_save_gate(*args: Any, **kwargs: Any) -> Any:
            self.gate_saves += 1
            fail = self.gate_saves in self.fail_gate_saves
            return await self._call(save_gate, fail, args, kwargs)

        self.storage.append_events = faulty_append  # type: ignore[method-assign]
        self.storage.create_run = faulty_create  # type: ignore[method-assign]
        self.storage.save_gate = faulty_save_gate  # type: ignore[method-assign]
        return self

    async def _call(self, method: Any, fail: bool, args: Any, kwargs: Any) -> Any:
        if not fail:
            return await method(*args, **kwargs)
        self.injected += 1
        if self.landed:
            await method(*args, **kwargs)
        raise StorageUnavailableError("injected fault: the connection was lost")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The instance attributes shadowed the class's methods: removing them restores.
        del self.storage.append_events
        del self.storage.create_run
        del self.storage.save_gate
