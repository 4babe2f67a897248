"""NaN/Infinity and oversize values are refused with a typed error naming what was being
stored, before anything is written, and runs that produce them fail cleanly (a
consecutive history, no stuck lease). Inside a run, the operation that produced the value
fails (a step result: that step, also under ``asyncio.gather``), and huge errors are
stored shortened, as normal failures."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import pyworkflow as pw
from pyworkflow.engine.runs import RunRequest, build_run
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.payloads import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    PayloadLimit,
    check_size,
    strict_json,
)
from pyworkflow.storage.sqlite import SQLiteStorageBackend
from tests.replay.drivers import drive_dispatched

tokens: list[str] = []


async def remember(token: str) -> None:
    tokens.append(token)


@pw.workflow(name="pl_echo")
async def echo(value: object) -> object:
    return value


@pw.workflow(name="pl_make")
async def make(size: int, fill: str) -> object:
    return [float(fill) if fill.endswith("inf") else fill] * size


@pw.workflow(name="pl_waiter")
async def waiter() -> object:
    return await pw.hook("pl_any", on_created=remember)


@pw.step(name="pl_nan_step")
async def nan_step() -> dict[str, object]:
    return {"x": [1, float("nan")]}


@pw.workflow(name="pl_step_nan")
async def step_nan() -> object:
    return await nan_step()


@pw.workflow(name="pl_huge_error")
async def huge_error() -> None:
    raise ValueError("e" * 5000)


async def _only_run(storage: InMemoryStorageBackend) -> tuple[str, list[int]]:
    runs = await storage.list_runs()
    assert len(runs) == 1
    events = await pw.get_workflow_events(runs[0].run_id, storage=storage)
    return runs[0].status.value, [e.sequence for e in events]


# -- NaN and Infinity ----------------------------------------------------------------------


def test_strict_json_names_where_a_nan_is() -> None:
    with pytest.raises(pw.SerializationError, match=r"the thing holds nan at \['a'\]\[1\]"):
        strict_json({"a": [1, float("nan")]}, "the thing")
    assert strict_json({"text": "NaN and Infinity"}, "ok") == '{"text":"NaN and Infinity"}'


async def test_start_with_a_nan_argument_stores_nothing() -> None:
    storage = InMemoryStorageBackend()
    with pytest.raises(pw.SerializationError, match=r"holds nan at \['args'\]\[0\]"):
        await pw.start(echo, float("nan"), storage=storage)
    assert await storage.list_runs() == []


async def test_a_nan_step_result_fails_the_run_with_a_consecutive_history() -> None:
    storage = InMemoryStorageBackend()
    run_id = await pw.start(step_nan, storage=storage)
    run = await pw.get_workflow_run(run_id, storage=storage)
    assert run is not None and run.status.value == "failed" and run.lease_owner is None
    assert run.error is not None and "holds nan at ['result']['x'][1]" in run.error
    assert await _only_run(storage) == ("failed", [1, 2, 3, 4])
    events = await pw.get_workflow_events(run.run_id, storage=storage)
    # The step's own failure, for good: a NaN is never storable, a retry changes nothing.
    failed = events[2]
    assert failed.type.value == "step.failed" and failed.data["fatal"] is True
    assert failed.data["will_retry"] is False


async def test_an_infinite_workflow_result_fails_the_run() -> None:
    storage = InMemoryStorageBackend()
    run_id = await pw.start(make, 1, "-inf", storage=storage)  # too late for pw.start() to see
    run = await pw.get_workflow_run(run_id, storage=storage)
    assert run is not None and run.status.value == "failed" and run.lease_owner is None
    assert run.error is not None and "holds -inf at ['result'][0]" in run.error


async def test_a_nan_hook_payload_is_refused_and_the_hook_stays_open() -> None:
    tokens.clear()
    storage = InMemoryStorageBackend()
    await pw.start(waiter, storage=storage)
    with pytest.raises(pw.SerializationError, match=r"payload for hook 'pl_any' holds inf"):
        await pw.resume_hook(tokens[0], {"amount": float("inf")}, storage=storage)
    (pending,) = await pw.list_hooks(storage=storage)
    assert pending.status == pw.HookStatus.PENDING and pending.payload is None


async def test_a_schedule_with_a_nan_argument_is_refused() -> None:
    with pytest.raises(pw.SerializationError, match="data of schedule 'nan-sched' holds nan"):
        await pw.create_schedule(
            echo, "1h", float("nan"), schedule_id="nan-sched", storage=InMemoryStorageBackend()
        )


# -- sizes -------------------------------------------------------------------------------


def test_check_size_counts_utf8_bytes() -> None:
    limit = PayloadLimit(10, "test")
    check_size("é" * 5, "five e-acutes", limit)  # 10 bytes: at the limit
    with pytest.raises(pw.PayloadTooLargeError) as info:
        check_size("é" * 6, "six e-acutes", limit)
    err = info.value
    assert (err.field, err.size, err.limit) == ("six e-acutes", 12, 10)
    assert "six e-acutes is 12 bytes, over the payload limit of 10 bytes (test)" in str(err)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.field, copy.size, copy.limit, str(copy)) == (err.field, 12, 10, str(err))


async def test_an_oversize_start_raises_and_stores_nothing() -> None:
    pw.configure(max_payload_bytes=1000)
    storage = InMemoryStorageBackend()
    with pytest.raises(pw.PayloadTooLargeError, match="input_payload of run 'run_") as info:
        await pw.start(echo, "x" * 2000, storage=storage)
    assert info.value.limit == 1000 and info.value.size is not None and info.value.size > 2000
    assert "(max_payload_bytes)" in str(info.value)
    assert await storage.list_runs() == []


async def test_an_oversize_hook_payload_is_refused_and_the_hook_stays_open() -> None:
    tokens.clear()
    pw.configure(max_payload_bytes=1000)
    storage = InMemoryStorageBackend()
    await pw.start(waiter, storage=storage)
    with pytest.raises(pw.PayloadTooLargeError, match="payload for hook 'pl_any'"):
        await pw.resume_hook(tokens[0], "y" * 2000, storage=storage)
    (pending,) = await pw.list_hooks(storage=storage)
    assert pending.status == pw.HookStatus.PENDING
    await pw.resume_hook(tokens[0], "small", storage=storage)  # a valid payload still works


async def test_an_oversize_result_fails_the_run() -> None:
    pw.configure(max_payload_bytes=4000)
    storage = InMemoryStorageBackend()
    run_id = await pw.start(make, 1000, "z", storage=storage)
    run = await pw.get_workflow_run(run_id, storage=storage)
    assert run is not None and run.status.value == "failed" and run.lease_owner is None
    assert run.error is not None and run.error.startswith("PayloadTooLargeError: result_payload")
    assert await _only_run(storage) == ("failed", [1, 2])


async def test_an_error_too_large_to_store_still_fails_the_run() -> None:
    pw.configure(max_payload_bytes=2000)
    storage = InMemoryStorageBackend()
    run = await pw.get_workflow_run(await pw.start(huge_error, storage=storage), storage=storage)
    assert run is not None and run.status.value == "failed"
    assert run.error is not None and "an error too large to store" in run.error
    assert await _only_run(storage) == ("failed", [1, 2])


@pytest.mark.parametrize("bad", [0, -1, "big"])
def test_max_payload_bytes_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(pw.ConfigurationError, match="max_payload_bytes"):
        pw.configure(max_payload_bytes=bad)


def test_max_payload_bytes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYWORKFLOW_MAX_PAYLOAD_BYTES", "4096")
    pw.reset_config()
    assert pw.get_config().max_payload_bytes == 4096
    assert InMemoryStorageBackend().payload_limit == PayloadLimit(4096, "max_payload_bytes")


# -- oversize step results ----------------------------------------------------------------
# A step whose result is over the limit fails, as if it had raised PayloadTooLargeError:
# the failure is that step's (recorded, retried per its policy), never its siblings'.

LIMIT = 20_000
calls: dict[str, int] = {}


def _ran(key: str) -> int:
    calls[key] = calls.get(key, 0) + 1
    return calls[key]


@pw.step(name="pl_small", max_retries=0)
async def small(i: int) -> str:
    _ran(f"small{i}")
    await asyncio.sleep(0.01 * i)  # still running when the big sibling ends
    return f"ok{i}"


@pw.step(name="pl_big", max_retries=0)
async def big() -> str:
    _ran("big")
    return "x" * (2 * LIMIT)


@pw.step(name="pl_big_once", max_retries=1, retry_delay=0)
async def big_once() -> str:
    return "x" * (2 * LIMIT) if _ran("big_once") == 1 else "fits"


@pw.workflow(name="pl_gather")
async def gather_three() -> object:
    return await asyncio.gather(small(1), big(), small(2))


@pw.workflow(name="pl_gather_caught")
async def gather_caught() -> object:
    results = await asyncio.gather(small(1), big(), small(2), return_exceptions=True)
    await pw.hook("pl_after_gather", on_created=remember)  # suspend: the resume replays
    return [type(r).__name__ if isinstance(r, BaseException) else r for r in results]


@pw.workflow(name="pl_single")
async def single() -> object:
    first = await small(1)
    try:
        await big()
    except pw.PayloadTooLargeError as err:
        return [first, err.field, err.limit]
    return "unreachable"


@pw.workflow(name="pl_single_uncaught")
async def single_uncaught() -> object:
    return await big()


@pw.workflow(name="pl_retried")
async def retried() -> object:
    return await big_once()


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageBackend]:
    pw.configure(max_payload_bytes=LIMIT)
    calls.clear()
    tokens.clear()
    backend: StorageBackend
    if request.param == "memory":
        backend = InMemoryStorageBackend()
    else:
        backend = SQLiteStorageBackend(tmp_path / "wf.db")
    yield backend
    await backend.close()


async def _history(run_id: str, storage: StorageBackend) -> list[tuple[str, str | None]]:
    """``(event type, step id)`` of the run's events; their sequences must be 1..n."""
    events = await pw.get_workflow_events(run_id, storage=storage)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    return [(e.type.value, e.data.get("step_id")) for e in events]


