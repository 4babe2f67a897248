"""Behaviour fixed after review: each test names what a user would have seen before."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from pyworkflow import (
    EventType,
    configure,
    get_workflow_events,
    get_workflow_run,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.core import registry
from pyworkflow.runtime import get_runtime
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.schemas import RunStatus, utcnow
from pyworkflow.testing.conformance import make_run


@step(name="rg_slow", max_retries=0)
async def slow() -> str:
    await asyncio.sleep(0.2)
    return "slow done"


@step(name="rg_boom", max_retries=0)
async def boom() -> str:
    raise ValueError("boom")


@workflow(name="rg_fail_beside_running_step")
async def fail_beside_running_step() -> None:
    await asyncio.gather(slow(), boom())


async def test_terminal_event_is_last_when_a_sibling_step_is_still_running() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(fail_beside_running_step, storage=storage)
    events = await get_workflow_events(run_id, storage=storage)
    assert events[-1].type == EventType.WORKFLOW_FAILED
    completed = [e.data["step_id"] for e in events if e.type == EventType.STEP_COMPLETED]
    assert completed == ["step:rg_slow#1"]  # recorded, and before the run's end


@workflow(name="rg_plain")
async def plain() -> int:
    return 7


async def test_same_storage_url_means_the_same_store() -> None:
    run_id = await start(plain, storage="memory://")
    run = await get_workflow_run(run_id, storage="memory://")
    assert run is not None and run.result == 7


def test_every_retry_delay_list_entry_is_checked_at_decoration() -> None:
    with pytest.raises(ValueError, match="abc"):

        @step(name="rg_bad_list", retry_delay=[0.05, "abc"])
        async def bad() -> None: ...


async def test_resume_imports_configured_workflow_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that never imported the workflow's module still resumes its runs when
    the module is configured (``configure(modules=[...])``)."""
    (tmp_path / "rg_late_module.py").write_text(
        textwrap.dedent(
            """
            from pyworkflow import sleep, workflow

            @workflow(name="rg_late")
            async def late() -> str:
                await sleep(0.05)
                return "resumed"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import rg_late_module  # type: ignore[import-not-found]

    storage = InMemoryStorageBackend()
    run_id = await start(rg_late_module.late, storage=storage)
    registry._workflows.pop("rg_late")  # as if this process had never imported it
    sys.modules.pop("rg_late_module")
    configure(modules=["rg_late_module"])

    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == "completed" and run.result == "resumed"


class SlowAppendStorage(InMemoryStorageBackend):
    """Memory storage whose appends of step completions take a while, either after the
    write landed (``land_first``) or before it (so a cancellation loses it)."""

    def __init__(self, land_first: bool) -> None:
        super().__init__()
        self.land_first = land_first

    async def append_events(self, run_id, events, *, expected_last_sequence, update=None):  # type: ignore[no-untyped-def]
        slow = any(e.type == EventType.STEP_COMPLETED for e in events)
        if slow and not self.land_first:
            await asyncio.sleep(0.2)
        await super().append_events(
            run_id, events, expected_last_sequence=expected_last_sequence, update=update
        )
        if slow and self.land_first:
            await asyncio.sleep(0.2)


@step(name="rg_quick")
async def quick(n: int) -> int:
    return n


@workflow(name="rg_user_timeout_around_step")
async def user_timeout_around_step() -> str:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(quick(1), timeout=0.05)  # cancelled while its result is stored
    return f"after {await quick(2)}"


@pytest.mark.parametrize("land_first", [True, False], ids=["write-landed", "write-lost"])
async def test_cancelled_step_write_does_not_break_the_run(land_first: bool) -> None:
    storage = SlowAppendStorage(land_first)
    run_id = await start(user_timeout_around_step, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == "completed", run.error
    assert run.result == "after 2"
    events = await get_workflow_events(run_id, storage=storage)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    completed = [e.data["step_id"] for e in events if e.type == EventType.STEP_COMPLETED]
    assert completed == ["step:rg_quick#1", "step:rg_quick#2"]


async def test_timer_loop_waits_only_until_a_run_due_soon() -> None:
    """Before: when the timer loop found nothing to claim and the next run was due in
    less than 50 ms, it still slept 50 ms (a floor meant for runs already due but held
    by their resumer), so a 20 ms durable sleep woke ~30 ms late."""
    storage = InMemoryStorageBackend()
    run = make_run("rg_due_soon", status=RunStatus.SUSPENDED)
    run.wake_at = utcnow() + timedelta(milliseconds=30)
    await storage.create_run(run)
    service = get_runtime("local").service(storage)  # type: ignore[attr-defined]
    delay = await service._fire_due()
    assert 0 < delay <= 0.03
