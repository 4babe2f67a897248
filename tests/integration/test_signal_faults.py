"""Storage faults around signals are never a workflow's failure: whichever append of a
signal-taking run fails (lost, or landed with the answer lost), and when reading the
inbox fails, the run still takes every signal once, in order, on SQLite and PostgreSQL.
Faults are injected around the real backend (:class:`StorageFaults`, and a wrapper that
fails ``list_signals`` calls)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pyworkflow import (
    EventType,
    StorageUnavailableError,
    get_workflow_events,
    send_signal,
    start,
    wait_for_run,
    wait_for_signal,
    workflow,
)
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import utcnow
from pyworkflow.testing.faults import StorageFaults
from tests.storage import backend_postgres, backend_sqlite


@workflow(name="sgf_collect")
async def collect() -> list[Any]:
    return [await wait_for_signal("sgf_n") for _ in range(3)]


BACKENDS = {"sqlite": backend_sqlite, "postgres": backend_postgres}


@pytest.fixture(params=list(BACKENDS))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    async with BACKENDS[request.param].open_backend(tmp_path) as (backend, _):
        yield backend


async def _collect(storage: StorageBackend) -> str:
    run_id = await start(collect, storage=storage)
    for n in (1, 2, 3):
        await send_signal(run_id, "sgf_n", n, storage=storage)
    run = await wait_for_run(run_id, timeout=20, storage=storage)
    assert (run.status, run.result) == ("completed", [1, 2, 3]), run.error
    events = await get_workflow_events(run_id, storage=storage)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    received = [e.data["sequence"] for e in events if e.type == EventType.SIGNAL_RECEIVED]
    assert received == [1, 2, 3]  # each moved into the history once, in order
    taken = [e.data["index"] for e in events if e.type == EventType.SIGNAL_CONSUMED]
    assert taken == [0, 1, 2]
    return run_id


@pytest.mark.parametrize("landed", [False, True], ids=["lost", "landed"])
async def test_any_failed_append_leaves_every_signal_taken_once(
    storage: StorageBackend, landed: bool
) -> None:
    with StorageFaults(storage) as counter:
        await _collect(storage)
    total = counter.appends
    assert total >= 2  # its suspension, then the resumed run taking all three
    for n in range(1, total + 1):
        with StorageFaults(storage, fail_appends={n}, landed=landed) as faults:
            await _collect(storage)
        # (how many appends a round makes depends on whether a signal arrives before
        # or after the run suspends: a shorter round has no n-th append to fail)
        assert faults.injected == 1 or faults.appends < n, n


async def test_a_failing_inbox_read_is_retried_not_a_failure(
    storage: StorageBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = storage.list_signals
    failures = {"left": 3}

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise StorageUnavailableError("the inbox is away (injected)")
        return await real(*args, **kwargs)

    monkeypatch.setattr(storage, "list_signals", flaky)
    await _collect(storage)
    assert failures["left"] == 0


async def test_a_signal_stored_just_before_the_suspension_still_wakes_the_run(
    storage: StorageBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a lost wake-up would come from: the run read its inbox (empty), then a
    signal is stored (the run is not suspended yet, so the send cannot wake it), then
    the run stores its suspension. The run reads its inbox again after suspending, so
    it is woken and takes the signal; nobody else wakes it here."""
    real_append = storage.append_events
    sent: list[str] = []

    async def append_then_race(run_id: str, events: Any, **kwargs: Any) -> Any:
        suspending = any(e.type == EventType.WORKFLOW_SUSPENDED for e in events)
        if suspending and not sent:
            sent.append(run_id)
            for n in (1, 2, 3):  # straight to storage: no API wake-up
                await storage.send_signal(run_id, "sgf_n", str(n), signal_id=f"s{n}", now=utcnow())
        return await real_append(run_id, events, **kwargs)

    monkeypatch.setattr(storage, "append_events", append_then_race)
    run_id = await start(collect, storage=storage)
    run = await wait_for_run(run_id, timeout=20, storage=storage)
    assert (run.status, run.result) == ("completed", [1, 2, 3]), run.error
    assert sent == [run_id]
