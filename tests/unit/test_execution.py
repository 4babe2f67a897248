"""Starting runs and what a user sees afterwards: status, result, event log, ids, tags,
idempotency, sync ``start()``, transient mode, ``resume()`` and ``max_duration``."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from pyworkflow import (
    RetryableError,
    RunAlreadyExistsError,
    SerializationError,
    WorkflowNotFoundError,
    get_workflow_events,
    get_workflow_run,
    get_workflow_run_by_idempotency_key,
    resume,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.storage.memory import InMemoryStorageBackend

calls: dict[str, int] = {}


def _count(name: str) -> int:
    calls[name] = calls.get(name, 0) + 1
    return calls[name]


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()


async def _run(run_id: str, storage: InMemoryStorageBackend) -> Any:
    run = await get_workflow_run(run_id, storage=storage)
    assert run is not None
    return run


async def _types(run_id: str, storage: InMemoryStorageBackend) -> list[str]:
    return [e.type.value for e in await get_workflow_events(run_id, storage=storage)]


# -- steps and workflows used below -------------------------------------------------------


@step(name="ex_add")
async def add(a: int, b: int) -> int:
    _count("ex_add")
    return a + b


@step(name="ex_describe")
async def describe(total: int) -> dict[str, Any]:
    return {
        "total": total,
        "pair": (total, "x"),
        "when": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "nested": {"ids": [1, 2, 3]},
    }


@workflow(name="ex_two_steps")
async def two_steps(a: int, b: int) -> dict[str, Any]:
    total = await add(a, b)
    return await describe(total)


@step(name="ex_square")
async def square(x: int) -> int:
    await asyncio.sleep(0.01 * (3 - x))  # finish in reverse order
    return x * x


@workflow(name="ex_gather")
async def gather_wf() -> list[int]:
    return list(await asyncio.gather(square(1), square(2), square(3)))


@step(name="ex_side_effect")
async def side_effect(value: str) -> str:
    _count("ex_side_effect")
    return value


@workflow(name="ex_identical_calls")
async def identical_calls() -> list[str]:
    return [await side_effect("same"), await side_effect("same")]


@step(name="ex_bad_result_step")
async def bad_result_step() -> Any:
    return threading.Lock()


@workflow(name="ex_bad_result")
async def bad_result_wf() -> Any:
    await bad_result_step()
    return "unreachable"


@workflow(name="ex_tagged", tags=["orders", "eu"])
async def tagged_wf() -> str:
    return "ok"


@step(name="ex_slow_counted")
async def slow_counted() -> str:
    _count("ex_slow_counted")
    await asyncio.sleep(0.02)
    return "done"


@workflow(name="ex_idempotent")
async def idempotent_wf(order: str) -> str:
    await slow_counted()
    return f"processed {order}"


swallowed: list[BaseException] = []


@workflow(name="ex_swallowing_sleep")
async def swallowing_sleep_wf() -> str:
    try:
        await sleep(0.1)
    except Exception as exc:  # a user's broad except must not eat the suspension
        swallowed.append(exc)
    return "woke"


@workflow(name="ex_no_sleep")
async def no_sleep_wf(x: int) -> int:
    return await add(x, 1)


@workflow(name="ex_long_sleep")
async def long_sleep_wf() -> str:
    await add(1, 1)
    await sleep("1h")
    await add(2, 2)
    return "late"


@step(name="ex_flaky", max_retries=2, retry_delay=0.05)
async def flaky() -> str:
    if _count("ex_flaky") == 1:
        raise RetryableError("first attempt fails")
    return "recovered"


@workflow(name="ex_transient_by_decorator", durable=False)
async def transient_by_decorator() -> dict[str, Any]:
    value = await flaky()
    await sleep(0.05)
    return {"value": value, "at": (1, 2)}


@workflow(name="ex_transient_candidate")
async def transient_candidate(x: int) -> int:
    value = await flaky()
    await sleep(0.05)
    return x if value == "recovered" else -1


@step(name="ex_slow_step")
async def slow_step() -> str:
    await asyncio.sleep(2)
    return "too late"


@workflow(name="ex_max_duration_step", max_duration="0.3s")
async def max_duration_step_wf() -> str:
    return await slow_step()


@workflow(name="ex_max_duration_sleep", max_duration="0.3s")
async def max_duration_sleep_wf() -> str:
    await sleep("10s")
    return "slept past the deadline"


# -- results, statuses, events ------------------------------------------------------------


async def test_workflow_with_steps_completes_with_decoded_result() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(two_steps, 2, 3, storage=storage)
    assert isinstance(run_id, str)
    run = await _run(run_id, storage)

    assert run.status == "completed"
    assert run.status.value == "completed"
    assert run.result == {
        "total": 5,
        "pair": (5, "x"),
        "when": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "nested": {"ids": [1, 2, 3]},
    }
    assert isinstance(run.result["pair"], tuple)
    assert isinstance(run.result["when"], datetime)
    assert run.workflow_name == "ex_two_steps"
    assert run.input_args == (2, 3)
    assert run.error is None
    assert run.completed_at is not None


async def test_event_log_is_gap_free_and_in_order() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(two_steps, 1, 1, storage=storage)
    events = await get_workflow_events(run_id, storage=storage)

    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert [e.type.value for e in events] == [
        "workflow.started",
        "step.started",
        "step.completed",
        "step.started",
        "step.completed",
        "workflow.completed",
    ]
    assert all(e.run_id == run_id for e in events)
    assert [e.data["step_name"] for e in events if e.type == "step.started"] == [
        "ex_add",
        "ex_describe",
    ]
    assert events[1].data["attempt"] == 1


async def test_gather_of_steps_gets_stable_operation_ids() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(gather_wf, storage=storage)
    run = await _run(run_id, storage)
    assert run.status == "completed"
    assert run.result == [1, 4, 9]

    events = await get_workflow_events(run_id, storage=storage)
    started = [e.data["step_id"] for e in events if e.type == "step.started"]
    assert started == ["step:ex_square#1", "step:ex_square#2", "step:ex_square#3"]
    completed = {e.data["step_id"]: e.data["result"] for e in events if e.type == "step.completed"}
    assert completed == {"step:ex_square#1": 1, "step:ex_square#2": 4, "step:ex_square#3": 9}
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))


async def test_two_identical_step_calls_both_run() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(identical_calls, storage=storage)
    run = await _run(run_id, storage)
    assert run.result == ["same", "same"]
    assert calls["ex_side_effect"] == 2
    events = await get_workflow_events(run_id, storage=storage)
    ids = [e.data["step_id"] for e in events if e.type == "step.completed"]
    assert ids == ["step:ex_side_effect#1", "step:ex_side_effect#2"]


async def test_unknown_run_id_returns_none_and_no_events() -> None:
    storage = InMemoryStorageBackend()
    assert await get_workflow_run("run_does_not_exist", storage=storage) is None
    assert await get_workflow_events("run_does_not_exist", storage=storage) == []


# -- start(): names, bad input, ids, tags ---------------------------------------------------


async def test_start_by_registered_name() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start("ex_no_sleep", 41, storage=storage)
    run = await _run(run_id, storage)
    assert run.status == "completed"
    assert run.result == 42
    assert run.workflow_name == "ex_no_sleep"


async def test_start_unknown_name_raises_workflow_not_found() -> None:
    storage = InMemoryStorageBackend()
    with pytest.raises(WorkflowNotFoundError, match="ex_nobody_registered_this"):
        await start("ex_nobody_registered_this", storage=storage)
    assert await storage.list_runs() == []


async def test_non_serializable_argument_raises_and_stores_nothing() -> None:
    storage = InMemoryStorageBackend()
    with pytest.raises(SerializationError) as info:
        await start(no_sleep_wf, threading.Lock(), storage=storage)
    assert "ex_no_sleep" in str(info.value)
    assert await storage.list_runs() == []
    assert "ex_add" not in calls


async def test_non_serializable_keyword_argument_raises_and_stores_nothing() -> None:
    storage = InMemoryStorageBackend()
    with pytest.raises(SerializationError):
        await start(no_sleep_wf, x=threading.Lock(), storage=storage)
    assert await storage.list_runs() == []


async def test_non_serializable_step_result_fails_run_naming_the_step() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(bad_result_wf, storage=storage)
    run = await _run(run_id, storage)
    assert run.status == "failed"
    assert run.error is not None
    assert "SerializationError" in run.error
    assert "ex_bad_result_step" in run.error

    events = await get_workflow_events(run_id, storage=storage)
    failed = [e for e in events if e.type == "step.failed"]
    assert len(failed) == 1  # not retried: it would fail the same way
    assert failed[0].data["step_name"] == "ex_bad_result_step"
    assert events[-1].type == "workflow.failed"


async def test_explicit_run_id_is_used() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(no_sleep_wf, 1, storage=storage, run_id="my-explicit-run-1")
    assert run_id == "my-explicit-run-1"
    run = await _run("my-explicit-run-1", storage)
    assert run.run_id == "my-explicit-run-1"
    assert run.result == 2


async def test_duplicate_run_id_raises_run_already_exists() -> None:
    storage = InMemoryStorageBackend()
    await start(no_sleep_wf, 1, storage=storage, run_id="dup-run")
    with pytest.raises(RunAlreadyExistsError):
        await start(no_sleep_wf, 2, storage=storage, run_id="dup-run")
    run = await _run("dup-run", storage)
    assert run.result == 2  # the first run is untouched
    assert calls["ex_add"] == 1
    assert len(await storage.list_runs()) == 1


async def test_tags_default_from_decorator_and_override_from_start() -> None:
    storage = InMemoryStorageBackend()
    default_id = await start(tagged_wf, storage=storage)
    override_id = await start(tagged_wf, storage=storage, tags=["manual"])
    assert (await _run(default_id, storage)).tags == ["orders", "eu"]
    assert (await _run(override_id, storage)).tags == ["manual"]
    assert {r.run_id for r in await storage.list_runs(tag="orders")} == {default_id}
    assert {r.run_id for r in await storage.list_runs(tag="manual")} == {override_id}


# -- idempotency --------------------------------------------------------------------------


async def test_idempotency_key_returns_same_run_and_executes_once() -> None:
    storage = InMemoryStorageBackend()
    first = await start(idempotent_wf, "A-1", storage=storage, idempotency_key="order-A-1")
    second = await start(idempotent_wf, "A-1", storage=storage, idempotency_key="order-A-1")
    assert first == second
    assert calls["ex_slow_counted"] == 1
    assert len(await storage.list_runs()) == 1
    by_key = await get_workflow_run_by_idempotency_key("order-A-1", storage=storage)
    assert by_key is not None
    assert by_key.run_id == first
    assert by_key.idempotency_key == "order-A-1"

    other = await start(idempotent_wf, "A-2", storage=storage, idempotency_key="order-A-2")
    assert other != first
    assert calls["ex_slow_counted"] == 2


async def test_concurrent_starts_with_same_idempotency_key_give_one_run() -> None:
    storage = InMemoryStorageBackend()
    ids = await asyncio.gather(
        *(
            start(idempotent_wf, "B-1", storage=storage, idempotency_key="order-B-1")
            for _ in range(10)
        )
    )
    assert len(set(ids)) == 1
    assert len(await storage.list_runs()) == 1
    run = await wait_for_run(ids[0], storage=storage, timeout=5)
    assert run.status == "completed"
    assert calls["ex_slow_counted"] == 1


# -- suspension cannot be swallowed --------------------------------------------------------


async def test_broad_except_around_sleep_does_not_swallow_suspension() -> None:
    swallowed.clear()
    storage = InMemoryStorageBackend()
    run_id = await start(swallowing_sleep_wf, storage=storage)
    run = await _run(run_id, storage)
    assert run.status == "suspended"
    assert swallowed == []

    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == "completed"
    assert run.result == "woke"
    assert swallowed == []
    types = await _types(run_id, storage)
    assert "workflow.suspended" in types
    assert "sleep.completed" in types


# -- synchronous start() ------------------------------------------------------------------


def test_sync_start_from_plain_function_returns_after_completion() -> None:
    storage = InMemoryStorageBackend()
    run_id = start(no_sleep_wf, 9, storage=storage)
    assert isinstance(run_id, str)
    run = asyncio.run(get_workflow_run(run_id, storage=storage))
    assert run is not None
    assert run.status == "completed"
    assert run.result == 10


async def test_sync_start_in_a_thread_returns_once_suspended() -> None:
    storage = InMemoryStorageBackend()

    def plain_code() -> str:
        return start(long_sleep_wf, storage=storage)  # type: ignore[no-any-return]

    run_id = await asyncio.to_thread(plain_code)
    assert isinstance(run_id, str)
    run = await _run(run_id, storage)
    assert run.status == "suspended"
    assert run.wake_at is not None
    assert calls["ex_add"] == 1  # ran up to the sleep, not past it


# -- transient mode -----------------------------------------------------------------------


async def test_transient_by_decorator_stores_no_events_but_retries_and_sleeps() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(transient_by_decorator, storage=storage)
    assert await get_workflow_events(run_id, storage=storage) == []
    assert await storage.list_runs() == []

    run = await get_workflow_run(run_id, storage=storage)
    assert run is not None
    assert run.status == "completed"
    assert run.result == {"value": "recovered", "at": (1, 2)}
    assert calls["ex_flaky"] == 2  # the retry happened, in memory


async def test_transient_by_start_argument() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(transient_candidate, 5, storage=storage, durable=False)
    assert await get_workflow_events(run_id, storage=storage) == []
    run = await get_workflow_run(run_id, storage=storage)
    assert run is not None
    assert run.status == "completed"
    assert run.result == 5
    assert calls["ex_flaky"] == 2


async def test_durable_true_at_start_runs_durably() -> None:
    # The same workflow started with durable=True keeps its event log.
    storage = InMemoryStorageBackend()
    run_id = await start(transient_candidate, 5, storage=storage, durable=True)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == "completed"
    assert run.result == 5
    assert "step.retrying" in await _types(run_id, storage)


# -- resume() -----------------------------------------------------------------------------


async def test_resume_before_due_time_keeps_the_run_asleep() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(long_sleep_wf, storage=storage)
    before = await _run(run_id, storage)
    assert before.status == "suspended"
    step_events_before = [t for t in await _types(run_id, storage) if t.startswith("step.")]

    await resume(run_id, storage=storage)

    after = await _run(run_id, storage)
    assert after.status == "suspended"
    assert after.wake_at == before.wake_at
    step_events_after = [t for t in await _types(run_id, storage) if t.startswith("step.")]
    assert step_events_after == step_events_before
    assert "sleep.completed" not in await _types(run_id, storage)
    assert calls["ex_add"] == 1


async def test_resume_unknown_run_raises_workflow_not_found() -> None:
    storage = InMemoryStorageBackend()
    with pytest.raises(WorkflowNotFoundError):
        await resume("run_that_never_existed", storage=storage)


# -- max_duration -------------------------------------------------------------------------


async def test_max_duration_fails_run_whose_step_runs_too_long() -> None:
    storage = InMemoryStorageBackend()
    loop = asyncio.get_running_loop()
    began = loop.time()
    run_id = await start(max_duration_step_wf, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert loop.time() - began < 1.9  # the 2 s step did not run to its end
    assert run.status == "failed"
    assert run.error is not None
    assert "WorkflowTimeoutError" in run.error
    types = await _types(run_id, storage)
    assert types[-1] == "workflow.failed"
    assert "step.completed" not in types


async def test_max_duration_fails_run_sleeping_past_its_deadline() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(max_duration_sleep_wf, storage=storage)
    # The sleep (10 s) outlasts max_duration (0.3 s): the run must fail once the deadline
    # passes, not sleep on until the timer fires.
    run = await wait_for_run(run_id, storage=storage, timeout=3)
    assert run.status == "failed"
    assert run.error is not None
    assert "WorkflowTimeoutError" in run.error
