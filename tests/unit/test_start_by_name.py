"""``start_by_name``: starting a run from a workflow's name, with the workflow's own
arguments only in ``args``/``kwargs`` (so none can clash with an option), locally with
the code, and on a runtime that executes elsewhere without it."""

from __future__ import annotations

import pytest

import pyworkflow
from pyworkflow import WorkflowNotFoundError, get_workflow_run, start_by_name, workflow
from pyworkflow.engine.runs import RunRequest, build_run
from pyworkflow.runtime import Runtime, register_runtime
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import RunStatus


@workflow(tags=["billing"], max_recovery_attempts=7)
async def invoice(customer: str, storage: str = "disk", runtime: str = "none") -> str:
    return f"{customer}:{storage}:{runtime}"


class StoreOnly(Runtime):
    """A runtime whose workers live elsewhere: it only stores the run (as Celery's does
    before it enqueues)."""

    name = "store-only"

    async def start(self, request: RunRequest, storage: StorageBackend) -> str:
        await storage.connect()
        run, started = build_run(request, owner=None, lease_ttl=0)
        await storage.create_run(run, [started])
        return run.run_id

    async def start_transient(self, request: RunRequest) -> str:
        raise NotImplementedError

    async def resume(self, run_id: str, storage: StorageBackend) -> None:
        raise NotImplementedError


@pytest.fixture
def storage() -> StorageBackend:
    pyworkflow.configure(storage="memory://")
    return pyworkflow.get_storage()


async def test_workflow_parameters_named_like_options_reach_the_workflow(storage) -> None:
    run_id = await start_by_name(
        "invoice", ["ada"], {"storage": "s3", "runtime": "py"}, idempotency_key="k1"
    )
    run = await get_workflow_run(run_id)
    assert run is not None and run.status == RunStatus.COMPLETED
    assert run.result == "ada:s3:py"
    assert run.tags == ["billing"]  # the workflow's own options apply
    assert await start_by_name("invoice", ["bob"], idempotency_key="k1") == run_id


def test_synchronous_call_returns_the_id(tmp_path) -> None:
    pyworkflow.configure(storage=f"sqlite:///{tmp_path}/s.db")
    run_id = start_by_name("invoice", kwargs={"customer": "eve"})
    assert isinstance(run_id, str) and run_id.startswith("run_")


async def test_local_runtime_needs_the_code(storage) -> None:
    with pytest.raises(WorkflowNotFoundError, match="not_imported_here"):
        await start_by_name("not_imported_here")


async def test_runtime_elsewhere_stores_an_unknown_name_with_defaults(storage) -> None:
    register_runtime("store-only", StoreOnly())
    pyworkflow.configure(default_max_recovery_attempts=4)
    run_id = await start_by_name(
        "only_on_workers", [1], {"x": [2]}, runtime="store-only", run_id="run_fixed"
    )
    assert run_id == "run_fixed"
    run = await storage.get_run(run_id)
    assert run is not None and run.workflow_name == "only_on_workers"
    assert (run.input_args, run.input_kwargs) == ((1,), {"x": [2]})
    assert run.max_recovery_attempts == 4 and run.tags == []  # configured defaults
    # A known name on the same runtime keeps the workflow's options.
    known = await storage.get_run(await start_by_name("invoice", ["a"], runtime="store-only"))
    assert known is not None and known.max_recovery_attempts == 7


async def test_name_must_be_a_string(storage) -> None:
    with pytest.raises(TypeError):
        await start_by_name(invoice)  # type: ignore[arg-type]