def _step_events(history: list[tuple[str, str | None]], step_id: str) -> list[str]:
    return [type_ for type_, sid in history if sid == step_id]


async def _step_error(run_id: str, storage: StorageBackend, step_id: str) -> dict[str, object]:
    events = await pw.get_workflow_events(run_id, storage=storage)
    (failed,) = [e for e in events if e.type.value == "step.failed"]
    assert failed.data["step_id"] == step_id
    return dict(failed.data)


async def _only_the_big_step_failed(run_id: str, storage: StorageBackend) -> None:
    """The run of ``gather_three`` failed with the big step's error; the siblings'
    completions are stored once each (and their bodies ran once)."""
    run = await pw.get_workflow_run(run_id, storage=storage)
    assert run is not None and run.status.value == "failed" and run.lease_owner is None
    assert run.error is not None
    assert run.error.startswith("PayloadTooLargeError: result of step 'pl_big'")
    history = await _history(run_id, storage)
    assert _step_events(history, "step:pl_small#1") == ["step.started", "step.completed"]
    assert _step_events(history, "step:pl_small#2") == ["step.started", "step.completed"]
    assert _step_events(history, "step:pl_big#1") == ["step.started", "step.failed"]
    assert history[0][0] == "workflow.started" and history[-1][0] == "workflow.failed"
    assert calls == {"small1": 1, "small2": 1, "big": 1}


