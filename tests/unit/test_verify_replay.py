"""Replay-only verification and ``patched()``, in-process on real runs (SQLite, the
local runtime): a deploy is simulated by pointing a workflow's name at new code (the
registry entry), as a new process with the edited module would. The CLI, as a user meets
it, is ``tests/cli/test_verify.py``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pyworkflow
from pyworkflow import (
    FatalError,
    SerializationError,
    get_workflow_events,
    hook,
    patched,
    sleep,
    start,
    start_child_workflow,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.core import registry
from pyworkflow.engine.history_file import dump_history, load_history
from pyworkflow.testing import assert_replays, replay_history, verify_histories

ran: Counter[str] = Counter()


@step(name="vr_a")
async def a(x: int) -> int:
    ran["a"] += 1
    return x + 1


@step(name="vr_b")
async def b(x: int) -> int:
    ran["b"] += 1
    return x * 2


@step(name="vr_fraud")
async def fraud(x: int) -> bool:
    ran["fraud"] += 1
    return True


@step(name="vr_doomed", max_retries=0)
async def doomed() -> None:
    raise FatalError("card declined")


@workflow(name="vr_child")
async def child(x: int) -> int:
    await sleep("1h")
    return x


@pytest.fixture(autouse=True)
def _storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pyworkflow.configure(storage=f"sqlite:///{tmp_path}/wf.db", timer_poll_interval=0.05)
    monkeypatch.setattr(registry, "_workflows", dict(registry._workflows))
    ran.clear()


async def _suspended(run_id: str) -> None:
    for _ in range(200):
        run = await pyworkflow.get_workflow_run(run_id)
        if run is not None and run.status.value == "suspended":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {run_id} never suspended")


def _swap(name: str, new_func: Callable[..., Any]) -> None:
    """Point workflow ``name`` at ``new_func`` (the edited module's function)."""
    registry._workflows[name] = dataclasses.replace(registry._workflows[name], func=new_func)


# -- patched() on the engine -----------------------------------------------------------


@workflow(name="vr_order")
async def order(x: int) -> int:
    first = await a(x)
    await sleep(0.3)
    return await b(first)


async def order_v2(x: int) -> int:
    first = await a(x)
    if patched("fraud-check"):  # inserted before the sleep the old runs recorded
        await fraud(first)
    await sleep(0.3)
    if patched("fraud-check"):  # asked again: the same answer, recorded once
        await fraud(first)
    return await b(first)


async def test_patched_keeps_old_runs_on_the_old_path_and_new_runs_on_the_new(
    tmp_path: Path,
) -> None:
    old = await start(order, 1)
    await _suspended(old)
    _swap("vr_order", order_v2)  # deployed while the old run sleeps
    assert (await wait_for_run(old, timeout=10)).result == 4
    assert ran["fraud"] == 0  # its history passed the patch point without it: old path

    new = await pyworkflow.start_by_name("vr_order", args=[2])  # by name: the deployed code
    assert (await wait_for_run(new, timeout=10)).result == 6
    assert ran["fraud"] == 2  # both patched() calls said yes
    kinds = [e.type.value for e in await get_workflow_events(new)]
    assert kinds.count("patch.applied") == 1
    # Both replay against the new code: the old one on the old path, as verify reports.
    report = await verify_histories(statuses=["completed"])
    assert report.ok, [v.problem for v in report.verdicts]
    assert report.old_paths() == {"fraud-check": 1}


async def test_patched_outside_a_durable_run_is_the_new_path() -> None:
    assert patched("anything") is True
    with pytest.raises(ValueError, match="patch id"):
        patched("no spaces allowed")
    with pytest.raises(ValueError, match="patch id"):
        patched("")


# -- what replay-only verification sees ---------------------------------------------------


@workflow(name="vr_fan")
async def fan(n: int) -> list[int]:
    values = await asyncio.gather(*(a(i) for i in range(n)))
    approval = await hook("vr_approval", timeout="1h")
    return [*values, approval["ok"]]


async def test_gather_and_a_waiting_hook_replay(tmp_path: Path) -> None:
    run_id = await start(fan, 3)
    await _suspended(run_id)
    executed = dict(ran)
    report = await verify_histories()
    assert report.ok and [v.operations for v in report.verdicts] == [4]
    assert dict(ran) == executed  # no step body ran

    async def fan_v2(n: int) -> list[int]:
        values = await asyncio.gather(*(a(i) for i in range(n - 1)))  # one fewer
        approval = await hook("vr_approval", timeout="1h")
        return [*values, approval["ok"]]

    _swap("vr_fan", fan_v2)
    (verdict,) = (await verify_histories()).verdicts
    assert verdict.divergence is not None
    assert (verdict.divergence.recorded, verdict.divergence.requested) == (
        "step:vr_a#3",
        "hook:vr_approval#1",
    )


@workflow(name="vr_parent")
async def parent(x: int) -> int:
    result: int = await start_child_workflow(child, x)
    return result


async def test_a_parent_waiting_for_its_child_replays_without_reading_storage() -> None:
    run_id = await start(parent, 5)
    await _suspended(run_id)
    report = await verify_histories(workflow="vr_parent")
    assert report.ok and len(report.verdicts) == 1


@workflow(name="vr_fails")
async def fails() -> None:
    await a(1)
    await doomed()


async def test_a_failed_run_replays_its_failure_and_new_errors_are_divergences() -> None:
    failed = await start(fails)
    assert (await wait_for_run(failed, timeout=10)).status.value == "failed"
    assert (await verify_histories(statuses=["failed"])).ok

    sleeping = await start(order, 1)
    await _suspended(sleeping)

    async def broken(x: int) -> int:
        first = await a(x)
        return first + "oops"  # type: ignore[operator] - the new code's bug

    _swap("vr_order", broken)
    (verdict,) = (await verify_histories(run_ids=[sleeping])).verdicts
    assert verdict.problem is not None and "raised TypeError" in verdict.problem

    async def returns_early(x: int) -> int:
        return await a(x)

    _swap("vr_order", returns_early)
    (verdict,) = (await verify_histories(run_ids=[sleeping])).verdicts
    assert verdict.divergence is not None
    assert verdict.divergence.recorded == "sleep:sleep#1" and verdict.divergence.requested is None
    assert "the code returned" in verdict.divergence.message


async def test_a_workflow_missing_from_the_code_is_reported() -> None:
    run_id = await start(order, 1)
    await _suspended(run_id)
    del registry._workflows["vr_order"]
    (verdict,) = (await verify_histories(run_ids=[run_id])).verdicts
    assert not verdict.ok and "'vr_order' is not in the code" in (verdict.error or "")
    with pytest.raises(LookupError, match="no run 'run_missing'"):
        await verify_histories(run_ids=["run_missing"])


# -- history files ----------------------------------------------------------------------


async def test_history_files_round_trip_and_bad_ones_are_refused(tmp_path: Path) -> None:
    run_id = await start(order, 1)
    await _suspended(run_id)
    storage = pyworkflow.get_storage()
    run, events = await storage.get_run(run_id), await storage.get_events(run_id)
    assert run is not None
    path = tmp_path / "order.json"
    path.write_text(dump_history(run, events))
    loaded_run, loaded_events = load_history(path)
    assert loaded_run == run and loaded_events == events
    assert (await replay_history(path)).ok
    assert_replays(path)  # from an async test too

    document = json.loads(path.read_text())
    bad = {
        "wrong format": ({**document, "format": "other"}, "format"),
        "no events": ({k: v for k, v in document.items() if k != "events"}, "events"),
        "a gap": ({**document, "events": document["events"][1:]}, "sequences must run"),
        "unknown type": (
            {**document, "events": [{**document["events"][0], "type": "nope"}]},
            "unknown event type",
        ),
    }
    for what, (doc, message) in bad.items():
        with pytest.raises(SerializationError, match=message):
            load_history(doc)
        (tmp_path / "bad.json").write_text(json.dumps(doc))
        with pytest.raises(SerializationError, match="bad.json"):
            load_history(tmp_path / "bad.json")
        assert what
    with pytest.raises(SerializationError, match="not a pyworkflow history"):
        load_history("{not json")


async def test_an_older_history_without_sleep_durations_replays_strictly(
    tmp_path: Path,
) -> None:
    """Histories written before sleeps recorded their duration (as an upgrade finds
    them) replay, strict included: nothing to compare."""
    run_id = await start(order, 1)
    await _suspended(run_id)
    storage = pyworkflow.get_storage()
    run, events = await storage.get_run(run_id), await storage.get_events(run_id)
    assert run is not None
    for event in events:
        event.data.pop("duration_seconds", None)
    path = tmp_path / "old.json"
    path.write_text(dump_history(run, events))
    assert (await replay_history(path, strict=True)).ok
