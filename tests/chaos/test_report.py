"""The chaos run's checks catch what they claim to catch.

One real run of the chaos workflow (local runtime, memory storage, the ledger written
by its step bodies) is checked as recorded, then with a fault planted in its history
or its ledger: each must come out as the problem the summary names, and the clean one
as none. A checker that never fires would let ``make chaos`` pass whatever happened.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import pyworkflow
from pyworkflow import start, wait_for_run
from pyworkflow.runtime import get_runtime
from pyworkflow.storage.memory import InMemoryStorageBackend
from tests.chaos.flows import chaos_flow, expected
from tests.chaos.report import Findings, Ledger, analyse

N = 0  # sleeps 1 s; its flaky step succeeds at once


class Recorded:
    """A run and its history as read from storage, served back (possibly altered)."""

    def __init__(self, run: Any, events: list[Any]) -> None:
        self.run = run
        self.events = events

    async def get_run(self, run_id: str) -> Any:
        return self.run if run_id == self.run.run_id else None

    async def get_events(self, run_id: str) -> list[Any]:
        return list(self.events)


async def _record() -> tuple[Any, list[Any]]:
    storage = InMemoryStorageBackend()
    try:
        run_id = await start(chaos_flow, N, storage=storage, runtime="local")
        run = await wait_for_run(run_id, timeout=20, storage=storage)
        return run, await storage.get_events(run_id)
    finally:
        await get_runtime("local").shutdown()


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[Any], str]:
    """One real run (recorded once for the module: its sleep takes a second)."""
    ledger = tmp_path_factory.mktemp("chaos") / "ledger.txt"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHAOS_LEDGER", str(ledger))
        pyworkflow.reset_config()
        run, events = asyncio.run(_record())
        pyworkflow.reset_config()
    return run, events, ledger.read_text()


@pytest.fixture
def recorded(original: tuple[Any, list[Any], str], tmp_path: Path) -> tuple[Recorded, Path]:
    """A fresh copy of the run, its history and its ledger, for one test to alter."""
    run, events, text = original
    ledger = tmp_path / "ledger.txt"
    ledger.write_text(text)
    return Recorded(run, list(events)), ledger


async def _check(recorded: Recorded, ledger: Path) -> Findings:
    return await analyse(recorded, {N: recorded.run.run_id}, 1, Ledger.read(ledger))


def _kinds(found: Findings) -> set[str]:
    return {kind for kind, lines in found.problems.items() if lines}


async def test_a_sound_run_has_no_problem(recorded: tuple[Recorded, Path]) -> None:
    run, ledger = recorded
    found = await _check(run, ledger)
    assert run.run.result == expected(N)
    assert (found.completed, _kinds(found)) == (1, set())
    assert found.recorded_steps == 8


async def test_a_second_step_completion_is_a_duplicate(recorded: tuple[Recorded, Path]) -> None:
    run, ledger = recorded
    done = next(e for e in run.events if e.type.value == "step.completed")
    terminal = run.events.pop()
    again = dataclasses.replace(done, sequence=terminal.sequence)
    run.events += [again, dataclasses.replace(terminal, sequence=terminal.sequence + 1)]
    assert _kinds(await _check(run, ledger)) == {"duplicate"}


async def test_a_step_body_before_the_wake_time_is_an_early_wake_up(
    recorded: tuple[Recorded, Path],
) -> None:
    run, ledger = recorded
    lines = ledger.read_text().splitlines()
    moved = []
    for line in lines:
        parts = line.split()
        if parts[0] == "after_sleep":
            parts[-1] = f"{float(parts[-1]) - 2:.6f}"  # 2 s earlier: before the 1 s sleep ended
        moved.append(" ".join(parts))
    ledger.write_text("\n".join(moved) + "\n")
    assert _kinds(await _check(run, ledger)) == {"early"}


async def test_an_early_sleep_completed_event_is_an_early_wake_up(
    recorded: tuple[Recorded, Path],
) -> None:
    run, ledger = recorded
    i = next(i for i, e in enumerate(run.events) if e.type.value == "sleep.completed")
    woke = run.events[i]
    run.events[i] = dataclasses.replace(woke, timestamp=woke.timestamp - timedelta(seconds=5))
    assert _kinds(await _check(run, ledger)) == {"early"}


async def test_a_completion_without_a_body_run_is_flagged(
    recorded: tuple[Recorded, Path],
) -> None:
    run, ledger = recorded
    kept = [line for line in ledger.read_text().splitlines() if not line.startswith("tally ")]
    ledger.write_text("\n".join(kept) + "\n")
    assert _kinds(await _check(run, ledger)) == {"unexecuted"}


async def test_an_unfinished_run_is_lost_and_a_failed_one_failed(
    recorded: tuple[Recorded, Path],
) -> None:
    run, ledger = recorded
    run.events = run.events[:-1]
    run.run = dataclasses.replace(run.run, status=pyworkflow.RunStatus.RUNNING)
    assert _kinds(await _check(run, ledger)) == {"lost"}
    run.run = dataclasses.replace(run.run, status=pyworkflow.RunStatus.FAILED, error="boom")
    found = await _check(run, ledger)
    assert _kinds(found) == {"failed"} and found.errors == {"boom": 1}
