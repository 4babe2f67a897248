"""``current_context()`` and ``current_step_info()``: ``None`` outside a run (where
``get_context()`` raises), the run's context and the step attempt inside one."""

from __future__ import annotations

from typing import Any

import pytest

from pyworkflow import (
    StepInfo,
    current_context,
    current_step_info,
    get_context,
    has_context,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.context import current_context as context_module_accessor
from pyworkflow.context import current_step_info as context_module_step_accessor
from pyworkflow.storage.memory import InMemoryStorageBackend

seen: dict[str, Any] = {}


@step(name="acc_step")
async def acc_step() -> str:
    ctx = current_context()
    info = current_step_info()
    seen["step"] = (ctx.run_id if ctx else None, info)
    return "ok"


@workflow(name="acc_workflow")
async def acc_workflow() -> str:
    ctx = current_context()
    seen["workflow"] = (ctx, ctx is get_context(), current_step_info())
    return await acc_step()


@workflow(name="acc_transient", durable=False)
async def acc_transient() -> str:
    ctx = current_context()
    seen["transient"] = (ctx.durable if ctx else None, ctx.run_id if ctx else None)
    return await acc_step()


@pytest.fixture(autouse=True)
def _clear_seen() -> None:
    seen.clear()


def test_accessors_are_exported_from_the_context_package_too() -> None:
    assert context_module_accessor is current_context
    assert context_module_step_accessor is current_step_info


async def test_outside_a_run_the_accessors_return_none() -> None:
    assert current_context() is None
    assert current_step_info() is None
    assert has_context() is False
    with pytest.raises(RuntimeError, match="outside a workflow"):
        get_context()


async def test_inside_a_run_and_a_step() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(acc_workflow, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=10)
    assert run.status == "completed"

    ctx, same_as_get_context, step_in_workflow = seen["workflow"]
    assert ctx is not None
    assert same_as_get_context
    assert (ctx.run_id, ctx.workflow_name, ctx.durable) == (run_id, "acc_workflow", True)
    assert step_in_workflow is None  # workflow code is not a step

    step_run_id, info = seen["step"]
    assert step_run_id == run_id  # local runtime: steps run in the workflow's task
    assert isinstance(info, StepInfo)
    assert (info.step_name, info.attempt) == ("acc_step", 1)
    assert info.step_id.startswith("step:acc_step")

    # Both are reset once the run has returned.
    assert current_context() is None
    assert current_step_info() is None


async def test_inside_a_step_called_outside_any_run() -> None:
    assert await acc_step() == "ok"
    assert seen["step"] == (None, None)  # a plain coroutine call: no run, no attempt


async def test_inside_a_transient_run() -> None:
    run_id = await start(acc_transient)
    assert seen["transient"] == (False, run_id)
    step_run_id, info = seen["step"]
    assert step_run_id == run_id
    assert info is not None and info.step_name == "acc_step"
