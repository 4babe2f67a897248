"""The lines a run's life writes: one per lifecycle event (started, suspended and why,
resumed, completed, failed, cancelled, continued as new, a step retrying), each with
the run's context, never repeated by replay; and how pyworkflow's logging behaves
before and after an application configures it (no DEBUG noise, no global patcher,
the application's sinks kept, a bridge to the standard ``logging`` module).

The runs are real (SQLite on disk, the local runtime); the crash-recovery case with a
killed process is ``tests/integration/test_crash_recovery.py``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

import pyworkflow
from pyworkflow import (
    FatalError,
    RetryableError,
    configure_logging,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.observability import forward_to_logging, lifecycle

LIFECYCLE = "pyworkflow.observability.lifecycle"


@pytest.fixture(autouse=True)
def _restore_sinks() -> Iterator[None]:
    yield
    logger.remove()  # closes the files tests opened
    logger.add(sys.stderr)


_attempts: Counter[str] = Counter()


@step(name="lc_flaky", max_retries=2, retry_delay=0.3)
async def flaky(key: str) -> str:
    _attempts[key] += 1
    if _attempts[key] == 1:
        raise RetryableError("the first call times out")
    return key.upper()


@step(name="lc_final", max_retries=0)
async def final(key: str) -> str:
    return key + "!"


@workflow(name="lc_drip")
async def drip(key: str) -> str:
    first = await flaky(key)
    await sleep(0.3)
    return await final(first)


@step(name="lc_broken", max_retries=0)
async def broken() -> None:
    raise FatalError("card declined")


@workflow(name="lc_doomed")
async def doomed() -> None:
    await broken()


def _json_lines(path: Path) -> list[dict[str, Any]]:
    logger.complete()
    return [json.loads(line)["record"] for line in path.read_text().splitlines() if line]


async def test_each_lifecycle_event_is_one_line_with_the_run_context(tmp_path: Path) -> None:
    """A step that fails once (retried after a durable delay), then a sleep: every event
    of the run's life is one line, with run_id and workflow_name (and step_id, step_name
    and attempt on step lines), though the workflow replays after each wake-up."""
    pyworkflow.configure(storage=f"sqlite:///{tmp_path}/wf.db", timer_poll_interval=0.05)
    log_file = tmp_path / "workflow.log"
    configure_logging(level="INFO", log_file=str(log_file), json_logs=True, show_context=True)
    run_id = await start(drip, "a")
    run = await wait_for_run(run_id, timeout=20)
    assert run.status == "completed"

    records = [r for r in _json_lines(log_file) if r["name"] == LIFECYCLE]
    assert all(r["extra"]["run_id"] == run_id for r in records)
    assert all(r["extra"]["workflow_name"] == "lc_drip" for r in records)
    said = [(r["level"]["name"], r["message"].split(" (")[0].split(":")[0]) for r in records]
    assert said == [
        ("INFO", f"run {run_id} of workflow lc_drip started"),
        ("WARNING", "step lc_flaky of run " + run_id + " attempt 1 failed"),
        ("INFO", f"run {run_id} suspended"),
        ("INFO", f"run {run_id} resumed"),
        ("INFO", f"run {run_id} suspended"),
        ("INFO", f"run {run_id} resumed"),
        ("INFO", f"run {run_id} completed"),
    ]
    retry = records[1]
    assert retry["extra"]["step_name"] == "lc_flaky"
    assert retry["extra"]["step_id"] == "step:lc_flaky#1"
    assert retry["extra"]["attempt"] == 1
    assert "the first call times out" in retry["message"]
    reasons = [r["extra"]["reason"] for r in records if "suspended" in r["message"]]
    assert reasons[0].startswith("retry of") and reasons[1].startswith("sleep")


async def test_a_failed_run_is_one_warning_with_the_error(tmp_path: Path) -> None:
    pyworkflow.configure(storage=f"sqlite:///{tmp_path}/wf.db")
    log_file = tmp_path / "workflow.log"
    configure_logging(level="WARNING", log_file=str(log_file), json_logs=True, stderr=False)
    run_id = await start(doomed)
    assert (await wait_for_run(run_id, timeout=10)).status == "failed"

    records = _json_lines(log_file)
    assert [r["message"] for r in records if r["name"] == LIFECYCLE] == [
        f"step lc_broken of run {run_id} failed for good (attempt 1): FatalError: card declined",
        f"run {run_id} failed: FatalError: card declined",
    ]
    assert all(r["level"]["name"] == "WARNING" for r in records)
    assert records[-1]["extra"]["error"] == "FatalError: card declined"


async def test_timer_lateness_and_step_attempts_reach_observers(tmp_path: Path) -> None:
    pyworkflow.configure(storage=f"sqlite:///{tmp_path}/wf.db", timer_poll_interval=0.05)
    seen: dict[str, list[Any]] = {"timers": [], "attempts": [], "events": []}

    class Recorder(lifecycle.Observer):
        def timer_fired(self, run: lifecycle.RunRef, lateness: float) -> None:
            seen["timers"].append((run.workflow_name, lateness))

        def step_attempt(self, attempt: lifecycle.StepAttempt) -> None:
            seen["attempts"].append((attempt.step_name, attempt.attempt, attempt.status))

        def run_events(self, run: lifecycle.RunRef, events: Any) -> None:
            seen["events"].extend(event.type.value for event in events)

    recorder = Recorder()
    lifecycle.add_observer(recorder)
    try:
        run_id = await start(drip, "b")
        assert (await wait_for_run(run_id, timeout=20)).status == "completed"
    finally:
        lifecycle.remove_observer(recorder)
    assert seen["attempts"] == [
        ("lc_flaky", 1, "failed"),
        ("lc_flaky", 2, "completed"),
        ("lc_final", 1, "completed"),
    ]
    assert [name for name, _ in seen["timers"]] == ["lc_drip", "lc_drip"]  # retry, sleep
    assert all(0 <= lateness < 5 for _, lateness in seen["timers"])
    # Every event of the run, each told once (replay after each wake-up told none again).
    assert Counter(seen["events"])["step.completed"] == 2
    assert Counter(seen["events"])["workflow.started"] == 1


def test_before_any_configuration_only_warnings_reach_stderr(tmp_path: Path) -> None:
    """An application that configures nothing sees pyworkflow's warnings on stderr and
    no DEBUG or INFO noise; its own patcher (set before importing pyworkflow) still
    applies to its own records."""
    script = textwrap.dedent(
        """
        import asyncio
        from loguru import logger
        logger.configure(patcher=lambda record: record["extra"].update(app="mine"))
        import pyworkflow
        from pyworkflow import RetryableError, start, step, wait_for_run, workflow

        calls = []

        @step(max_retries=1, retry_delay=0)
        async def shaky():
            calls.append(1)
            if len(calls) == 1:
                raise RetryableError("flaky upstream")

        @workflow()
        async def job():
            await shaky()

        async def main():
            pyworkflow.configure(storage="sqlite:///wf.db")
            run_id = await start(job)
            await wait_for_run(run_id, timeout=10)
            logger.bind().info("app line")

        asyncio.run(main())
        """
    )
    app = tmp_path / "app.py"
    app.write_text(script)
    done = subprocess.run(
        [sys.executable, "-c", f"import runpy; runpy.run_path({str(app)!r}, run_name='__main__')"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "LOGURU_FORMAT": "{level}|{message}|{extra}"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    ours = [line for line in lines if "app line" not in line]
    assert len(ours) == 1 and ours[0].startswith("WARNING|step shaky of run")
    assert "flaky upstream" in ours[0]
    assert not any(line.startswith(("DEBUG", "INFO|run")) for line in lines)
    app_line = next(line for line in lines if "app line" in line)
    assert "'app': 'mine'" in app_line  # the application's patcher is still its own


async def test_configure_logging_keeps_the_applications_sinks(tmp_path: Path) -> None:
    pyworkflow.configure(storage=f"sqlite:///{tmp_path}/wf.db")
    mine: list[str] = []
    sink = logger.add(lambda message: mine.append(message.record["message"]), level="INFO")
    configure_logging(level="INFO", log_file=str(tmp_path / "a.log"), stderr=False)
    configure_logging(level="INFO", log_file=str(tmp_path / "b.log"), stderr=False)
    run_id = await start(doomed)
    await wait_for_run(run_id, timeout=10)
    logger.remove(sink)
    assert f"run {run_id} failed: FatalError: card declined" in mine
    logger.complete()
    # The second call replaced the first one's file sink: a.log saw nothing of this run.
    assert run_id not in (tmp_path / "a.log").read_text()
    assert f"run {run_id} failed" in (tmp_path / "b.log").read_text()


async def test_the_standard_logging_bridge(tmp_path: Path) -> None:
    pyworkflow.configure(storage=f"sqlite:///{tmp_path}/wf.db")
    got: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record)

    handler = Keep()
    std = logging.getLogger("pyworkflow")
    std.addHandler(handler)
    std.setLevel(logging.INFO)
    sink = forward_to_logging("INFO")
    try:
        run_id = await start(doomed)
        await wait_for_run(run_id, timeout=10)
    finally:
        logger.remove(sink)
        std.removeHandler(handler)
    ended = [r for r in got if r.getMessage() == f"run {run_id} failed: FatalError: card declined"]
    assert len(ended) == 1
    record = ended[0]
    assert record.levelno == logging.WARNING
    assert record.name == LIFECYCLE
    assert (record.run_id, record.workflow_name) == (run_id, "lc_doomed")  # type: ignore[attr-defined]
    started = [r for r in got if r.getMessage().endswith("started")]
    assert [r.levelno for r in started] == [logging.INFO]
