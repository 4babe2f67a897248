"""Signals: a run receives a stream of messages in order, buffered until it waits,
durable across executions; signal-with-start; timeouts; typed payloads; bad sends are
refused with nothing stored. Runs on the in-memory backend and on SQLite on disk."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from pyworkflow import (
    EventType,
    RunEndedError,
    RunNotFoundError,
    SignalTimeoutError,
    continue_as_new,
    define_signal,
    get_workflow_chain,
    get_workflow_events,
    get_workflow_run,
    send_signal,
    sleep,
    start,
    step,
    wait_for_run,
    wait_for_signal,
    workflow,
)
from pyworkflow.core.exceptions import SerializationError
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.sqlite import SQLiteStorageBackend


class Item(BaseModel):
    sku: str
    quantity: int


define_signal("sg_typed_item", Item)
added: list[str] = []


@step(name="sg_reserve")
async def reserve(sku: str) -> str:
    added.append(sku)
    return f"reserved {sku}"


@workflow(name="sg_cart")
async def cart() -> list[str]:
    items = []
    while True:
        event = await wait_for_signal("sg_cart_event")
        if event["kind"] == "checkout":
            return items
        items.append(await reserve(event["sku"]))


@workflow(name="sg_late_waiter")
async def late_waiter(delay: float) -> list[Any]:
    await sleep(delay)  # signals sent meanwhile wait in the inbox
    return [await wait_for_signal("sg_note") for _ in range(3)]


@workflow(name="sg_patient")
async def patient() -> list[Any]:
    seen: list[Any] = []
    try:
        seen.append(await wait_for_signal("sg_maybe", timeout="0.3s"))
    except SignalTimeoutError:
        seen.append("timed out")
    seen.append(await wait_for_signal("sg_maybe"))  # the late signal goes to this wait
    return seen


@workflow(name="sg_typed")
async def typed() -> dict[str, Any]:
    item = await wait_for_signal("sg_typed_item", Item)
    assert isinstance(item, Item)
    return {"sku": item.sku, "quantity": item.quantity}


@workflow(name="sg_two_names")
async def two_names() -> list[Any]:
    first = await wait_for_signal("sg_b")  # "a" signals sent before it wait their turn
    rest = [await wait_for_signal("sg_a") for _ in range(2)]
    return [first, *rest]


@workflow(name="sg_batches")
async def batches(taken: list[int]) -> list[int]:
    """Takes two numbers per run, then continues as new with what it has."""
    taken = taken + [await wait_for_signal("sg_num") for _ in range(2)]
    if len(taken) < 6:
        await continue_as_new(taken)
    return taken


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageBackend]:
    backend: StorageBackend = (
        InMemoryStorageBackend()
        if request.param == "memory"
        else SQLiteStorageBackend(str(tmp_path / "signals.db"))
    )
    await backend.connect()
    yield backend
    await backend.close()


async def test_signals_arrive_in_order_and_each_is_taken_once(storage: StorageBackend) -> None:
    added.clear()
    run_id = await start(cart, storage=storage)
    assert (await get_workflow_run(run_id, storage=storage)).status == "suspended"
    for sku in ("apple", "pear", "fig"):
        await send_signal(run_id, "sg_cart_event", {"kind": "add", "sku": sku}, storage=storage)
    await send_signal(run_id, "sg_cart_event", {"kind": "checkout"}, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=10)
    assert run.result == ["reserved apple", "reserved pear", "reserved fig"]
    assert added == ["apple", "pear", "fig"]  # each step body ran once

    events = await get_workflow_events(run_id, storage=storage)
    received = [e.data for e in events if e.type == EventType.SIGNAL_RECEIVED]
    assert [r["sequence"] for r in received] == [1, 2, 3, 4]
    assert [r["payload"].get("sku") for r in received] == ["apple", "pear", "fig", None]
    consumed = [e.data for e in events if e.type == EventType.SIGNAL_CONSUMED]
    assert [c["index"] for c in consumed] == [0, 1, 2, 3]
    assert len({c["wait_id"] for c in consumed}) == 4


async def test_signals_sent_before_the_wait_are_buffered(storage: StorageBackend) -> None:
    run_id = await start(late_waiter, 0.3, storage=storage)
    for n in range(3):
        await send_signal(run_id, "sg_note", n, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=10)
    assert run.result == [0, 1, 2]


async def test_a_timed_out_wait_leaves_a_late_signal_to_the_next(storage: StorageBackend) -> None:
    run_id = await start(patient, storage=storage)
    await asyncio.sleep(0.6)  # the first wait times out meanwhile
    await send_signal(run_id, "sg_maybe", "late", storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=10)
    assert run.result == ["timed out", "late"]
    types = [e.type for e in await get_workflow_events(run_id, storage=storage)]
    assert EventType.SIGNAL_TIMED_OUT in types


async def test_each_name_is_its_own_queue(storage: StorageBackend) -> None:
    run_id = await start(two_names, storage=storage)
    await send_signal(run_id, "sg_a", "a1", storage=storage)
    await send_signal(run_id, "sg_a", "a2", storage=storage)
    await send_signal(run_id, "sg_b", "b1", storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=10)
    assert run.result == ["b1", "a1", "a2"]


async def test_typed_signals_are_validated_before_they_are_stored(
    storage: StorageBackend,
) -> None:
    run_id = await start(typed, storage=storage)
    with pytest.raises(ValidationError):
        await send_signal(
            run_id, "sg_typed_item", {"sku": "x", "quantity": "lots"}, storage=storage
        )
    assert await storage.list_signals(run_id) == []  # nothing stored
    await send_signal(run_id, "sg_typed_item", Item(sku="x", quantity=2), storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=10)
    assert run.result == {"sku": "x", "quantity": 2}


async def test_bad_sends_are_refused_with_a_clear_error(storage: StorageBackend) -> None:
    run_id = await start(cart, storage=storage)
    with pytest.raises(RunNotFoundError, match="no run with id 'nope'"):
        await send_signal("nope", "sg_cart_event", {}, storage=storage)
    with pytest.raises(ValueError, match="signal name"):
        await send_signal(run_id, "bad name!", {}, storage=storage)
    with pytest.raises(SerializationError, match="sg_cart_event"):
        await send_signal(run_id, "sg_cart_event", {"when": object()}, storage=storage)
    with pytest.raises(SerializationError, match="NaN"):
        await send_signal(run_id, "sg_cart_event", {"price": float("nan")}, storage=storage)
    assert await storage.list_signals(run_id) == []
    await send_signal(run_id, "sg_cart_event", {"kind": "checkout"}, storage=storage)
    await wait_for_run(run_id, storage=storage, timeout=10)
    with pytest.raises(RunEndedError, match="has ended"):
        await send_signal(run_id, "sg_cart_event", {"kind": "add", "sku": "x"}, storage=storage)


async def test_a_repeated_signal_id_is_delivered_once(storage: StorageBackend) -> None:
    run_id = await start(late_waiter, 0.2, storage=storage)
    first = await send_signal(run_id, "sg_note", "once", signal_id="order-7", storage=storage)
    again = await send_signal(run_id, "sg_note", "once", signal_id="order-7", storage=storage)
    assert again.sequence == first.sequence == 1
    await send_signal(run_id, "sg_note", "two", storage=storage)
    await send_signal(run_id, "sg_note", "three", storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=10)
    assert run.result == ["once", "two", "three"]


async def test_signal_with_start(storage: StorageBackend) -> None:
    added.clear()
    run_id = await start(
        cart,
        storage=storage,
        idempotency_key="cart-42",
        signal=("sg_cart_event", {"kind": "add", "sku": "kiwi"}),
    )
    # The same key again: the run exists, so the signal goes to it.
    again = await start(
        cart,
        storage=storage,
        idempotency_key="cart-42",
        signal=("sg_cart_event", {"kind": "checkout"}),
    )
    assert again == run_id
    run = await wait_for_run(run_id, storage=storage, timeout=10)
    assert run.result == ["reserved kiwi"]
    events = await get_workflow_events(run_id, storage=storage)
    first_wait = next(e for e in events if e.type.value.startswith("signal."))
    # Taken by the first execution at once (no waiting, no second execution for it).
    assert (first_wait.type, first_wait.data["index"]) == (EventType.SIGNAL_CONSUMED, 0)
    started = events[0]
    assert started.data["signals"] == [
        {"name": "sg_cart_event", "payload": {"kind": "add", "sku": "kiwi"}}
    ]


async def test_signal_with_start_refuses_a_bad_payload_before_storing(
    storage: StorageBackend,
) -> None:
    with pytest.raises(ValidationError):
        await start(typed, storage=storage, signal=("sg_typed_item", {"sku": 1}))
    assert await storage.list_runs() == []


async def test_signals_follow_a_loop_that_continues_as_new(storage: StorageBackend) -> None:
    """Signals a run received but never took go on to the run continuing it, in order;
    a signal sent to a run that already continued is passed on down the chain."""
    first = await start(batches, [], storage=storage)
    for n in range(1, 5):  # buffered in the first run: it takes two, carries two
        await send_signal(first, "sg_num", n, storage=storage)
    for _ in range(200):
        chain = await get_workflow_chain(first, storage=storage)
        if len(chain) >= 2 and chain[-1].status == "suspended":
            break
        await asyncio.sleep(0.01)
    sent = await send_signal(first, "sg_num", 5, storage=storage)  # the first run has ended
    assert sent.run_id != first
    await send_signal(first, "sg_num", 6, storage=storage)
    for _ in range(500):
        chain = await get_workflow_chain(first, storage=storage)
        if chain[-1].status == "completed":
            break
        await asyncio.sleep(0.01)
    assert [r.status for r in chain] == ["continued_as_new"] * 2 + ["completed"]
    assert chain[-1].result == [1, 2, 3, 4, 5, 6]
