"""Step retries: counts, delays (durable retry waits), ``FatalError``, ``retry_after``,
original exception types reaching the workflow, and step timeouts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pyworkflow import (
    FatalError,
    RetryableError,
    get_workflow_events,
    get_workflow_run,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.schemas import utcnow

calls: dict[str, int] = {}


def _count(name: str) -> int:
    calls[name] = calls.get(name, 0) + 1
    return calls[name]


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()


def _step_events(events: list[Any]) -> list[Any]:
    return [e for e in events if e.type.value.startswith("step.")]


# -- always failing, inline (no delay) and durable (small delay) ---------------------------


@step(name="rt_always_retryable_inline", max_retries=2, retry_delay=0)
async def always_retryable_inline() -> None:
    _count("inline")
    raise RetryableError("still broken")


@step(name="rt_always_retryable_delayed", max_retries=2, retry_delay=0.05)
async def always_retryable_delayed() -> None:
    _count("delayed")
    raise RetryableError("still broken")


@workflow(name="rt_exhaust_inline")
async def exhaust_inline() -> None:
    await always_retryable_inline()


@workflow(name="rt_exhaust_delayed")
async def exhaust_delayed() -> None:
    await always_retryable_delayed()


@pytest.mark.parametrize(
    ("wf", "key"),
    [(exhaust_inline, "inline"), (exhaust_delayed, "delayed")],
    ids=["inline", "durable"],
)
async def test_retryable_error_is_retried_max_retries_times_then_fails(wf: Any, key: str) -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(wf, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)

    assert run.status == "failed"
    assert run.error is not None
    assert "RetryableError" in run.error
    assert "still broken" in run.error
    assert calls[key] == 3  # first attempt + max_retries=2

    events = await get_workflow_events(run_id, storage=storage)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    steps = _step_events(events)
    assert [e.type.value for e in steps] == [
        "step.started",
        "step.failed",
        "step.retrying",
        "step.started",
        "step.failed",
        "step.retrying",
        "step.started",
        "step.failed",
    ]
    assert [e.data["attempt"] for e in steps if e.type == "step.started"] == [1, 2, 3]
    failed = [e for e in steps if e.type == "step.failed"]
    assert [e.data["attempt"] for e in failed] == [1, 2, 3]
    assert [e.data["will_retry"] for e in failed] == [True, True, False]
    assert all(e.data["fatal"] is False for e in failed)
    assert [e.data["attempt"] for e in steps if e.type == "step.retrying"] == [2, 3]
    assert len({e.data["step_id"] for e in steps}) == 1
    assert events[-1].type == "workflow.failed"


# -- FatalError ---------------------------------------------------------------------------


@step(name="rt_fatal", max_retries=5, retry_delay=0)
async def fatal_step() -> None:
    _count("fatal")
    raise FatalError("card declined", code="DECLINED")


@workflow(name="rt_fatal_wf")
async def fatal_wf() -> None:
    await fatal_step()


async def test_fatal_error_fails_at_once_without_retry() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(fatal_wf, storage=storage)
    run = await get_workflow_run(run_id, storage=storage)
    assert run is not None
    assert run.status == "failed"
    assert run.error is not None
    assert "FatalError" in run.error
    assert "card declined" in run.error
    assert calls["fatal"] == 1

    steps = _step_events(await get_workflow_events(run_id, storage=storage))
    assert [e.type.value for e in steps] == ["step.started", "step.failed"]
    assert steps[1].data["fatal"] is True
    assert steps[1].data["will_retry"] is False
    assert steps[1].data["attempt"] == 1


# -- retry_after overrides retry_delay -------------------------------------------------------


@step(name="rt_retry_after", max_retries=3, retry_delay="1h")
async def retry_after_step() -> str:
    if _count("retry_after") == 1:
        raise RetryableError("rate limited", retry_after=0.1)
    return "ok"


@workflow(name="rt_retry_after_wf")
async def retry_after_wf() -> str:
    return await retry_after_step()


async def test_retry_after_overrides_long_retry_delay() -> None:
    storage = InMemoryStorageBackend()
    loop = asyncio.get_running_loop()
    began = loop.time()
    run_id = await start(retry_after_wf, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == "completed"
    assert run.result == "ok"
    assert loop.time() - began < 5
    assert calls["retry_after"] == 2

    retrying = [
        e for e in await get_workflow_events(run_id, storage=storage) if e.type == "step.retrying"
    ]
    assert len(retrying) == 1
    assert retrying[0].data["delay_seconds"] == pytest.approx(0.1)


# -- the run is suspended while it waits for a retry -----------------------------------------


@step(name="rt_wait_then_succeed", max_retries=2, retry_delay="0.3s")
async def wait_then_succeed() -> str:
    if _count("wait") == 1:
        raise RetryableError("try again shortly")
    return "second time lucky"


@workflow(name="rt_durable_retry_wait")
async def durable_retry_wait_wf() -> str:
    return await wait_then_succeed()


async def test_run_is_suspended_with_wake_at_between_attempts() -> None:
    storage = InMemoryStorageBackend()
    before = utcnow()
    run_id = await start(durable_retry_wait_wf, storage=storage)
    run = await get_workflow_run(run_id, storage=storage)
    assert run is not None
    assert run.status == "suspended"
    assert run.wake_at is not None
    assert (run.wake_at - before).total_seconds() == pytest.approx(0.3, abs=0.25)
    assert calls["wait"] == 1

    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == "completed"
    assert run.result == "second time lucky"
    assert calls["wait"] == 2
    types = [e.type.value for e in await get_workflow_events(run_id, storage=storage)]
    assert "workflow.suspended" in types
    assert "workflow.resumed" in types


# -- list form of retry_delay ----------------------------------------------------------------


@step(name="rt_list_delay", max_retries=3, retry_delay=[0.05, 0.1])
async def list_delay_step() -> str:
    if _count("list") <= 3:
        raise RetryableError("not yet")
    return "finally"


@workflow(name="rt_list_delay_wf")
async def list_delay_wf() -> str:
    return await list_delay_step()


async def test_retry_delay_list_gives_one_delay_per_attempt_last_repeating() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(list_delay_wf, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == "completed"
    assert run.result == "finally"
    assert calls["list"] == 4
    retrying = [
        e for e in await get_workflow_events(run_id, storage=storage) if e.type == "step.retrying"
    ]
    assert [e.data["delay_seconds"] for e in retrying] == pytest.approx([0.05, 0.1, 0.1])


# -- the original exception reaches the workflow -------------------------------------------


class PaymentRejected(ValueError):
    """A user exception type with an extra attribute."""

    def __init__(self, message: str, amount: int) -> None:
        super().__init__(message)
        self.amount = amount


@step(name="rt_value_error", max_retries=1, retry_delay=0)
async def value_error_step() -> None:
    _count("value_error")
    raise ValueError("bad input 42")


@step(name="rt_custom_error", max_retries=0)
async def custom_error_step() -> None:
    raise PaymentRejected("over limit", amount=99)


@workflow(name="rt_catching_wf")
async def catching_wf() -> dict[str, Any]:
    try:
        await value_error_step()
    except ValueError as exc:
        first = {"type": type(exc).__name__, "message": str(exc)}
    try:
        await custom_error_step()
    except PaymentRejected as exc:
        second = {"type": type(exc).__name__, "amount": exc.amount}
    return {"first": first, "second": second, "fallback": True}


async def test_step_error_reaches_workflow_with_its_original_type() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(catching_wf, storage=storage)
    run = await get_workflow_run(run_id, storage=storage)
    assert run is not None
    assert run.status == "completed"
    assert run.result == {
        "first": {"type": "ValueError", "message": "bad input 42"},
        "second": {"type": "PaymentRejected", "amount": 99},
        "fallback": True,
    }
    assert calls["value_error"] == 2  # retried once (max_retries=1) before giving up


@step(name="rt_replayed_failure", max_retries=1, retry_delay=0)
async def replayed_failure_step() -> None:
    _count("replayed_failure")
    raise ValueError("recorded failure")


@workflow(name="rt_failure_then_sleep_wf")
async def failure_then_sleep_wf() -> str:
    try:
        await replayed_failure_step()
    except ValueError as exc:
        caught = f"{type(exc).__name__}: {exc}"
    await sleep(0.1)
    return caught


async def test_recorded_failure_is_reraised_with_same_type_on_replay() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(failure_then_sleep_wf, storage=storage)
    first = await get_workflow_run(run_id, storage=storage)
    assert first is not None
    assert first.status == "suspended"

    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == "completed", run.error
    assert run.result == "ValueError: recorded failure"
    assert calls["replayed_failure"] == 2  # not run again on replay

    events = await get_workflow_events(run_id, storage=storage)
    assert "workflow.resumed" in [e.type.value for e in events]
    assert len([e for e in events if e.type == "step.started"]) == 2


# -- step timeouts ------------------------------------------------------------------------


@step(name="rt_too_slow", timeout=0.1, max_retries=1, retry_delay=0.05)
async def too_slow_step() -> str:
    _count("too_slow")
    await asyncio.sleep(1)
    return "never"


@workflow(name="rt_too_slow_wf")
async def too_slow_wf() -> str:
    return await too_slow_step()


async def test_step_timeout_is_enforced_and_retried() -> None:
    storage = InMemoryStorageBackend()
    loop = asyncio.get_running_loop()
    began = loop.time()
    run_id = await start(too_slow_wf, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert loop.time() - began < 1.9  # neither 1 s attempt ran to its end
    assert run.status == "failed"
    assert run.error is not None
    assert "StepTimeoutError" in run.error
    assert calls["too_slow"] == 2

    events = await get_workflow_events(run_id, storage=storage)
    failed = [e for e in events if e.type == "step.failed"]
    assert len(failed) == 2
    for event in failed:
        assert event.data["error"]["type"].endswith("StepTimeoutError")
    assert [e.data["will_retry"] for e in failed] == [True, False]
    assert "step.completed" not in [e.type.value for e in events]
