"""Step context: set in the workflow, read (only) in steps, recorded for replay."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pyworkflow import (
    EventType,
    StepContext,
    get_step_context,
    get_workflow_events,
    has_step_context,
    set_step_context,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.storage.memory import InMemoryStorageBackend


class Tenant(StepContext):
    tenant_id: str
    region: str = "eu"


class Other(StepContext):
    x: int


seen: list[str] = []


@step(name="sc_read")
async def read_tenant() -> str:
    ctx = get_step_context()
    assert isinstance(ctx, Tenant)
    seen.append(ctx.tenant_id)
    return f"{ctx.tenant_id}@{ctx.region}"


@step(name="sc_write_inside", max_retries=0)
async def write_inside() -> None:
    await set_step_context(Tenant(tenant_id="hijack"))


@workflow(name="sc_flow", context_class=Tenant)
async def flow(tenant: str) -> list[str]:
    assert not has_step_context()
    await set_step_context(Tenant(tenant_id=tenant))
    first = await read_tenant()
    await sleep(0.05)  # forces a replay: the context must come back
    second = await read_tenant()
    await set_step_context(Tenant(tenant_id=tenant, region="us"))
    third = await read_tenant()
    return [first, second, third]


async def test_steps_read_the_context_across_a_replay() -> None:
    seen.clear()
    storage = InMemoryStorageBackend()
    run_id = await start(flow, "acme", storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == "completed", run.error
    assert run.result == ["acme@eu", "acme@eu", "acme@us"]
    assert run.context == {"tenant_id": "acme", "region": "us"}  # stored for remote workers
    events = await get_workflow_events(run_id, storage=storage)
    sets = [e for e in events if e.type == EventType.STEP_CONTEXT_SET]
    assert len(sets) == 2  # recorded once each, not again on replay
    assert seen == ["acme", "acme", "acme"]  # the replay re-ran no completed step


@workflow(name="sc_readonly")
async def readonly() -> None:
    await set_step_context(Tenant(tenant_id="t"))
    await write_inside()


async def test_context_is_read_only_inside_steps() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(readonly, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == "failed"
    assert "read-only" in (run.error or "")


@workflow(name="sc_wrong_class", context_class=Tenant)
async def wrong_class() -> None:
    await set_step_context(Other(x=1))


async def test_wrong_context_class_fails_clearly() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(wrong_class, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == "failed"
    assert "Tenant" in (run.error or "") and "Other" in (run.error or "")


def test_context_models_are_frozen() -> None:
    ctx = Tenant(tenant_id="a")
    with pytest.raises(ValidationError):
        ctx.tenant_id = "b"  # type: ignore[misc]


async def test_get_without_context_raises() -> None:
    with pytest.raises(RuntimeError, match="no step context"):
        get_step_context()


@step(name="sc_child_reads")
async def child_reads() -> bool:
    return has_step_context()


@workflow(name="sc_child")
async def child() -> bool:
    return await child_reads()


@workflow(name="sc_parent")
async def parent() -> bool:
    from pyworkflow import start_child_workflow

    await set_step_context(Tenant(tenant_id="parent-only"))
    return await start_child_workflow(child)


async def test_a_child_does_not_inherit_the_parents_context() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(parent, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == "completed" and run.result is False
