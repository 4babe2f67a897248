"""Golden histories: checked-in event logs that today's workflow code must replay.

Each JSON file in ``histories/`` holds a run's events recorded up to its suspension and
what replaying it must produce. A change to ``workflows.py`` (or to the engine's
operation ids) that breaks compatibility with already-recorded runs fails here.
Re-record with ``python -m tests.replay.record_histories`` only on purpose.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pyworkflow import wait_for_run
from pyworkflow.engine.events import Event, EventType
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.schemas import RunStatus, WorkflowRun, utcnow
from pyworkflow.testing import resume_local
from tests.replay import workflows  # noqa: F401 - registers the workflows

HISTORIES = {
    path.stem: json.loads(path.read_text())
    for path in sorted((Path(__file__).parent / "histories").glob("*.json"))
}


async def load_history(raw: dict[str, Any]) -> tuple[InMemoryStorageBackend, str, dict[str, Any]]:
    """Store the recorded events as a suspended run that is due now."""
    events = [Event.from_dict(e) for e in raw["events"]]
    started = events[0]
    assert started.type == EventType.WORKFLOW_STARTED
    run = WorkflowRun(
        run_id=started.run_id,
        workflow_name=raw["workflow"],
        status=RunStatus.SUSPENDED,
        input_payload=json.dumps({"args": started.data["args"], "kwargs": started.data["kwargs"]}),
        wake_at=utcnow() - timedelta(seconds=1),
        last_sequence=events[-1].sequence,
    )
    storage = InMemoryStorageBackend()
    await storage.create_run(run, events)
    return storage, run.run_id, raw["expect"]


@pytest.mark.parametrize("name", sorted(HISTORIES))
async def test_golden_history_replays(name: str) -> None:
    storage, run_id, expect = await load_history(HISTORIES[name])
    recorded = len(await storage.get_events(run_id))

    await resume_local(run_id, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=10)

    assert run.status == expect["status"], run.error
    if "result" in expect:
        assert run.result == expect["result"]
    for fragment in expect.get("error_contains", []):
        assert fragment in (run.error or ""), run.error
    events = await storage.get_events(run_id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    # Replay re-executes nothing that was recorded: no recorded step completes twice.
    completions = [e.data["step_id"] for e in events if e.type == EventType.STEP_COMPLETED]
    assert len(completions) == len(set(completions))
    assert len(events) > recorded


def test_every_golden_history_is_tested() -> None:
    assert set(HISTORIES) >= {
        "order_with_gather_and_sleep",
        "retries_exhausted_then_fallback",
        "changed_code_is_non_deterministic",
    }
