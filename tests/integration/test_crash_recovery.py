"""Crash tests on the embedded default: real processes, SIGKILL, SQLite on disk.

A child process runs a workflow and is killed with SIGKILL; a *new* process finds the
run in storage and finishes it. Steps append to a ledger file so the tests can tell
real executions from recorded completions.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.child_output import read_line

APP = Path(__file__).with_name("crash_app.py")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return {
        **os.environ,
        "CRASH_LEDGER": str(tmp_path / "ledger.txt"),
        "PYTHONPATH": root,
        **extra,
    }


async def _spawn(tmp_path: Path, *args: str, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(APP),
        *args,
        cwd=tmp_path,
        env=_env(tmp_path, **env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _kill(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGKILL)
    await proc.wait()  # reap it, so its pid is really gone


def _events(db: Path, run_id: str) -> list[tuple[int, str, str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT sequence, type, data FROM events WHERE run_id = ? ORDER BY sequence", (run_id,)
        ).fetchall()
    return [(int(s), str(t), str(d)) for s, t, d in rows]


def _completed_steps(db: Path, run_id: str) -> Counter[str]:
    import json

    return Counter(
        json.loads(data)["step_id"]
        for _, type_, data in _events(db, run_id)
        if type_ == "step.completed"
    )


def _ledger(tmp_path: Path) -> Counter[str]:
    path = tmp_path / "ledger.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(line.split()[0] for line in lines)


async def _finish_in_new_process(tmp_path: Path, db: Path, run_id: str) -> None:
    proc = await _spawn(tmp_path, "wait", str(db), run_id)
    line = await read_line(proc, "DONE", limit=60)
    await proc.wait()
    assert line == "DONE completed"


async def test_sigkill_during_sleep_finishes_in_new_process(tmp_path: Path) -> None:
    db = tmp_path / "wf.db"
    child = await _spawn(tmp_path, "start", str(db), "1.0")
    run_id = (await read_line(child, "RUN")).split()[1]
    await _kill(child)  # killed while the run sleeps

    await _finish_in_new_process(tmp_path, db, run_id)

    assert _ledger(tmp_path) == Counter({"step1": 1, "step2": 1, "step3": 1})
    assert set(_completed_steps(db, run_id).values()) == {1}
    sequences = [s for s, _, _ in _events(db, run_id)]
    assert sequences == list(range(1, len(sequences) + 1))


async def test_sigkill_during_step_finishes_without_rerunning_completed_steps(
    tmp_path: Path,
) -> None:
    db = tmp_path / "wf.db"
    child = await _spawn(tmp_path, "start", str(db), "0", CRASH_BLOCK_STEP2="1")
    # start() runs inline, so the child blocks inside step2 before it could print the id.
    await read_line(child, "BLOCKING")
    with sqlite3.connect(db) as conn:
        (run_id,) = conn.execute("SELECT run_id FROM runs").fetchone()
        (status,) = conn.execute("SELECT status FROM runs").fetchone()
    assert status == "running"
    await _kill(child)

    await _finish_in_new_process(tmp_path, db, run_id)

    ledger = _ledger(tmp_path)
    assert ledger["step1"] == 1, "a completed step ran again after recovery"
    assert ledger["step2"] == 2  # interrupted attempt + the recovered one (at least once)
    assert ledger["step3"] == 1
    completions = _completed_steps(db, run_id)
    assert completions == Counter(
        {"step:crash_step1#1": 1, "step:crash_step2#1": 1, "step:crash_step3#1": 1}
    )
    types = [t for _, t, _ in _events(db, run_id)]
    assert "workflow.interrupted" in types
    assert types[-1] == "workflow.completed"


@pytest.mark.parametrize("racers", [2, 3])
async def test_processes_racing_to_resume_record_each_step_once(
    tmp_path: Path, racers: int
) -> None:
    db = tmp_path / "wf.db"
    child = await _spawn(tmp_path, "start", str(db), "0.5")
    run_id = (await read_line(child, "RUN")).split()[1]
    await _kill(child)
    await asyncio.sleep(0.6)  # the sleep is now due: every racer wants to resume it

    procs = [await _spawn(tmp_path, "resume", str(db), run_id) for _ in range(racers)]
    lines = [await read_line(p, "DONE", limit=60) for p in procs]
    for p in procs:
        await p.wait()

    assert lines == ["DONE completed"] * racers
    completions = _completed_steps(db, run_id)
    assert completions == Counter(
        {"step:crash_step1#1": 1, "step:crash_step2#1": 1, "step:crash_step3#1": 1}
    )
    types = [t for _, t, _ in _events(db, run_id)]
    assert types.count("workflow.completed") == 1
    sequences = [s for s, _, _ in _events(db, run_id)]
    assert sequences == list(range(1, len(sequences) + 1))


async def test_sigkill_while_parent_waits_for_child(tmp_path: Path) -> None:
    """Kill the process while the child sleeps and the parent waits on it: a new process
    finishes both; the child is not started twice; the step context survives."""
    db = tmp_path / "wf.db"
    child = await _spawn(tmp_path, "parent", str(db))
    run_id = (await read_line(child, "RUN")).split()[1]
    await _kill(child)

    proc = await _spawn(tmp_path, "wait", str(db), run_id)
    assert await read_line(proc, "DONE", limit=60) == "DONE completed"
    await proc.wait()

    with sqlite3.connect(db) as conn:
        (result,) = conn.execute(
            "SELECT result_payload FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        children = conn.execute(
            "SELECT status FROM runs WHERE parent_run_id = ?", (run_id,)
        ).fetchall()
    import json

    assert json.loads(result) == {"before": "acme:before", "child": 40, "after": "acme:after"}
    assert children == [("completed",)]
    ledger = _ledger(tmp_path)
    assert ledger["step1"] == 1 and ledger["tenant"] == 2


async def test_sigkill_in_the_middle_of_a_continue_as_new_chain(tmp_path: Path) -> None:
    db = tmp_path / "wf.db"
    child = await _spawn(tmp_path, "chain", str(db))
    run_id = (await read_line(child, "RUN")).split()[1]
    await asyncio.sleep(0.8)  # a few links in
    await _kill(child)

    proc = await _spawn(tmp_path, "wait-chain", str(db), run_id)
    assert await read_line(proc, "DONE", limit=60) == "DONE completed 6 5"
    await proc.wait()
    assert _ledger(tmp_path)["step1"] == 6  # one step per link, none repeated


async def test_hook_payload_posted_from_another_process(tmp_path: Path) -> None:
    """Process A holds a run suspended on a hook; process B posts the payload; the run
    completes with it. Then A is killed and a third process sees the completed run."""
    db = tmp_path / "wf.db"
    holder = await _spawn(tmp_path, "hook", str(db))
    token = (await read_line(holder, "TOKEN")).split()[1]
    run_id = (await read_line(holder, "RUN")).split()[1]

    poster = await _spawn(tmp_path, "deliver", str(db), token)
    assert await read_line(poster, "DELIVERED") == "DELIVERED"
    await poster.wait()

    waiter = await _spawn(tmp_path, "wait", str(db), run_id)
    assert await read_line(waiter, "DONE", limit=60) == "DONE completed"
    await waiter.wait()
    await _kill(holder)
    with sqlite3.connect(db) as conn:
        (result,) = conn.execute(
            "SELECT result_payload FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
    assert result == '"ORD-9: approved"'
    assert _ledger(tmp_path)["step1"] == 1


async def test_cancel_a_run_whose_process_was_killed(tmp_path: Path) -> None:
    """The process holding a sleeping run dies; a new process cancels the run: it is
    resumed there, sees CancellationError at its sleep and ends cancelled."""
    db = tmp_path / "wf.db"
    child = await _spawn(tmp_path, "start", str(db), "600")
    run_id = (await read_line(child, "RUN")).split()[1]
    await _kill(child)

    proc = await _spawn(tmp_path, "cancel", str(db), run_id)
    assert await read_line(proc, "DONE", limit=60) == "DONE cancelled"
    await proc.wait()
    assert _ledger(tmp_path) == Counter({"step1": 1})  # nothing after the sleep ran
    types = [t for _, t, _ in _events(db, run_id)]
    assert types[-2:] == ["cancellation.requested", "workflow.cancelled"]


async def test_hook_payload_after_the_waiting_process_was_killed(tmp_path: Path) -> None:
    """The process whose run waits on a hook is SIGKILLed; a new process delivers the
    payload and finishes the run; the step before the hook is not run again."""
    db = tmp_path / "wf.db"
    holder = await _spawn(tmp_path, "hook", str(db))
    token = (await read_line(holder, "TOKEN")).split()[1]
    run_id = (await read_line(holder, "RUN")).split()[1]
    await _kill(holder)

    poster = await _spawn(tmp_path, "deliver", str(db), token)
    assert await read_line(poster, "DELIVERED") == "DELIVERED"
    await poster.wait()
    waiter = await _spawn(tmp_path, "wait", str(db), run_id)
    assert await read_line(waiter, "DONE", limit=60) == "DONE completed"
    await waiter.wait()
    assert _ledger(tmp_path)["step1"] == 1
    types = [t for _, t, _ in _events(db, run_id)]
    assert types.count("hook.created") == 1 and types.count("hook.received") == 1


async def test_lifecycle_log_lines_are_written_once_across_a_crash(tmp_path: Path) -> None:
    """The killed process and the one that recovers its run append JSON lines to one
    file: each event of the run's life is one line with the run's context (the
    recovering process replays the run but writes no line for what was stored before)."""
    import json

    db, log = tmp_path / "wf.db", tmp_path / "workflow.log"
    child = await _spawn(
        tmp_path, "start", str(db), "0", CRASH_BLOCK_STEP2="1", CRASH_LOG_FILE=str(log)
    )
    await read_line(child, "BLOCKING")  # step1 recorded, inside step2
    with sqlite3.connect(db) as conn:
        (run_id,) = conn.execute("SELECT run_id FROM runs").fetchone()
    await _kill(child)
    proc = await _spawn(
        tmp_path, "wait", str(db), run_id, CRASH_LOG_FILE=str(log), CRASH_METRICS="1"
    )
    assert await read_line(proc, "DONE", limit=60) == "DONE completed"
    counted = json.loads((await read_line(proc, "METRICS")).removeprefix("METRICS "))
    await proc.wait()
    # The recovering process's default metrics (on: prometheus_client is installed) count
    # what it stored: the recovery, the two steps it ran and the completion; not the
    # start nor step1, which the killed process stored and it only replayed.
    wf = "('workflow', 'crash_order')"
    assert counted == {
        f"pyworkflow_runs_recovered_total[{wf}]": 1.0,
        f"pyworkflow_steps_total[('status', 'completed'), ('step', 'crash_step2'), {wf}]": 1.0,
        f"pyworkflow_steps_total[('status', 'completed'), ('step', 'crash_step3'), {wf}]": 1.0,
        f"pyworkflow_runs_finished_total[('status', 'completed'), {wf}]": 1.0,
    }

    records = [json.loads(line)["record"] for line in log.read_text().splitlines() if line]
    ours = [r for r in records if r["name"] == "pyworkflow.observability.lifecycle"]
    assert {(r["extra"]["run_id"], r["extra"]["workflow_name"]) for r in ours} == {
        (run_id, "crash_order")
    }
    events = [r["message"].removeprefix(f"run {run_id} ").split(" ")[0] for r in ours]
    assert events == [
        "of",  # started, in the first process
        "recovered",  # the second process takes the dead process's run over
        "resumed",
        "completed",
    ]
    assert [r["process"]["id"] for r in ours].count(child.pid) == 1
    assert ours[1]["extra"]["recovery_attempt"] == 1
