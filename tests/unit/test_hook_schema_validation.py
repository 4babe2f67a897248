"""Delivering to a typed hook from a process without its model: the payload is checked
against the JSON Schema the hook stored, refused with each violation, and the hook stays
open; delivering by run id and hook id/name needs the deployment's secret key."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from datetime import datetime
from enum import StrEnum
from pathlib import Path

import pytest
from pydantic import BaseModel

from pyworkflow import (
    ConfigurationError,
    HookAlreadyReceivedError,
    HookNotFoundError,
    HookPayloadError,
    RunNotFoundError,
    SerializationError,
    configure,
    define_hook,
    get_hook,
    list_hooks,
    resume,
    resume_hook,
    resume_run_hook,
    start,
    wait_for_run,
    workflow,
)
from pyworkflow.primitives import hooks as hook_primitives
from pyworkflow.primitives.hooks import schema_violations
from pyworkflow.storage.memory import InMemoryStorageBackend

tokens: list[str] = []


async def remember(token: str) -> None:
    tokens.append(token)


class Level(StrEnum):
    low = "low"
    high = "high"


class Review(BaseModel):
    approved: bool
    approver: str
    amount: int | None = None
    level: Level = Level.low
    due: datetime | None = None


review = define_hook("sv_review", Review)


@workflow(name="sv_order")
async def order(order_id: str) -> str:
    decision = await review(on_created=remember)
    return f"{order_id}: {decision.approved} by {decision.approver} ({decision.level.value})"


@pytest.fixture
def without_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Once the run waits, this process delivers as one that never imported the workflow's
    module would (awaiting the hook registers its model again, so it is forgotten after)."""
    forget.append(lambda: monkeypatch.delitem(hook_primitives._MODELS, "sv_review"))
    yield
    forget.clear()


forget: list[Callable[[], None]] = []


@pytest.fixture(autouse=True)
def _secret_key() -> None:
    configure(secret_key="k" * 32)


async def _waiting_run(storage: InMemoryStorageBackend) -> tuple[str, str]:
    tokens.clear()
    run_id = await start(order, "o-1", storage=storage)
    for action in forget:
        action()
    return run_id, tokens[-1]


async def _status(storage: InMemoryStorageBackend, run_id: str) -> str:
    (record,) = await list_hooks(run_id=run_id, storage=storage)
    return record.status.value


@pytest.mark.usefixtures("without_model")
async def test_invalid_payload_is_refused_with_every_violation_and_the_hook_stays_open() -> None:
    storage = InMemoryStorageBackend()
    run_id, token = await _waiting_run(storage)

    with pytest.raises(HookPayloadError) as refused:
        await resume_hook(token, {"approved": "notabool", "level": "urgent"}, storage=storage)

    err = refused.value
    assert err.hook_id == "hook:sv_review#1"
    assert {"path": "approved", "message": "'notabool' is not of type 'boolean'"} in err.errors
    assert any(e["path"] == "level" and "urgent" in e["message"] for e in err.errors)
    assert any(
        e["path"] == "" and "'approver' is a required property" in e["message"] for e in err.errors
    )
    assert "approved: 'notabool' is not of type 'boolean'" in str(err)
    assert isinstance(err, ValueError)
    assert pickle.loads(pickle.dumps(err)).errors == err.errors  # crosses processes intact
    assert await _status(storage, run_id) == "pending"


@pytest.mark.usefixtures("without_model")
async def test_valid_payload_is_accepted_and_the_run_completes_with_it() -> None:
    storage = InMemoryStorageBackend()
    run_id, token = await _waiting_run(storage)
    with pytest.raises(HookPayloadError):
        await resume_hook(token, {"approved": "notabool", "approver": "ada"}, storage=storage)

    result = await resume_hook(
        token, {"approved": True, "approver": "ada", "level": "high"}, storage=storage
    )

    assert result.hook_id == "hook:sv_review#1"
    assert await _status(storage, run_id) == "received"
    await resume(run_id, storage=storage)  # as the process with the code would
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.result == "o-1: True by ada (high)"