async def test_an_oversize_result_in_gather_fails_only_that_step(storage: StorageBackend) -> None:
    run_id = await pw.start(gather_three, storage=storage)
    await _only_the_big_step_failed(run_id, storage)
    failed = await _step_error(run_id, storage, "step:pl_big#1")
    assert failed["will_retry"] is False
    error = failed["error"]
    assert isinstance(error, dict) and error["type"].endswith("PayloadTooLargeError")


async def test_a_caught_oversize_result_in_gather_replays(storage: StorageBackend) -> None:
    run_id = await pw.start(gather_caught, storage=storage)
    run = await pw.get_workflow_run(run_id, storage=storage)
    assert run is not None and run.status.value == "suspended", run.error
    await pw.resume_hook(tokens[0], "go", storage=storage)  # the resume replays the gather
    run = await pw.wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status.value == "completed", run.error
    assert run.result == ["ok1", "PayloadTooLargeError", "ok2"]
    assert calls == {"small1": 1, "small2": 1, "big": 1}  # nothing ran twice
    history = await _history(run_id, storage)
    assert _step_events(history, "step:pl_big#1") == ["step.started", "step.failed"]
    assert _step_events(history, "step:pl_small#1") == ["step.started", "step.completed"]


async def test_an_oversize_step_result_is_a_step_failure(storage: StorageBackend) -> None:
    run_id = await pw.start(single, storage=storage)
    run = await pw.get_workflow_run(run_id, storage=storage)
    assert run is not None and run.status.value == "completed", run.error
    assert run.result == ["ok1", "result of step 'pl_big' (step:pl_big#1)", LIMIT]
    history = await _history(run_id, storage)
    assert _step_events(history, "step:pl_big#1") == ["step.started", "step.failed"]

    run_id = await pw.start(single_uncaught, storage=storage)
    run = await pw.get_workflow_run(run_id, storage=storage)
    assert run is not None and run.status.value == "failed"
    assert run.error is not None and "over the payload limit of 20,000 bytes" in run.error
    assert [t for t, _ in await _history(run_id, storage)] == [
        "workflow.started",
        "step.started",
        "step.failed",
        "workflow.failed",
    ]


