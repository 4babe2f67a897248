"""Waiting for runs the server tests started to reach a state."""

from __future__ import annotations

import asyncio

from pyworkflow import get_workflow_run


async def wait_status(run_id: str, *wanted: str, within: float = 15.0) -> str:
    """Wait until the run's status is one of ``wanted``; return it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    status = None
    while loop.time() < deadline:
        run = await get_workflow_run(run_id)
        status = None if run is None else str(run.status)
        if status in wanted:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} is {status}, never {' or '.join(wanted)}")
