"""The ``allow_pickle`` setting at the run level: values JSON cannot hold are refused
before anything is stored, and a run stored with a pickle (by an earlier version, or with
the setting on) resumes only once the setting is on."""

from __future__ import annotations

import pytest

from pyworkflow import (
    SerializationError,
    configure,
    get_workflow_events,
    get_workflow_run,
    reset_config,
    resume,
    start,
    wait_for_run,
    workflow,
)
from pyworkflow.core.registry import require_workflow
from pyworkflow.engine.runs import RunRequest, build_run
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.schemas import RunStatus


class Parcel:
    """A plain class: JSON cannot hold it, only pickle can."""

    def __init__(self, weight: int) -> None:
        self.weight = weight


@workflow(name="ps_weigh")
async def weigh(parcel: Parcel) -> int:
    return parcel.weight


async def test_start_with_a_value_needing_pickle_is_refused_and_stores_nothing() -> None:
    storage = InMemoryStorageBackend()
    with pytest.raises(SerializationError) as info:
        await start(weigh, Parcel(3), storage=storage)
    message = str(info.value)
    assert "'Parcel'" in message
    assert "arguments of workflow 'ps_weigh'" in message
    assert "allow_pickle" in message
    assert await storage.list_runs() == []


async def test_start_with_the_setting_pickles_the_value() -> None:
    configure(allow_pickle=True)
    storage = InMemoryStorageBackend()
    run_id = await start(weigh, Parcel(3), storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == RunStatus.COMPLETED and run.result == 3


async def _stored_with_a_pickle(storage: InMemoryStorageBackend) -> str:
    """A pending run whose arguments hold a pickle, as an earlier version stored them."""
    configure(allow_pickle=True)
    request = RunRequest(definition=require_workflow("ps_weigh"), args=(Parcel(5),), kwargs={})
    run, started = build_run(request, owner=None, lease_ttl=0)
    reset_config()  # the upgrade: the new default is off
    assert '"__pw__": "pickle"' in (run.input_payload or "")
    await storage.create_run(run, [started])
    return run.run_id


async def test_run_stored_with_a_pickle_resumes_only_with_the_setting() -> None:
    storage = InMemoryStorageBackend()
    run_id = await _stored_with_a_pickle(storage)

    await resume(run_id, storage=storage)  # parked, not failed: it can wait
    run = await get_workflow_run(run_id, storage=storage)
    assert run is not None and run.status == RunStatus.SUSPENDED and run.wake_at is None
    assert "allow_pickle" in (run.error or "")
    assert "earlier PyWorkflow version" in (run.error or "")
    assert run.lease_owner is None  # nobody holds it while it waits for the setting
    assert len(await get_workflow_events(run_id, storage=storage)) == 1

    configure(allow_pickle=True)
    await resume(run_id, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == RunStatus.COMPLETED and run.result == 5
