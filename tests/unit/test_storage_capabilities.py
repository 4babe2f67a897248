"""Capability flags of the optional method groups (schedules, hooks, cancellation):
derived from what a backend overrides, checked by the runtime and the public API instead
of probing for ``NotImplementedError``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

import pyworkflow
from pyworkflow import sleep, start, wait_for_run, workflow
from pyworkflow.core.exceptions import ConfigurationError
from pyworkflow.engine.recovery import signalled_suspended_runs
from pyworkflow.storage import (
    FileStorageBackend,
    InMemoryStorageBackend,
    SQLiteStorageBackend,
    StorageBackend,
)
from pyworkflow.storage.base import (
    CANCELLATION,
    FLOW_CONTROL,
    HOOKS,
    OPTIONAL_GROUPS,
    RETENTION,
    SCHEDULES,
    SIGNALS,
    WORKERS,
    RunQuery,
    require_capability,
)
from pyworkflow.storage.schemas import Event, HookRecord, WorkflowRun

OPTIONAL = {SCHEDULES, HOOKS, CANCELLATION, WORKERS, RETENTION, SIGNALS, FLOW_CONTROL}


class RunsOnlyBackend(StorageBackend):
    """A third-party backend written before the optional groups existed: runs, events
    and leases only (kept in an in-memory backend it delegates to)."""

    # Declaring a group it does not implement does not give it the flag.
    capabilities = frozenset({"persistent", SCHEDULES})

    def __init__(self) -> None:
        self.inner = InMemoryStorageBackend()

    # Plain delegation; signatures are the contract's (see StorageBackend).
    async def create_run(self, *args: Any, **kwargs: Any) -> WorkflowRun:
        return await self.inner.create_run(*args, **kwargs)

    async def get_run(self, run_id: str) -> WorkflowRun | None:
        return await self.inner.get_run(run_id)

    async def get_run_by_idempotency_key(self, key: str) -> WorkflowRun | None:
        return await self.inner.get_run_by_idempotency_key(key)

    async def query_runs(self, query: RunQuery) -> list[WorkflowRun]:
        return await self.inner.query_runs(query)

    async def append_events(self, *args: Any, **kwargs: Any) -> None:
        await self.inner.append_events(*args, **kwargs)

    async def get_events(self, *args: Any, **kwargs: Any) -> list[Event]:
        return await self.inner.get_events(*args, **kwargs)

    async def list_due_runs(self, *args: Any, **kwargs: Any) -> list[str]:
        return await self.inner.list_due_runs(*args, **kwargs)

    async def next_wake_time(self) -> datetime | None:
        return await self.inner.next_wake_time()

    async def list_stale_runs(self, *args: Any, **kwargs: Any) -> list[WorkflowRun]:
        return await self.inner.list_stale_runs(*args, **kwargs)

    async def acquire_lease(self, *args: Any, **kwargs: Any) -> bool:
        return await self.inner.acquire_lease(*args, **kwargs)

    async def renew_leases(self, *args: Any, **kwargs: Any) -> None:
        await self.inner.renew_leases(*args, **kwargs)

    async def release_lease(self, *args: Any, **kwargs: Any) -> None:
        await self.inner.release_lease(*args, **kwargs)


class WithHooks(RunsOnlyBackend):
    """Adds the whole hook group (and one schedule method, not the group)."""

    async def save_hook(self, hook: HookRecord) -> HookRecord:
        return await self.inner.save_hook(hook)

    async def get_hook(self, token_hash: str) -> HookRecord | None:
        return await self.inner.get_hook(token_hash)

    async def list_hooks(self, **filters: Any) -> list[HookRecord]:
        return await self.inner.list_hooks(**filters)

    async def update_hook(self, token_hash: str, **change: Any) -> bool:
        return await self.inner.update_hook(token_hash, **change)

    async def get_schedule(self, schedule_id: str) -> Any:
        return await self.inner.get_schedule(schedule_id)


def test_flags_are_derived_from_the_overridden_groups() -> None:
    assert RunsOnlyBackend.capabilities == {"persistent"}
    assert WithHooks.capabilities == {"persistent", HOOKS}
    assert RunsOnlyBackend().capabilities == {"persistent"}


@pytest.mark.parametrize(
    "backend", [InMemoryStorageBackend, FileStorageBackend, SQLiteStorageBackend]
)
def test_builtin_backends_have_every_group(backend: type[StorageBackend]) -> None:
    assert backend.capabilities >= OPTIONAL


def test_every_group_names_base_methods() -> None:
    assert set(OPTIONAL_GROUPS) == OPTIONAL
    for methods in OPTIONAL_GROUPS.values():
        assert all(callable(getattr(StorageBackend, name)) for name in methods)


def test_require_capability() -> None:
    require_capability(WithHooks(), HOOKS)
    with pytest.raises(ConfigurationError, match="storage WithHooks does not support schedules"):
        require_capability(WithHooks(), SCHEDULES)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of optional methods called on a RunsOnlyBackend (each still raises)."""
    called: list[str] = []
    for methods in OPTIONAL_GROUPS.values():
        for name in methods:

            async def record(*_: Any, _name: str = name, **__: Any) -> Any:
                called.append(_name)
                raise NotImplementedError(_name)

            monkeypatch.setattr(RunsOnlyBackend, name, record)
    return called


@workflow(name="cap_nap")
async def nap() -> str:
    await sleep(0.05)  # suspends: the timer loop (schedules, recovery) must resume it
    return "rested"


async def test_runtime_skips_the_groups_a_backend_lacks(calls: list[str]) -> None:
    storage = RunsOnlyBackend()
    run_id = await start(nap, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert (run.status, run.result) == ("completed", "rested")
    assert await signalled_suspended_runs(storage) == []
    assert calls == []


async def test_public_api_names_the_missing_capability(calls: list[str]) -> None:
    storage = RunsOnlyBackend()
    with pytest.raises(ConfigurationError, match="RunsOnlyBackend does not support schedules"):
        await pyworkflow.list_schedules(storage=storage)
    with pytest.raises(ConfigurationError, match="does not support schedules"):
        await pyworkflow.schedules.LocalScheduler(storage=storage).tick_once()
    with pytest.raises(ConfigurationError, match="does not support hooks"):
        await pyworkflow.list_hooks(storage=storage)
    with pytest.raises(ConfigurationError, match="does not support hooks"):
        await pyworkflow.resume_hook("whk_" + "a" * 32, {}, storage=storage)
    with pytest.raises(ConfigurationError, match="does not support cancellation"):
        await pyworkflow.cancel_workflow("run-1", storage=storage)
    with pytest.raises(ConfigurationError, match="does not support retention"):
        await pyworkflow.purge_runs("30d", storage=storage)
    assert calls == []


async def test_celery_sweeper_skips_the_groups_a_backend_lacks(calls: list[str]) -> None:
    from pyworkflow.celery.scheduler import TimerSweeper

    sweeper = TimerSweeper(RunsOnlyBackend())
    assert await sweeper.tick(full=True) == float("inf")  # nothing due, nothing to fire
    assert calls == []


@workflow(name="cap_waits_for_hook")
async def waits_for_hook() -> object:
    from pyworkflow import hook

    return await hook("cap_approval")


async def test_a_hook_on_a_backend_without_hooks_fails_the_run_naming_it(calls: list[str]) -> None:
    storage = RunsOnlyBackend()
    run_id = await start(waits_for_hook, storage=storage)
    run = await storage.get_run(run_id)
    assert run.status == "failed"
    assert "RunsOnlyBackend does not support hooks" in run.error
    assert calls == []
