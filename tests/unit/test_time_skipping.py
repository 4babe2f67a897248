"""Time skipping in tests (``WorkflowEnvironment``): real runs on the local runtime with
in-memory storage, the timer clock moved instead of waiting. Wall time is measured to
show that a month of sleeps takes milliseconds; the runs' own records show what
happened (recorded wake-up times a month apart, no recovery)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest

from pyworkflow import (
    HookExpiredError,
    RetryableError,
    get_workflow_events,
    hook,
    resume_run_hook,
    sleep,
    step,
    workflow,
)
from pyworkflow.testing import WorkflowEnvironment
from pyworkflow.utils import clock

sent: list[tuple[str, str]] = []
calls: Counter[str] = Counter()


@step(name="ts_send")
async def send(email: str, template: str) -> str:
    sent.append((email, template))
    return template


@workflow(name="ts_drip")
async def drip(email: str) -> int:
    """Onboarding drip: welcome now, tips after 3 days, a check-in after 2 weeks, an
    offer at 30 days."""
    await send(email, "welcome")
    await sleep("3d")
    await send(email, "tips")
    await sleep("11d")
    await send(email, "check-in")
    await sleep("16d")
    await send(email, "offer")
    return len(sent)


@step(name="ts_flaky", max_retries=3, retry_delay="6h")
async def flaky() -> str:
    calls["flaky"] += 1
    if calls["flaky"] < 3:
        raise RetryableError("the partner API is down")
    return "ok"


@workflow(name="ts_retrying")
async def retrying() -> str:
    return await flaky()


@workflow(name="ts_approval")
async def approval() -> str:
    try:
        answer = await hook("ts_answer", timeout="2d")
    except HookExpiredError:
        return "expired"
    return str(answer["verdict"])


@pytest.fixture(autouse=True)
def _reset() -> None:
    sent.clear()
    calls.clear()


async def test_a_thirty_day_drip_completes_in_well_under_a_second() -> None:
    began = time.perf_counter()
    async with WorkflowEnvironment(time_skipping=True) as env:
        run_id = await env.start(drip, "ada@example.com")
        assert await env.result(run_id) == 4
        skipped = env.skipped
        events = await get_workflow_events(run_id, storage=env.storage)
    wall = time.perf_counter() - began
    assert wall < 1.0, f"took {wall:.2f}s of wall time"
    assert [t for _, t in sent] == ["welcome", "tips", "check-in", "offer"]
    # Each jump is to the next wake-up time: 30 days, less the real time the run took.
    assert timedelta(days=30, seconds=-5) <= skipped <= timedelta(days=30)
    fire_times = [e.data["fire_at"] for e in events if e.type.value == "sleep.started"]
    assert len(fire_times) == 3
    kinds = [e.type.value for e in events]
    assert "workflow.interrupted" not in kinds  # leases kept real time: no recovery
    assert clock.skew() == timedelta(0)  # the clock is the wall clock again after the test


async def test_retry_delays_are_skipped_too() -> None:
    async with WorkflowEnvironment(time_skipping=True) as env:
        run_id = await env.start(retrying)
        assert await env.result(run_id) == "ok"
        assert calls["flaky"] == 3
        assert timedelta(hours=12, seconds=-5) <= env.skipped <= timedelta(hours=12)


async def test_advance_by_hand_and_deliver_a_hook_in_between() -> None:
    async with WorkflowEnvironment() as env:
        run_id = await env.start(drip, "bob@example.com")
        await env.advance("1d")
        assert [t for _, t in sent] == ["welcome"]  # the 3-day sleep is not over
        await env.advance("2d")
        assert [t for _, t in sent] == ["welcome", "tips"]
        await env.advance("27d")
        assert await env.result(run_id) == 4

        waiting = await env.start(approval)
        await env.advance("1d")  # the hook's 2-day timeout has not passed
        await resume_run_hook(waiting, "ts_answer", {"verdict": "approved"}, storage=env.storage)
        assert await env.result(waiting) == "approved"

        expiring = await env.start(approval)
        await env.advance("2d")  # now the timeout passes
        assert await env.result(expiring) == "expired"


async def test_without_time_skipping_time_passes_only_when_advanced() -> None:
    async with WorkflowEnvironment() as env:
        run_id = await env.start(drip, "cy@example.com")
        with pytest.raises(TimeoutError):
            await env.wait(run_id, timeout=0.3)
        assert [t for _, t in sent] == ["welcome"]
        assert env.skipped == timedelta(0)


async def test_one_environment_at_a_time() -> None:
    async with WorkflowEnvironment():
        with pytest.raises(RuntimeError, match="another WorkflowEnvironment"):
            async with WorkflowEnvironment():
                pass
    with pytest.raises(ValueError, match="only moves forward"):
        clock.skip_ahead(timedelta(seconds=-1))