async def test_an_oversize_step_result_is_retried_per_the_policy(storage: StorageBackend) -> None:
    run_id = await pw.start(retried, storage=storage)
    run = await pw.get_workflow_run(run_id, storage=storage)
    assert run is not None and run.status.value == "completed", run.error
    assert run.result == "fits"
    assert _step_events(await _history(run_id, storage), "step:pl_big_once#1") == [
        "step.started",
        "step.failed",
        "step.retrying",
        "step.started",
        "step.completed",
    ]


class Blob(pw.StepContext):
    blob: str


@pw.workflow(name="pl_big_context", context_class=Blob)
async def big_context() -> object:
    await small(0)
    with contextlib.suppress(pw.PayloadTooLargeError):  # too late: the run fails anyway
        await pw.set_step_context(Blob(blob="b" * (2 * LIMIT)))
    return await small(1)


async def test_an_oversize_step_context_fails_the_run_where_it_is_set(
    storage: StorageBackend,
) -> None:
    run_id = await pw.start(big_context, storage=storage)
    run = await pw.get_workflow_run(run_id, storage=storage)
    assert run is not None and run.status.value == "failed"
    assert run.error is not None
    assert run.error.startswith("PayloadTooLargeError: step context of workflow 'pl_big_context'")
    assert [t for t, _ in await _history(run_id, storage)] == [
        "workflow.started",
        "step.started",  # the step before it is stored, not blamed for the context
        "step.completed",
        "workflow.failed",
    ]
    assert calls == {"small0": 1}


# -- huge error messages -------------------------------------------------------------------
# An exception is stored with its message and traceback cut (32 KiB characters each), so a
# huge one is recorded as a normal failure (under the default 2 MiB limit).

HUGE = 5_000_000


@pw.step(name="pl_huge_raiser", max_retries=1, retry_delay=0)
async def huge_raiser() -> str:
    if _ran("huge") == 1:
        raise ValueError("h" * HUGE)
    return "second time lucky"


