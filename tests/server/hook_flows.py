"""Helpers of the hook and webhook tests: a workflow with a short hook timeout, waiting
for a run to reach a state, and a hook's token (derived as the run derived it)."""

from __future__ import annotations

import asyncio

from pyworkflow import HookExpiredError, get_workflow_run, hook, workflow
from pyworkflow.primitives.hook_tokens import derive_token
from pyworkflow.storage.schemas import WorkflowRun


@workflow()
async def srv_short_hook() -> str:
    """A hook that expires at once: deliveries after that are refused."""
    try:
        await hook("srv_short", timeout=0.2)
    except HookExpiredError:
        return "expired"
    return "received"


async def wait_status(run_id: str, *wanted: str, within: float = 15.0) -> WorkflowRun:
    """The run once its status is one of ``wanted`` (fails after ``within`` seconds)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        run = await get_workflow_run(run_id)
        if run is not None and run.status in wanted:
            return run
        if asyncio.get_running_loop().time() > deadline:
            shown = run.status if run else "missing"
            raise AssertionError(f"run {run_id} is {shown}, never one of {wanted}")
        await asyncio.sleep(0.05)


def token_of(run_id: str, name: str, n: int = 1) -> str:
    """The token of the run's ``n``-th hook named ``name`` (this process's secret key,
    the one the run used: both run in the test's project directory)."""
    return derive_token(run_id, f"hook:{name}#{n}")
