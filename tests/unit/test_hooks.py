"""Hooks: a run waits for an outside payload; tokens are unguessable and single-use;
typed hooks validate; expiry wakes the workflow with HookExpiredError."""

from __future__ import annotations

import asyncio

import pytest
from loguru import logger
from pydantic import BaseModel, ValidationError

from pyworkflow import (
    EventType,
    HookAlreadyReceivedError,
    HookExpiredError,
    HookNotFoundError,
    InvalidTokenError,
    define_hook,
    get_workflow_events,
    get_workflow_run,
    hook,
    list_hooks,
    resume_hook,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.storage.memory import InMemoryStorageBackend

tokens: list[str] = []


async def remember(token: str) -> None:
    tokens.append(token)


class Approval(BaseModel):
    approved: bool
    approver: str


approval = define_hook("hk_approval", Approval)


@step(name="hk_ship")
async def ship(order: str) -> str:
    return f"shipped {order}"


@workflow(name="hk_order")
async def order(order_id: str) -> dict[str, object]:
    decision = await approval(on_created=remember)
    assert isinstance(decision, Approval)
    if not decision.approved:
        return {"order": order_id, "shipped": False}
    return {"order": order_id, "shipped": await ship(order_id), "by": decision.approver}


async def test_typed_hook_round_trip() -> None:
    tokens.clear()
    storage = InMemoryStorageBackend()
    run_id = await start(order, "o-1", storage=storage)
    assert (await get_workflow_run(run_id, storage=storage)).status == "suspended"
    assert len(tokens) == 1 and tokens[0].startswith("whk_") and len(tokens[0]) >= 36

    pending = await list_hooks(run_id=run_id, storage=storage)
    assert [(h.name, h.status.value) for h in pending] == [("hk_approval", "pending")]
    assert pending[0].token == ""  # listings never carry the token

    result = await resume_hook(tokens[0], {"approved": True, "approver": "ada"}, storage=storage)
    assert result.run_id == run_id and result.hook_id == "hook:hk_approval#1"
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.result == {"order": "o-1", "shipped": "shipped o-1", "by": "ada"}

    events = await get_workflow_events(run_id, storage=storage)
    created = next(e for e in events if e.type == EventType.HOOK_CREATED)
    assert tokens[0] not in str(created.data)  # the log holds a hash and a hint only
    received = next(e for e in events if e.type == EventType.HOOK_RECEIVED)
    assert received.data["payload"] == {"approved": True, "approver": "ada"}

    with pytest.raises(HookAlreadyReceivedError):
        await resume_hook(tokens[0], {"approved": False, "approver": "eve"}, storage=storage)


async def test_invalid_payload_is_refused_and_the_hook_stays_open() -> None:
    tokens.clear()
    storage = InMemoryStorageBackend()
    run_id = await start(order, "o-2", storage=storage)
    with pytest.raises(ValidationError) as info:
        await resume_hook(tokens[0], {"approved": "maybe"}, storage=storage)
    assert "approver" in str(info.value)
    assert (await get_workflow_run(run_id, storage=storage)).status == "suspended"

    await resume_hook(tokens[0], {"approved": False, "approver": "bob"}, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.result == {"order": "o-2", "shipped": False}


async def test_bad_and_unknown_tokens() -> None:
    storage = InMemoryStorageBackend()
    with pytest.raises(InvalidTokenError):
        await resume_hook("guess", {}, storage=storage)
    with pytest.raises(HookNotFoundError):
        await resume_hook("whk_" + "A" * 32, {}, storage=storage)


@workflow(name="hk_timeout")
async def with_timeout() -> str:
    try:
        await hook("hk_reply", timeout=0.2, on_created=remember)
    except HookExpiredError:
        return "no reply"
    return "reply"


async def test_expiry_wakes_the_workflow_with_hook_expired_error() -> None:
    tokens.clear()
    storage = InMemoryStorageBackend()
    run_id = await start(with_timeout, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.result == "no reply"
    types = [e.type for e in await get_workflow_events(run_id, storage=storage)]
    assert EventType.HOOK_EXPIRED in types
    with pytest.raises(HookExpiredError):
        await resume_hook(tokens[0], {"late": True}, storage=storage)


@workflow(name="hk_untyped")
async def untyped() -> object:
    return await hook("hk_any", on_created=remember)


async def test_untyped_payload_must_be_json() -> None:
    tokens.clear()
    storage = InMemoryStorageBackend()
    run_id = await start(untyped, storage=storage)
    from pyworkflow import SerializationError

    with pytest.raises(SerializationError):
        await resume_hook(tokens[0], {"when": object()}, storage=storage)
    await resume_hook(tokens[0], [1, "two", {"three": 3}], storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.result == [1, "two", {"three": 3}]


async def test_concurrent_deliveries_one_wins() -> None:
    tokens.clear()
    storage = InMemoryStorageBackend()
    run_id = await start(untyped, storage=storage)
    outcomes = await asyncio.gather(
        *(resume_hook(tokens[0], n, storage=storage) for n in range(5)), return_exceptions=True
    )
    wins = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(o, HookAlreadyReceivedError) for o in outcomes if o not in wins)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.result == outcomes.index(wins[0])


async def test_token_never_logged(pyworkflow_debug_logs: None) -> None:
    tokens.clear()
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG")
    try:
        storage = InMemoryStorageBackend()
        run_id = await start(untyped, storage=storage)
        await resume_hook(tokens[0], "x", storage=storage)
        await wait_for_run(run_id, storage=storage, timeout=5)
        with pytest.raises(HookAlreadyReceivedError) as info:
            await resume_hook(tokens[0], "y", storage=storage)
    finally:
        logger.remove(sink)
    assert tokens[0] not in str(info.value)
    assert not any(tokens[0] in line for line in lines)


async def test_hooks_of_an_ended_run_refuse_payloads() -> None:
    from pyworkflow import cancel_workflow

    tokens.clear()
    storage = InMemoryStorageBackend()
    run_id = await start(untyped, storage=storage)
    assert await cancel_workflow(run_id, "no longer needed", wait=True, timeout=5, storage=storage)
    assert (await get_workflow_run(run_id, storage=storage)).status == "cancelled"
    with pytest.raises(HookExpiredError):
        await resume_hook(tokens[0], "too late", storage=storage)
    [record] = await list_hooks(run_id=run_id, storage=storage)
    assert record.status == "disposed"
