"""``check_crash_points``: a workflow crashed after each of its writes (in-process: the
engine's storage refuses every call from the crash on, as a dead process would, and a
new engine recovers the run once its lease runs out), on in-memory storage with time
skipping. Passes for workflows with steps, sleeps, retries, hooks and children; fails
for one whose result depends on how often a step body ran."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

import pytest

from pyworkflow import (
    RetryableError,
    hook,
    resume_run_hook,
    sleep,
    start_child_workflow,
    step,
    workflow,
)
from pyworkflow.testing import CrashPointError, WorkflowEnvironment, check_crash_points

ledger: Counter[str] = Counter()


@step(name="cp_reserve")
async def reserve(order: str) -> str:
    ledger["reserve"] += 1
    return f"reserved {order}"


@step(name="cp_charge", max_retries=2, retry_delay="1h")
async def charge(order: str) -> str:
    ledger["charge"] += 1
    if ledger["charge"] == 1:
        raise RetryableError("gateway timeout")
    return f"charged {order}"


@workflow(name="cp_ship")
async def ship(order: str) -> str:
    await sleep("1d")
    return f"shipped {order}"


@workflow(name="cp_order")
async def order(name: str) -> list[str]:
    done = [await reserve(name), await charge(name)]
    await sleep("2d")
    decision = await hook("cp_approval", timeout="7d")
    shipped = await start_child_workflow(ship, name)
    return [*done, str(decision["ok"]), shipped]


async def approve(env: WorkflowEnvironment, run_id: str) -> None:
    """The outside world: approves whenever asked (the hook may not exist yet, or have
    its payload already: both are refused, and ignored here)."""
    with contextlib.suppress(Exception):
        await resume_run_hook(run_id, "cp_approval", {"ok": True}, storage=env.storage)


async def test_a_workflow_with_steps_sleeps_retries_hooks_and_children_survives_every_crash() -> (
    None
):
    report = await check_crash_points(order, "A-1", drive=approve, reset=ledger.clear)
    assert report.result == ["reserved A-1", "charged A-1", "True", "shipped A-1"]
    assert len(report.writes) >= 8
    assert [p.after_write for p in report.points] == list(range(1, len(report.writes)))
    assert report.executions == Counter({"cp_reserve": 1, "cp_charge": 2})
    # A body whose completion the crash cut off ran again after the recovery.
    reran = report.reran()
    assert reran, "some crash point must have cut a step off before its completion"
    assert all(set(steps) <= {"cp_reserve", "cp_charge"} for steps in reran.values())


counter = {"n": 0}


@step(name="cp_increment")
async def increment() -> int:
    counter["n"] += 1  # a side effect the result depends on (not idempotent)
    return counter["n"]


@workflow(name="cp_counting")
async def counting() -> int:
    first = await increment()
    await sleep("1h")
    return first + await increment()


async def test_a_result_that_depends_on_how_often_a_body_ran_fails() -> None:
    def reset() -> None:
        counter["n"] = 0

    with pytest.raises(CrashPointError, match=r"crash after write 1 .*completes with 3"):
        await check_crash_points(counting, reset=reset)


async def test_check_sees_each_point_and_may_assert_on_side_effects() -> None:
    seen: list[Any] = []

    def check(point: Any) -> None:
        seen.append(None if point is None else point.after_write)
        assert ledger["reserve"] <= 2  # at-least-once, never more than once per crash

    report = await check_crash_points(
        order, "B-2", drive=approve, reset=ledger.clear, check=check, points=[1, 2, 3]
    )
    assert seen == [None, 1, 2, 3]
    assert [p.after_write for p in report.points] == [1, 2, 3]
    assert "create run" in report.writes[0]
