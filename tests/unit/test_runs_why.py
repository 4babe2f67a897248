"""``runs why`` (and ``diagnose``) on runs put in each situation for real, on SQLite:
a timer, a retry delay, a hook, a signal, a child, a run due but not resumed, a changed
workflow (non-determinism), a failure; the CLI's exit code says whether it is stuck."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pyworkflow import (
    RetryableError,
    configure,
    hook,
    resume,
    send_signal,
    sleep,
    start,
    start_child_workflow,
    step,
    wait_for_run,
    wait_for_signal,
    workflow,
)
from pyworkflow.cli import main
from pyworkflow.core import registry
from pyworkflow.engine.diagnosis import Diagnosis, diagnose
from pyworkflow.runtime import get_runtime
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import utcnow
from pyworkflow.storage.sqlite import SQLiteStorageBackend


@step(name="why_flaky", max_retries=3, retry_delay=3600)
async def flaky() -> None:
    raise RetryableError("the bank is down")


@workflow(name="why_napper")
async def napper() -> str:
    await sleep("2h", name="nap")
    return "rested"


@workflow(name="why_retrier")
async def retrier() -> None:
    await flaky()


@workflow(name="why_approver")
async def approver() -> object:
    return await hook("manager_ok", timeout="1d")


@workflow(name="why_listener")
async def listener() -> object:
    return await wait_for_signal("go", timeout="3h")


@workflow(name="why_parent")
async def parent() -> object:
    return await start_child_workflow(listener)


@workflow(name="why_changing")
async def changing() -> str:
    await sleep("0.1s", name="first")
    return "v1"


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[StorageBackend]:
    backend = SQLiteStorageBackend(str(tmp_path / "why.db"))
    configure(storage=backend)
    await backend.connect()
    yield backend
    await get_runtime("local").shutdown()
    await backend.close()


async def why(storage: StorageBackend, run_id: str, later: float = 0) -> Diagnosis:
    now = utcnow() + timedelta(seconds=later)
    return await diagnose(storage, run_id, now=now, lease_ttl=30)


async def cli(storage: StorageBackend, *args: str) -> Result:
    """``pyworkflow --storage URL ARGS``, in a thread (the CLI runs its own event loop)."""
    url = f"sqlite:///{storage.path}"  # type: ignore[attr-defined]
    return await asyncio.to_thread(CliRunner().invoke, main, ["--storage", url, *args])


def kinds(found: Diagnosis) -> list[str]:
    return [c.kind for c in found.causes]


async def test_a_sleeping_run_waits_for_its_timer(storage: StorageBackend) -> None:
    run_id = await start(napper)
    found = await why(storage, run_id)
    assert kinds(found) == ["timer"] and not found.stuck
    [timer] = found.causes
    assert "sleep:nap#1" in timer.message and timer.until is not None
    assert timedelta(hours=1.9) < timer.until - utcnow() < timedelta(hours=2.1)


async def test_a_step_waiting_for_its_retry(storage: StorageBackend) -> None:
    run_id = await start(retrier)
    [retry] = (await why(storage, run_id)).causes
    assert retry.kind == "retry" and "why_flaky" in retry.message and "attempt 2" in retry.message


async def test_hook_signal_and_child_waits_name_their_fix(storage: StorageBackend) -> None:
    hooked = await start(approver)
    [waiting] = (await why(storage, hooked)).causes
    assert waiting.kind == "hook" and "manager_ok" in waiting.message
    assert waiting.fix == f"pyworkflow hooks resume --run {hooked} manager_ok --payload JSON"
    assert waiting.until is not None and waiting.since is not None

    listening = await start(listener)
    [signal] = (await why(storage, listening)).causes
    assert signal.kind == "signal" and signal.message == "waiting for signal go"
    assert signal.fix == f"pyworkflow runs signal {listening} go --payload JSON"

    parent_id = await start(parent)
    [child] = (await why(storage, parent_id)).causes
    assert child.kind == "child" and child.fix is not None
    child_id = child.fix.rsplit(" ", 1)[1]
    for _ in range(200):  # the child runs in the background until it waits
        if (await storage.get_run(child_id)).status == "suspended":  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.01)
    assert kinds(await why(storage, child_id)) == ["signal"]


async def test_signals_under_a_name_nobody_waits_for_are_pointed_out(
    storage: StorageBackend,
) -> None:
    run_id = await start(listener)  # waits for "go"
    await send_signal(run_id, "Go", "typo", storage=storage)
    found = await why(storage, run_id)
    assert kinds(found) == ["signal", "unread_signals"]
    assert "no wait asks for: Go (1); it waits for go" in found.causes[1].message


async def test_a_due_run_nobody_resumes_is_stuck(storage: StorageBackend) -> None:
    run_id = await start(napper)
    await get_runtime("local").shutdown()  # nothing serves the storage any more
    found = await why(storage, run_id, later=2 * 3600 + 60)  # its timer passed a minute ago
    assert kinds(found) == ["overdue"] and found.stuck
    assert "LocalRuntime.serve" in (found.causes[0].fix or "")


async def test_changed_code_is_reported_as_non_determinism(storage: StorageBackend) -> None:
    run_id = await start(changing)

    async def changed() -> str:  # a deploy changed the first operation
        await sleep("0.1s", name="renamed")
        return "v2"

    original = registry._workflows["why_changing"]
    registry._workflows["why_changing"] = dataclasses.replace(original, func=changed)
    try:
        await asyncio.sleep(0.15)
        await resume(run_id)
        run = await wait_for_run(run_id, timeout=10)
        assert run.status == "failed"
        found = await why(storage, run_id)
        [cause] = found.causes
        assert cause.kind == "nondeterminism" and found.stuck
        assert f"pyworkflow verify --run {run_id}" in (cause.fix or "")
        stuck = await cli(storage, "runs", "why", run_id)
        assert stuck.exit_code == 1 and "nondeterminism (stuck)" in stuck.output
    finally:
        registry._workflows["why_changing"] = original


async def test_the_cli_answers_in_json_and_exits_0_for_a_waiting_run(
    storage: StorageBackend,
) -> None:
    run_id = await start(listener)
    waiting = await cli(storage, "-o", "json", "runs", "why", run_id)
    assert waiting.exit_code == 0, waiting.output
    answer = json.loads(waiting.output)
    assert answer["stuck"] is False and answer["status"] == "suspended"
    assert answer["causes"][0]["kind"] == "signal" and answer["causes"][0]["until"]

    table = await cli(storage, "runs", "why", run_id)
    assert "waiting for signal go" in table.output and "runs signal" in table.output

    unknown = await cli(storage, "runs", "why", "run_nope")
    assert unknown.exit_code == 1 and "no run with id 'run_nope'" in unknown.output
