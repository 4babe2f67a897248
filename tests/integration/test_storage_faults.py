"""A storage fault is never a workflow's failure: whichever write of a run fails (before
it lands, or after it landed with the answer lost), the run completes with the right
result and a gap-free history, on SQLite and on a real PostgreSQL.

The faults are injected by :class:`pyworkflow.testing.faults.StorageFaults` around the
real backend (the write is really made, or really not made); stopping a server for a
while is the job of the outage tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pyworkflow import (
    EventType,
    StorageUnavailableError,
    get_workflow_events,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.core.workflow import definition_of
from pyworkflow.storage.base import StorageBackend
from pyworkflow.testing.faults import StorageFaults
from tests.storage import backend_postgres, backend_sqlite

ran: dict[str, int] = {}


@step(name="sf_add_one")
async def add_one(x: int) -> int:
    ran["add_one"] = ran.get("add_one", 0) + 1
    return x + 1


@workflow(name="sf_careful")
async def careful() -> int:
    """Swallows step errors: a storage error reaching it would give a wrong total."""
    total = 0
    for _ in range(3):
        try:  # noqa: SIM105 - written the way user code often is
            total = await add_one(total)
        except Exception:  # noqa: BLE001 - the user code the engine must survive
            pass
    await sleep(0.05)
    return await add_one(total)


BACKENDS = {"sqlite": backend_sqlite, "postgres": backend_postgres}


@pytest.fixture(params=list(BACKENDS))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    async with BACKENDS[request.param].open_backend(tmp_path) as (backend, _):
        yield backend


async def _appends_of_a_clean_run(storage: StorageBackend) -> int:
    with StorageFaults(storage) as counter:
        run_id = await start(careful, storage=storage)
        assert (await wait_for_run(run_id, timeout=10, storage=storage)).result == 4
    return counter.appends


async def _assert_sound(storage: StorageBackend, run_id: str) -> None:
    run = await wait_for_run(run_id, timeout=15, storage=storage)
    assert (run.status, run.result) == ("completed", 4), run.error
    events = await get_workflow_events(run_id, storage=storage)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    done = [e.data["step_id"] for e in events if e.type == EventType.STEP_COMPLETED]
    assert sorted(done) == [f"step:sf_add_one#{i}" for i in range(1, 5)]  # each once
    assert not any(e.type == EventType.STEP_FAILED for e in events)


@pytest.mark.parametrize("landed", [False, True], ids=["lost", "landed"])
async def test_any_failed_append_leaves_a_sound_completed_run(
    storage: StorageBackend, landed: bool
) -> None:
    total = await _appends_of_a_clean_run(storage)
    assert total >= 5
    for n in range(1, total + 1):
        ran.clear()
        with StorageFaults(storage, fail_appends={n}, landed=landed) as faults:
            run_id = await start(careful, storage=storage)
            await _assert_sound(storage, run_id)
        assert faults.injected == 1, n


async def test_start_raises_only_when_storage_never_answers(storage: StorageBackend) -> None:
    away = StorageFaults(storage, fail_creates={1, 2, 3, 4}, landed=False)
    with away, pytest.raises(StorageUnavailableError, match="did not answer whether"):
        await start(careful, storage=storage, idempotency_key="sf-away")
    assert await storage.get_run_by_idempotency_key("sf-away") is None


async def test_a_create_lost_once_is_stored_by_start_itself(storage: StorageBackend) -> None:
    """The first create never reached storage: start() sends it again and returns the
    stored run's id (one run, sound)."""
    with StorageFaults(storage, fail_creates={1}, landed=False) as faults:
        run_id = await start(careful, storage=storage, idempotency_key="sf-lost")
        await _assert_sound(storage, run_id)
    assert faults.creates == 2
    stored = await storage.get_run_by_idempotency_key("sf-lost")
    assert stored is not None and stored.run_id == run_id


async def test_a_create_that_landed_unseen_is_found_not_doubled(storage: StorageBackend) -> None:
    with StorageFaults(storage, fail_creates={1}, landed=True):
        run_id = await start(careful, storage=storage, idempotency_key="sf-landed")
        await _assert_sound(storage, run_id)
    # Retrying with the same key is safe: the same run, not a second one.
    assert await start(careful, storage=storage, idempotency_key="sf-landed") == run_id


async def test_without_a_key_a_create_that_landed_unseen_is_one_run(
    storage: StorageBackend,
) -> None:
    name = definition_of(careful).name
    before = len(await storage.list_runs(workflow_name=name, limit=1000))
    with StorageFaults(storage, fail_creates={1}, landed=True):
        run_id = await start(careful, storage=storage)
        await _assert_sound(storage, run_id)
    after = await storage.list_runs(workflow_name=name, limit=1000)
    assert len(after) == before + 1


async def test_a_fault_never_reaches_workflow_code_as_a_step_error(
    storage: StorageBackend,
) -> None:
    ran.clear()
    with StorageFaults(storage, fail_appends={1, 2, 3}) as faults:
        run_id = await start(careful, storage=storage)
        await _assert_sound(storage, run_id)
        await asyncio.sleep(0)
    assert faults.injected == 3