@pw.step(name="pl_huge_always", max_retries=0)
async def huge_always() -> str:
    raise ValueError("h" * HUGE)


@pw.workflow(name="pl_huge_step_error")
async def huge_step_error() -> object:
    return [await huge_raiser(), await huge_always()]


async def test_a_huge_step_error_is_recorded_as_a_normal_failure(
    storage: StorageBackend,
) -> None:
    pw.configure(max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES)  # 2 MiB, not the small LIMIT
    run_id = await pw.start(huge_step_error, storage=storage)
    run = await pw.get_workflow_run(run_id, storage=storage)
    assert run is not None and run.status.value == "failed" and run.lease_owner is None
    assert run.error is not None
    assert run.error.startswith("ValueError: hhh")
    assert run.error.endswith(f"... [truncated {HUGE - 32 * 1024:,} chars]")
    history = await _history(run_id, storage)
    assert _step_events(history, "step:pl_huge_raiser#1") == [
        "step.started",
        "step.failed",
        "step.retrying",
        "step.started",
        "step.completed",
    ]
    assert _step_events(history, "step:pl_huge_always#1") == ["step.started", "step.failed"]


async def test_a_huge_workflow_error_is_recorded_as_a_normal_failure() -> None:
    storage = InMemoryStorageBackend()
    run_id = await pw.start(huge_error_of, HUGE, storage=storage)
    run = await pw.get_workflow_run(run_id, storage=storage)
    assert run is not None and run.status.value == "failed"
    assert run.error is not None and run.error.startswith("ValueError: eee")
    assert "too large to store" not in run.error and len(run.error) < 33_000
    events = await pw.get_workflow_events(run_id, storage=storage)
    assert [e.type.value for e in events] == ["workflow.started", "workflow.failed"]
    assert events[-1].data["error"]["type"] == "builtins.ValueError"


@pw.workflow(name="pl_huge_error_of")
async def huge_error_of(size: int) -> None:
    raise ValueError("e" * size)


# -- on step workers (steps dispatched, as the Celery runtime runs them) -------------------


async def _dispatched(workflow: object, *args: object) -> tuple[str, StorageBackend]:
    request = RunRequest(definition=workflow.__workflow__, args=args, kwargs={})  # type: ignore[attr-defined]
    run, started = build_run(request, owner=None, lease_ttl=0)
    storage = InMemoryStorageBackend()
    await storage.create_run(run, [started])
    await drive_dispatched(storage, run.run_id, "new")
    return run.run_id, storage


async def test_an_oversize_result_on_a_step_worker_fails_only_that_step() -> None:
    pw.configure(max_payload_bytes=LIMIT)
    calls.clear()
    run_id, storage = await _dispatched(gather_three)
    await _only_the_big_step_failed(run_id, storage)


@pw.step(name="pl_takes")
async def takes(value: str) -> int:
    return len(value)


@pw.workflow(name="pl_big_argument")
async def big_argument() -> object:
    try:
        await takes("a" * (2 * LIMIT))  # recorded with the attempt, to reach the worker
    except pw.PayloadTooLargeError as err:
        return [err.field, await takes("fits")]
    return "unreachable"


async def test_an_oversize_argument_of_a_dispatched_step_fails_at_the_call() -> None:
    pw.configure(max_payload_bytes=LIMIT)
    run_id, storage = await _dispatched(big_argument)
    run = await pw.get_workflow_run(run_id, storage=storage)
    assert run is not None and run.status.value == "completed", run.error
    assert run.result == ["arguments of step 'pl_takes' (step:pl_takes#1)", 4]
    history = await _history(run_id, storage)  # replayed at every round: no gap, no shift
    assert _step_events(history, "step:pl_takes#1") == ["step.started", "step.failed"]
    assert _step_events(history, "step:pl_takes#2") == ["step.started", "step.completed"]