@pytest.mark.usefixtures("without_model")
async def test_formats_are_checked_so_the_model_accepts_what_was_delivered() -> None:
    storage = InMemoryStorageBackend()
    run_id, token = await _waiting_run(storage)
    with pytest.raises(HookPayloadError) as refused:
        await resume_hook(
            token, {"approved": True, "approver": "a", "due": "next tuesday"}, storage=storage
        )
    assert refused.value.errors[0]["path"] == "due"
    await resume_hook(
        token, {"approved": True, "approver": "a", "due": "2031-05-01T12:00:00Z"}, storage=storage
    )
    assert await _status(storage, run_id) == "received"


@pytest.mark.usefixtures("without_model")
async def test_nan_is_still_refused_before_the_schema() -> None:
    storage = InMemoryStorageBackend()
    run_id, token = await _waiting_run(storage)
    with pytest.raises(SerializationError, match="NaN"):
        await resume_hook(
            token, {"approved": True, "approver": "a", "amount": float("nan")}, storage=storage
        )
    assert await _status(storage, run_id) == "pending"


def test_an_unreadable_stored_schema_refuses_rather_than_accepting_blind() -> None:
    assert schema_violations("{not json", {"a": 1})[0]["path"] == ""
    assert "unreadable" in schema_violations('{"type": 12}', {"a": 1})[0]["message"]
    assert schema_violations('{"type": "object"}', {"a": 1}) == []


async def test_where_the_model_is_registered_pydantic_still_decides() -> None:
    storage = InMemoryStorageBackend()
    run_id, token = await _waiting_run(storage)
    # Pydantic's lax mode accepts "yes" for a bool (the schema alone would not).
    await resume_hook(token, {"approved": "yes", "approver": "ada"}, storage=storage)
    await resume(run_id, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.result == "o-1: True by ada (low)"


@pytest.mark.usefixtures("without_model")
async def test_operators_deliver_by_run_and_hook_id_or_name_with_the_secret_key() -> None:
    storage = InMemoryStorageBackend()
    run_id, _ = await _waiting_run(storage)

    found = await get_hook(run_id=run_id, hook="sv_review", storage=storage)
    assert found.hook_id == "hook:sv_review#1" and found.token == ""
    assert (await get_hook(run_id=run_id, hook="hook:sv_review#1", storage=storage)) == found

    with pytest.raises(HookPayloadError):
        await resume_run_hook(run_id, "sv_review", {"approved": "x"}, storage=storage)
    result = await resume_run_hook(
        run_id, "hook:sv_review#1", {"approved": False, "approver": "bo"}, storage=storage
    )
    assert result.run_id == run_id
    with pytest.raises(HookAlreadyReceivedError):
        await resume_run_hook(
            run_id, "sv_review", {"approved": False, "approver": "bo"}, storage=storage
        )


async def test_delivering_by_id_with_another_key_is_refused_and_names_the_fix() -> None:
    storage = InMemoryStorageBackend()
    run_id, _ = await _waiting_run(storage)
    configure(secret_key="another-key-" * 3)
    with pytest.raises(ConfigurationError, match="PYWORKFLOW_SECRET_KEY"):
        await resume_run_hook(
            run_id, "sv_review", {"approved": True, "approver": "a"}, storage=storage
        )
    assert await _status(storage, run_id) == "pending"


async def test_delivering_by_id_without_any_key_does_not_make_one(tmp_path: Path) -> None:
    storage = InMemoryStorageBackend()
    run_id, _ = await _waiting_run(storage)
    from pyworkflow import reset_config

    reset_config()  # no secret_key setting, no key file in this working directory
    with pytest.raises(ConfigurationError, match="no secret key here"):
        await resume_run_hook(
            run_id, "sv_review", {"approved": True, "approver": "a"}, storage=storage
        )
    assert not (tmp_path / ".pyworkflow").exists()


async def test_finding_a_hook_names_what_is_missing() -> None:
    storage = InMemoryStorageBackend()
    run_id, _ = await _waiting_run(storage)
    with pytest.raises(RunNotFoundError):
        await get_hook(run_id="run_nope", hook="sv_review", storage=storage)
    with pytest.raises(HookNotFoundError, match="no hook 'other'"):
        await get_hook(run_id=run_id, hook="other", storage=storage)
    with pytest.raises(HookNotFoundError):
        await get_hook("whk_" + "A" * 32, storage=storage)
    with pytest.raises(ValueError, match="needs a token"):
        await get_hook(storage=storage)
