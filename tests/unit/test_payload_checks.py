"""NaN/Infinity and oversize values are refused with a typed error naming what was being
stored, before anything is written, and runs that produce them fail cleanly (a
consecutive history, no stuck lease)."""

from __future__ import annotations

import pickle

import pytest

import pyworkflow as pw
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.payloads import PayloadLimit, check_size, strict_json

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
    assert await _only_run(storage) == ("failed", [1, 2])


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
