"""Hook tokens are derived (HMAC of the hook's identity under the secret key), never
stored: a replay after a crash hands out the same token, another key gives a token that
cannot deliver, and hooks created by earlier versions (random token stored) still work."""

from __future__ import annotations

import asyncio
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

import pyworkflow
from pyworkflow import (
    HookNotFoundError,
    configure,
    get_workflow_events,
    hook,
    resume,
    resume_hook,
    wait_for_run,
    workflow,
)
from pyworkflow.core.config import ConfigurationError
from pyworkflow.engine.runner import resume_run
from pyworkflow.engine.runs import RunRequest, build_run
from pyworkflow.primitives import hook_tokens
from pyworkflow.primitives.hook_tokens import KEY_FILE, derive_token, hash_token
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.schemas import EventType, HookRecord, RunStatus

KEY_A = "a" * 32
KEY_B = "b" * 32
HOOK_ID = "hook:ht_go#1"

handed: list[str] = []
crash_once: list[bool] = []


async def hand_out(token: str) -> None:
    handed.append(token)
    if crash_once:
        crash_once.pop()
        raise asyncio.CancelledError  # the process stops right after on_created


@workflow(name="ht_wait")
async def wait_for_go() -> object:
    return await hook("ht_go", on_created=hand_out)


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    handed.clear()
    crash_once.clear()
    hook_tokens._file_keys.clear()
    hook_tokens._warned = False
    yield
    hook_tokens._file_keys.clear()


@pytest.fixture
def log_lines(pyworkflow_debug_logs: None) -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG")
    yield lines
    logger.remove(sink)


async def _pending_run(storage: InMemoryStorageBackend) -> str:
    request = RunRequest(definition=wait_for_go.__workflow__, args=(), kwargs={})  # type: ignore[attr-defined]
    run, started = build_run(request, owner=None, lease_ttl=0)
    await storage.create_run(run, [started])
    return run.run_id


async def _crash_then_recover(storage: InMemoryStorageBackend, run_id: str, key: str) -> None:
    """One process saves the hook, calls on_created and dies before recording the hook;
    another (using secret ``key``) recovers the run, which creates the hook again."""
    crash_once.append(True)
    with pytest.raises(asyncio.CancelledError):
        await resume_run(storage, run_id, owner="host:1:first", lease_ttl=30)
    assert [e.type for e in await storage.get_events(run_id)] == [EventType.WORKFLOW_STARTED]
    configure(secret_key=key)
    await resume_run(
        storage, run_id, owner="host:2:second", lease_ttl=30, recovery=True,
        steal_from="host:1:first",
    )  # fmt: skip


async def test_replay_after_a_crash_hands_out_the_same_token_and_stores_none() -> None:
    configure(secret_key=KEY_A)
    storage = InMemoryStorageBackend()
    run_id = await _pending_run(storage)
    await _crash_then_recover(storage, run_id, KEY_A)
    assert len(handed) == 2 and handed[0] == handed[1]
    token = handed[0]
    assert token.startswith("whk_") and len(token) == 36  # 192 bits, as before
    [record] = await storage.list_hooks(run_id=run_id)
    assert record.token == "" and record.token_hash == hash_token(token)
    events = await get_workflow_events(run_id, storage=storage)
    created = next(e for e in events if e.type == EventType.HOOK_CREATED)
    assert token not in str(created.data)

    await resume_hook(token, {"go": True}, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == RunStatus.COMPLETED and run.result == {"go": True}


async def test_the_token_depends_on_the_secret_key() -> None:
    configure(secret_key=KEY_A)
    storage = InMemoryStorageBackend()
    run_id = await _pending_run(storage)
    await resume(run_id, storage=storage)
    [token] = handed
    assert token == derive_token(run_id, HOOK_ID)

    configure(secret_key=KEY_B)
    other = derive_token(run_id, HOOK_ID)
    assert other != token
    with pytest.raises(HookNotFoundError):
        await resume_hook(other, "forged", storage=storage)  # the database alone is not enough
    assert derive_token("run_other", HOOK_ID) != other

    await resume_hook(token, "real", storage=storage)  # delivery needs no key, only the token
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.result == "real"


async def test_a_hook_created_by_an_earlier_version_keeps_its_random_token() -> None:
    """The earlier version stored a random token with the hook, then crashed before
    recording it: replay hands out that stored token, and it delivers."""
    configure(secret_key=KEY_A)
    storage = InMemoryStorageBackend()
    run_id = await _pending_run(storage)
    old_token = "whk_" + secrets.token_urlsafe(24)
    await storage.save_hook(
        HookRecord(
            token_hash=hash_token(old_token), run_id=run_id, hook_id=HOOK_ID, name="ht_go",
            token=old_token,
        )
    )  # fmt: skip
    await resume(run_id, storage=storage)
    assert handed == [old_token]
    events = await get_workflow_events(run_id, storage=storage)
    created = next(e for e in events if e.type == EventType.HOOK_CREATED)
    assert created.data["token_hash"] == hash_token(old_token)

    await resume_hook(old_token, {"ok": 1}, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=5)
    assert run.status == RunStatus.COMPLETED and run.result == {"ok": 1}


async def test_without_a_secret_key_a_private_key_file_is_made_with_one_warning(
    log_lines: list[str],
) -> None:
    first = derive_token("run_1", HOOK_ID)
    path = Path.cwd() / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    hook_tokens._file_keys.clear()  # a restarted process reads the same file
    assert derive_token("run_1", HOOK_ID) == first
    warnings = [line for line in log_lines if "PYWORKFLOW_SECRET_KEY" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0]
    key = path.read_text().strip()
    assert not any(key in line for line in log_lines)


async def test_a_configured_key_makes_no_file_and_is_never_shown(
    monkeypatch: pytest.MonkeyPatch, log_lines: list[str]
) -> None:
    monkeypatch.setenv("PYWORKFLOW_SECRET_KEY", KEY_B)
    pyworkflow.reset_config()
    assert derive_token("run_1", HOOK_ID) != ""
    assert not (Path.cwd() / KEY_FILE).exists()
    assert KEY_B not in repr(pyworkflow.get_config())
    assert log_lines == []
    with pytest.raises(ConfigurationError, match="secret_key") as info:
        configure(secret_key="short-secret")
    assert "short-secret" not in str(info.value)


def test_an_unusable_key_file_is_reported() -> None:
    path = Path.cwd() / KEY_FILE
    path.parent.mkdir(parents=True)
    path.write_text("\n")
    with pytest.raises(ConfigurationError, match="secret key file"):
        derive_token("run_1", HOOK_ID)
    os.remove(path)
    assert derive_token("run_1", HOOK_ID).startswith("whk_")


async def test_a_key_changed_between_crash_and_replay_is_reported(log_lines: list[str]) -> None:
    configure(secret_key=KEY_A)
    storage = InMemoryStorageBackend()
    run_id = await _pending_run(storage)
    await _crash_then_recover(storage, run_id, KEY_B)
    assert handed[1] != handed[0]
    assert any("created under another secret key" in line for line in log_lines)
    assert not any(KEY_A in line or KEY_B in line for line in log_lines)
