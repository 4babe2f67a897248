"""``pyworkflow runs``: every command and option through Click's ``CliRunner``, then the
installed ``pyworkflow`` script against SQLite and PostgreSQL, and ``runs tail`` in a
real terminal (tmux)."""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner, Result

import pyworkflow
from pyworkflow.cli import main
from pyworkflow.runtime import get_runtime
from pyworkflow.storage.config import storage_from_url
from pyworkflow.storage.schemas import RunStatus, WorkflowRun
from tests.cli.flows_source import write_project
from tests.services import require_service

SCRIPT = Path(sys.executable).parent / "pyworkflow"


# -- in-process: fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def flows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The test workflows, imported once into this process (names are global)."""
    directory = write_project(tmp_path_factory.mktemp("flows"))
    sys.path.insert(0, str(directory))
    try:
        yield importlib.import_module("clirun_flows")
    finally:
        sys.path.remove(str(directory))


@pytest.fixture(autouse=True)
def _wide_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as wide as a terminal's (the project directory and configuration are made
    fresh by ``tests/cli/conftest.py``)."""
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def cli(db: str, *args: str) -> Result:
    """``pyworkflow --storage DB ARGS`` in this process."""
    return CliRunner().invoke(main, ["--storage", db, *args], catch_exceptions=False)


def cli_json(db: str, *args: str) -> Any:
    result = cli(db, "-o", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def run_flow(db: str, flow: Any, *args: Any) -> str:
    """Start ``flow`` on ``db`` and wait until its run (and continuations) ended."""

    async def go() -> str:
        pyworkflow.configure(storage=db)
        try:
            run_id: str = await pyworkflow.start(flow, *args)
            current = run_id
            while True:
                run = await pyworkflow.wait_for_run(current, timeout=30)
                if run.continued_to_run_id is None:
                    return run_id
                current = run.continued_to_run_id
        finally:
            await get_runtime("local").shutdown()
            await pyworkflow.get_storage().close()

    return asyncio.run(go())


def store_run(db: str, run: WorkflowRun) -> None:
    """Store a run record directly (a run whose code no process here has)."""

    async def go() -> None:
        storage = storage_from_url(db)
        await storage.connect()
        try:
            await storage.create_run(run)
        finally:
            await storage.close()

    asyncio.run(go())


def foreign_run(run_id: str, **fields: Any) -> WorkflowRun:
    return WorkflowRun(
        run_id=run_id,
        workflow_name="clirun_not_here",
        status=fields.pop("status", RunStatus.SUSPENDED),
        input_payload=json.dumps({"args": [1, "two"], "kwargs": {"k": True}}),
        tags=fields.pop("tags", ["a", "b"]),
        **fields,
    )


# -- runs list ------------------------------------------------------------------------------------


def test_list_shows_runs_newest_first_in_every_format(db: str, flows: ModuleType) -> None:
    first = run_flow(db, flows.clirun_kid, 1)
    second = run_flow(db, flows.clirun_pipeline, "a")

    data = cli_json(db, "runs", "list")
    assert [r["run_id"] for r in data["runs"]] == [second, first]
    assert data["next_cursor"] is None
    assert data["runs"][0]["workflow_name"] == "clirun_pipeline"
    assert data["runs"][0]["status"] == "completed"
    assert data["runs"][0]["tags"] == ["cli-test"]
    assert data["runs"][0]["duration_seconds"] > 0

    table = cli(db, "runs", "list")
    assert table.exit_code == 0
    assert first in table.output and second in table.output
    assert "clirun_pipeline" in table.output and "completed" in table.output

    plain = cli(db, "-o", "plain", "runs", "list").output.splitlines()
    assert [line.split("\t")[0] for line in plain] == [second, first]


def test_list_filters_by_status_workflow_tag_and_since(db: str, flows: ModuleType) -> None:
    ok = run_flow(db, flows.clirun_pipeline, "b")
    bad = run_flow(db, flows.clirun_fails)
    old = foreign_run("run_old", created_at=datetime.now(UTC) - timedelta(days=3))
    store_run(db, old)

    def ids(*args: str) -> list[str]:
        return [r["run_id"] for r in cli_json(db, "runs", "list", *args)["runs"]]

    assert ids("--status", "failed") == [bad]
    assert ids("--status", "completed") == [ok]
    assert ids("--workflow", "clirun_fails") == [bad]
    assert ids("--tag", "cli-test") == [ok]
    assert ids("--tag", "a") == ["run_old"]
    assert set(ids("--since", "1h")) == {ok, bad}
    assert set(ids("--since", "4d")) == {ok, bad, "run_old"}
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).replace(tzinfo=None).isoformat()
    assert set(ids("--since", two_days_ago)) == {ok, bad}  # naive ISO is UTC
    assert ids("--status", "failed", "--workflow", "clirun_pipeline") == []
    assert "no runs" in cli(db, "runs", "list", "--status", "cancelled").output


def test_list_pages_with_limit_and_cursor(db: str, flows: ModuleType) -> None:
    made = [run_flow(db, flows.clirun_kid, i) for i in range(5)]
    newest_first = list(reversed(made))

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        args = ["runs", "list", "--limit", "2"] + (["--cursor", cursor] if cursor else [])
        page = cli_json(db, *args)
        seen += [r["run_id"] for r in page["runs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == newest_first
    assert pages == 3

    table = cli(db, "runs", "list", "--limit", "2")
    assert "more: --cursor " in table.output


def test_list_refuses_bad_options_with_usage_errors(db: str) -> None:
    for args in (
        ["--since", "yesterday"],
        ["--cursor", "not-a-cursor"],
        ["--limit", "0"],
        ["--status", "sleeping"],
    ):
        result = CliRunner().invoke(main, ["--storage", db, "runs", "list", *args])
        assert result.exit_code == 2, (args, result.output)
    result = CliRunner().invoke(main, ["--storage", db, "runs", "list", "--since", "nope"])
    assert "neither an ISO 8601 time nor a duration" in result.output


# -- runs status ----------------------------------------------------------------------------------


def test_status_shows_the_runs_fields(db: str, flows: ModuleType) -> None:
    run_id = run_flow(db, flows.clirun_pipeline, "c")
    item = cli_json(db, "runs", "status", run_id)
    assert item["run_id"] == run_id
    assert item["status"] == "completed"
    assert item["workflow_name"] == "clirun_pipeline"
    assert item["args"] == ["c"] and item["kwargs"] == {}
    assert item["result"] == "C"
    assert item["error"] is None
    assert item["recovery_attempts"] == 0
    assert item["created_at"] and item["started_at"] and item["completed_at"]
    for key in ("wake_at", "lease_owner", "parent_run_id", "continued_to_run_id", "retry_of"):
        assert key in item
    assert item["events"] >= 8

    table = cli(db, "runs", "status", run_id).output
    assert "completed" in table and "recovery attempts" in table and "wake at" in table


def test_status_of_a_failed_and_of_a_suspended_run(db: str, flows: ModuleType) -> None:
    failed = run_flow(db, flows.clirun_fails)
    item = cli_json(db, "runs", "status", failed)
    assert item["status"] == "failed"
    assert "no way" in item["error"]

    wake = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    store_run(db, foreign_run("run_waiting", wake_at=wake, lease_owner="worker-9"))
    waiting = cli_json(db, "runs", "status", "run_waiting")
    assert waiting["status"] == "suspended"
    assert waiting["wake_at"] == wake.isoformat()
    assert waiting["lease_owner"] == "worker-9"


def test_status_of_an_unknown_run_is_one_line_and_exit_1(db: str) -> None:
    result = CliRunner().invoke(main, ["--storage", db, "runs", "status", "run_nope"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: no run with id 'run_nope'"


# -- runs events and logs -------------------------------------------------------------------------


def test_events_lists_the_log_with_summaries(db: str, flows: ModuleType) -> None:
    run_id = run_flow(db, flows.clirun_pipeline, "d")
    events = cli_json(db, "runs", "events", run_id)["events"]
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "workflow.started"
    assert events[-1]["type"] == "workflow.completed"
    failed = next(e for e in events if e["type"] == "step.failed")
    assert "error=RetryableError: first try fails" in failed["summary"]
    assert failed["data"]["error"]["message"] == "first try fails"  # full data in JSON
    assert "traceback" in failed["data"]["error"]

    after = cli_json(db, "runs", "events", run_id, "--after", "3")["events"]
    assert [e["sequence"] for e in after] == list(range(4, len(events) + 1))
    steps = cli_json(db, "runs", "events", run_id, "--type", "step")["events"]
    assert {e["type"] for e in steps} == {
        "step.started",
        "step.failed",
        "step.retrying",
        "step.completed",
    }
    exact = cli_json(
        db, "runs", "events", run_id, "--type", "sleep.started", "--type", "step.failed"
    )
    assert [e["type"] for e in exact["events"]] == ["step.failed", "sleep.started"]

    table = cli(db, "runs", "events", run_id).output
    assert "workflow.started" in table and "step.retrying" in table
    plain = cli(db, "-o", "plain", "runs", "events", run_id).output.splitlines()
    assert plain[0].split("\t")[:2] == ["1", "workflow.started"]


def test_logs_tell_the_runs_story_with_durations(db: str, flows: ModuleType) -> None:
    run_id = run_flow(db, flows.clirun_pipeline, "e")
    timeline = cli_json(db, "runs", "logs", run_id)["timeline"]
    messages = [t["message"] for t in timeline]
    assert messages[0] == "started clirun_pipeline(e)"
    assert any(
        m.startswith("step clirun_flaky failed after")
        and "(attempt 1): RetryableError: first try fails; will retry" in m
        for m in messages
    )
    assert any(m.startswith("step clirun_flaky retrying in 200ms") for m in messages)
    assert any(m.startswith("step clirun_flaky completed in") for m in messages)
    assert any(m.startswith("sleep 200ms (until ") for m in messages)
    sleep_done = next(t for t in timeline if t["message"].startswith("sleep done after"))
    assert sleep_done["duration_seconds"] >= 0.2
    assert messages[-1].startswith("completed in ") and messages[-1].endswith(": E")
    assert [t["kind"] for t in timeline][-1] == "workflow"
    assert timeline[-1]["elapsed_seconds"] >= 0.4  # retry delay + sleep

    table = cli(db, "runs", "logs", run_id).output
    assert "clirun_flaky" in table and "sleep done after" in table


def test_logs_show_children_and_failures(db: str, flows: ModuleType) -> None:
    parent = run_flow(db, flows.clirun_parent, 2)
    messages = [t["message"] for t in cli_json(db, "runs", "logs", parent)["timeline"]]
    assert sum(m.startswith("child clirun_kid started: run_") for m in messages) == 2
    assert sum(m.startswith("child clirun_kid completed after") for m in messages) == 2
    assert messages[-1].endswith(": [0, 2]")

    failed = run_flow(db, flows.clirun_fails)
    messages = [t["message"] for t in cli_json(db, "runs", "logs", failed)["timeline"]]
    assert any(
        "step clirun_boom failed" in m and "(fatal): FatalError: no way" in m for m in messages
    )
    assert messages[-1].startswith("failed after ")


def test_logs_and_tail_show_hooks_and_log_messages_verbatim(db: str, flows: ModuleType) -> None:
    async def approve() -> str:
        pyworkflow.configure(storage=db)
        try:
            run_id: str = await pyworkflow.start(flows.clirun_gatekeeper, "card")
            for _ in range(600):  # the first hook expires, then the second is created
                if flows.TOKENS:
                    break
                await asyncio.sleep(0.05)
            await pyworkflow.resume_hook(flows.TOKENS.pop(), {"ok": True})
            await pyworkflow.wait_for_run(run_id, timeout=30)
            return run_id
        finally:
            await get_runtime("local").shutdown()
            await pyworkflow.get_storage().close()

    run_id = asyncio.run(approve())
    messages = [t["message"] for t in cli_json(db, "runs", "logs", run_id)["timeline"]]
    assert "[info] checking [card]" in messages
    assert "waiting for hook clirun_late (expires " in "\n".join(messages)
    assert any(m.startswith("hook clirun_late expired after") for m in messages)
    assert "waiting for hook clirun_gate" in messages
    assert any(m.startswith("hook clirun_gate received after") for m in messages)
    assert messages[-1].endswith(": answer True")

    # Tables print data as it is: brackets are not taken for Rich markup.
    assert "[info] checking [card]" in cli(db, "runs", "logs", run_id).output
    tail = cli(db, "runs", "tail", run_id).output
    assert "[info] checking [card]" in tail
    assert re.search(r"hook\s+clirun_gate\s+received", tail)


def test_events_and_logs_of_an_unknown_run_fail(db: str) -> None:
    for command in ("events", "logs", "tail", "children", "chain", "cancel", "retry"):
        result = CliRunner().invoke(main, ["--storage", db, "runs", command, "run_nope"])
        assert result.exit_code == 1, (command, result.output)
        assert "no run with id 'run_nope'" in result.output


# -- runs tail (finished runs here; live ones in the subprocess and tmux tests) -------------


def test_tail_of_an_ended_run_prints_its_events_and_exits(db: str, flows: ModuleType) -> None:
    run_id = run_flow(db, flows.clirun_pipeline, "f")
    count = len(cli_json(db, "runs", "events", run_id)["events"])

    lines = cli(db, "-o", "json", "runs", "tail", run_id, "--interval", "0.05").output
    events = [json.loads(line) for line in lines.splitlines()]
    assert [e["sequence"] for e in events] == list(range(1, count + 1))
    assert events[-1]["type"] == "workflow.completed"

    plain = cli(db, "-o", "plain", "runs", "tail", run_id).output.splitlines()
    assert len(plain) == count and plain[-1].split("\t")[1] == "workflow.completed"

    table = cli(db, "runs", "tail", run_id)
    assert table.exit_code == 0
    assert "step clirun_flaky completed in" in table.output
    assert re.search(r"clirun_flaky\s+completed\s+2", table.output)  # the live view
    assert f"run {run_id} completed after" in table.output


def test_tail_refuses_a_too_short_interval(db: str) -> None:
    result = CliRunner().invoke(main, ["--storage", db, "runs", "tail", "x", "--interval", "0"])
    assert result.exit_code == 2


# -- runs cancel ----------------------------------------------------------------------------------


def test_cancel_with_wait_runs_the_cleanup_when_the_code_is_here(
    db: str, flows: ModuleType
) -> None:
    async def start_sleeper() -> str:
        pyworkflow.configure(storage=db)
        try:
            run_id: str = await pyworkflow.start(flows.clirun_sleepy, 1, 3600)
            return run_id
        finally:
            await get_runtime("local").shutdown()
            await pyworkflow.get_storage().close()

    run_id = asyncio.run(start_sleeper())
    assert cli_json(db, "runs", "status", run_id)["status"] == "suspended"

    recorded = cli_json(db, "runs", "cancel", run_id, "--reason", "not needed")
    assert recorded["cancel_requested"] is True
    assert recorded["status"] == "suspended"  # no --wait: the serving process acts on it
    assert cli_json(db, "runs", "status", run_id)["lease_owner"] is None

    item = cli_json(db, "runs", "cancel", run_id, "--reason", "not needed", "--wait")
    assert item == {
        "run_id": run_id,
        "cancel_requested": True,
        "status": "cancelled",
        "cancel_reason": "not needed",
    }
    messages = [t["message"] for t in cli_json(db, "runs", "logs", run_id)["timeline"]]
    assert messages[-1].startswith("cancelled after") and messages[-1].endswith("not needed")

    again = cli_json(db, "runs", "cancel", run_id)  # already ended: nothing to do, exit 0
    assert again["cancel_requested"] is False and again["status"] == "cancelled"


def test_cancel_without_the_code_records_the_request(db: str) -> None:
    store_run(db, foreign_run("run_elsewhere"))
    item = cli_json(db, "runs", "cancel", "run_elsewhere", "--reason", "ops")
    assert item["cancel_requested"] is True
    assert item["status"] == "suspended"  # the process serving it acts on the request
    status = cli_json(db, "runs", "status", "run_elsewhere")
    assert status["cancel_requested_at"] is not None and status["cancel_reason"] == "ops"

    started = time.monotonic()
    result = CliRunner().invoke(
        main, ["--storage", db, "runs", "cancel", "run_elsewhere", "--wait", "--timeout", "0.5"]
    )
    assert time.monotonic() - started < 5
    assert result.exit_code == 1
    assert "has not ended within 0.5s (status suspended)" in result.output


# -- runs children and chain ----------------------------------------------------------------------


def test_children_lists_the_runs_a_parent_started(db: str, flows: ModuleType) -> None:
    parent = run_flow(db, flows.clirun_parent, 3)
    kids = cli_json(db, "runs", "children", parent)
    assert len(kids["runs"]) == 3 and kids["next_cursor"] is None
    assert {k["workflow_name"] for k in kids["runs"]} == {"clirun_kid"}
    assert {k["parent_run_id"] for k in kids["runs"]} == {parent}

    first = cli_json(db, "runs", "children", parent, "--limit", "2")
    assert len(first["runs"]) == 2 and first["next_cursor"]
    rest = cli_json(
        db, "runs", "children", parent, "--limit", "2", "--cursor", first["next_cursor"]
    )
    assert [k["run_id"] for k in first["runs"] + rest["runs"]] == [
        k["run_id"] for k in kids["runs"]
    ]
    assert cli_json(db, "runs", "children", kids["runs"][0]["run_id"])["runs"] == []
    assert "clirun_kid" in cli(db, "runs", "children", parent).output


def test_chain_lists_a_continue_as_new_chain_from_any_member(db: str, flows: ModuleType) -> None:
    first = run_flow(db, flows.clirun_counter, 0)
    chain = cli_json(db, "runs", "chain", first)["runs"]
    assert [r["position"] for r in chain] == [1, 2, 3]
    assert [r["status"] for r in chain] == ["continued_as_new", "continued_as_new", "completed"]
    assert [r["current"] for r in chain] == [True, False, False]
    middle = cli_json(db, "runs", "chain", chain[1]["run_id"])["runs"]
    assert [r["run_id"] for r in middle] == [r["run_id"] for r in chain]
    assert [r["current"] for r in middle] == [False, True, False]
    assert "continued_as_new" in cli(db, "runs", "chain", first).output


# -- runs retry ------------------------------------------------------------------------------------


def test_retry_starts_a_linked_run_with_the_same_input(db: str, flows: ModuleType) -> None:
    failed = run_flow(db, flows.clirun_kid, 21)
    item = cli_json(db, "runs", "retry", failed)
    new = item["run_id"]
    assert new != failed
    assert item["retry_of"] == failed
    assert item["status"] == "completed"  # the local runtime ran it here
    status = cli_json(db, "runs", "status", new)
    assert status["args"] == [21] and status["result"] == 42
    assert status["retry_of"] == failed
    assert status["tags"] == [f"retry-of:{failed}"]
    found = cli_json(db, "runs", "list", "--tag", f"retry-of:{failed}")["runs"]
    assert [r["run_id"] for r in found] == [new]
    assert f"(retry of {failed})" in cli_json(db, "runs", "logs", new)["timeline"][0]["message"]

    # A retry of the retry points at the run it retried, not at both.
    third = cli_json(db, "runs", "retry", new)
    assert cli_json(db, "runs", "status", third["run_id"])["tags"] == [f"retry-of:{new}"]


def test_retry_keeps_tags_and_skips_the_link_tag_when_full(db: str, flows: ModuleType) -> None:
    original = run_flow(db, flows.clirun_pipeline, "g")
    tags = cli_json(db, "runs", "status", cli_json(db, "runs", "retry", original)["run_id"])
    assert tags["tags"] == ["cli-test", f"retry-of:{original}"]

    full = foreign_run("run_full", tags=["x", "y", "z"], status=RunStatus.FAILED)
    full.workflow_name = "clirun_kid"
    full.input_payload = json.dumps({"args": [5], "kwargs": {}})
    store_run(db, full)
    retried = cli_json(db, "runs", "status", cli_json(db, "runs", "retry", "run_full")["run_id"])
    assert retried["tags"] == ["x", "y", "z"]
    assert retried["retry_of"] == "run_full"  # still linked, in workflow.started
    assert retried["result"] == 10


def test_retry_with_wait_serves_the_new_run_until_it_ends(db: str, flows: ModuleType) -> None:
    original = run_flow(db, flows.clirun_sleepy, 2, 0.3)
    started = cli_json(db, "runs", "retry", original)
    assert started["status"] == "suspended"  # ran here until its first sleep
    waited = cli_json(db, "runs", "retry", original, "--wait", "--timeout", "30")
    assert waited["status"] == "completed"
    assert cli_json(db, "runs", "status", waited["run_id"])["result"] == "done"

    result = CliRunner().invoke(
        main, ["--storage", db, "runs", "retry", original, "--wait", "--timeout", "0.1"]
    )
    assert result.exit_code == 1
    assert f"(retry of {original}) has not ended within 0.1s" in result.output


def test_retry_under_the_local_runtime_needs_the_code(db: str) -> None:
    store_run(db, foreign_run("run_codeless", status=RunStatus.FAILED))
    result = CliRunner().invoke(main, ["--storage", db, "runs", "retry", "run_codeless"])
    assert result.exit_code == 1
    assert "workflow 'clirun_not_here' is not registered in this process" in result.output
    assert "--module" in result.output


def test_every_runs_command_has_help() -> None:
    result = CliRunner().invoke(main, ["runs", "--help"])
    assert result.exit_code == 0
    for command in (
        "list",
        "status",
        "events",
        "logs",
        "tail",
        "cancel",
        "children",
        "chain",
        "retry",
    ):
        assert command in result.output
        assert CliRunner().invoke(main, ["runs", command, "--help"]).exit_code == 0


# -- the installed script, against SQLite and PostgreSQL ---------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'project.db'}"
        return
    base = require_service("postgres")
    pytest.importorskip("asyncpg", reason="pip install 'pyworkflow-engine[postgres]'")
    schema = f"pwcli_{uuid.uuid4().hex[:16]}"
    yield f"{base}{'&' if '?' in base else '?'}schema={schema}"

    async def drop() -> None:
        import asyncpg

        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env["COLUMNS"] = "200"
    return env


def script(
    project: Path, url: str, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(SCRIPT), "--storage", url, *args],
        cwd=project,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def drive(project: Path, url: str, flow: str, *args: Any) -> str:
    done = subprocess.run(
        [sys.executable, "driver.py", url, flow, json.dumps(list(args))],
        cwd=project,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    run_id, status = done.stdout.split()
    return run_id


def start_driver(
    project: Path, url: str, flow: str, args_json: str
) -> tuple[subprocess.Popen[str], str]:
    """Start ``flow`` in a process of its own that serves it until it ends; returns the
    process and the run id (known as soon as the run is stored)."""
    runner = subprocess.Popen(
        [sys.executable, "driver.py", url, flow, args_json],
        cwd=project,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert runner.stdout is not None
    return runner, runner.stdout.readline().strip()


def test_installed_script_runs_commands(tmp_path: Path, storage_url: str) -> None:
    project = write_project(tmp_path / "project")
    url = storage_url
    pipeline = drive(project, url, "clirun_pipeline", "h")
    parent = drive(project, url, "clirun_parent", 2)
    counter = drive(project, url, "clirun_counter", 0)

    listed = json.loads(script(project, url, "-o", "json", "runs", "list", "--limit", "3").stdout)
    assert len(listed["runs"]) == 3 and listed["next_cursor"]
    more = script(project, url, "-o", "json", "runs", "list", "--cursor", listed["next_cursor"])
    assert len(json.loads(more.stdout)["runs"]) == 4  # 3 counter runs, 1 parent, 2 kids, 1 pipe
    tagged = script(project, url, "-o", "plain", "runs", "list", "--tag", "cli-test").stdout
    assert tagged.split("\t")[0] == pipeline

    status = json.loads(script(project, url, "-o", "json", "runs", "status", pipeline).stdout)
    assert status["status"] == "completed" and status["result"] == "H"
    events = script(project, url, "runs", "events", pipeline).stdout
    assert "step.retrying" in events
    logs = script(project, url, "runs", "logs", pipeline).stdout
    assert "step clirun_flaky failed after" in logs and "sleep done after" in logs
    tail = script(project, url, "-o", "plain", "runs", "tail", pipeline).stdout
    assert tail.splitlines()[-1].split("\t")[1] == "workflow.completed"

    kids = json.loads(script(project, url, "-o", "json", "runs", "children", parent).stdout)
    assert len(kids["runs"]) == 2
    chain = json.loads(script(project, url, "-o", "json", "runs", "chain", counter).stdout)
    assert [r["status"] for r in chain["runs"]][-1] == "completed" and len(chain["runs"]) == 3

    # retry needs the code: --module finds ./clirun_flows.py from the project directory.
    refused = script(project, url, "runs", "retry", pipeline, check=False)
    assert refused.returncode == 1 and "--module" in refused.stderr
    retried = script(project, url, "-m", "clirun_flows", "-o", "json", "runs", "retry", pipeline)
    new = json.loads(retried.stdout)
    assert new["retry_of"] == pipeline and new["status"] in ("completed", "suspended")

    missing = script(project, url, "runs", "status", "run_nope", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: no run with id 'run_nope'"
    assert "Traceback" not in missing.stderr


def test_installed_script_follows_and_cancels_a_live_run(tmp_path: Path, storage_url: str) -> None:
    project = write_project(tmp_path / "project")
    url = storage_url
    runner, run_id = start_driver(project, url, "clirun_sleepy", "[3, 0.4]")
    tail = script(project, url, "-o", "json", "runs", "tail", run_id, "--interval", "0.1")
    assert runner.wait(timeout=30) == 0
    events = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert sum(e["type"] == "sleep.started" for e in events) == 3
    assert events[-1]["type"] == "workflow.completed"

    # Cancelled from a process without the code: the serving process acts on the request
    # when the run wakes (its next step raises CancellationError).
    runner, run_id = start_driver(project, url, "clirun_sleepy", "[2, 1.0]")
    cancelled = script(
        project,
        url,
        "-o",
        "json",
        "runs",
        "cancel",
        run_id,
        "--reason",
        "stop",
        "--wait",
        "--timeout",
        "20",
    )
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    assert "Traceback" not in cancelled.stderr and "ERROR" not in cancelled.stderr
    assert runner.wait(timeout=30) == 0
    assert runner.stdout is not None and runner.stdout.read().strip() == "cancelled"


def test_ctrl_c_stops_tail_with_exit_0(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ctrl_c.db'}"
    store_run(url, foreign_run("run_forever"))
    tail = subprocess.Popen(
        [str(SCRIPT), "--storage", url, "-o", "plain", "runs", "tail", "run_forever"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    assert tail.poll() is None  # still following
    tail.send_signal(signal.SIGINT)
    out, err = tail.communicate(timeout=10)
    assert tail.returncode == 0, err
    assert "Traceback" not in err and "Aborted" not in err


# -- runs tail in a terminal ----------------------------------------------------------------------


def _tmux(*args: str) -> str:
    return subprocess.run(
        ["tmux", *args], capture_output=True, text=True, check=True, timeout=10
    ).stdout


def test_tail_in_a_terminal_shows_steps_progressing(tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")
    project = write_project(tmp_path / "project")
    url = f"sqlite:///{project / 'tail.db'}"
    runner, run_id = start_driver(project, url, "clirun_sleepy", "[4, 1.0]")
    session = f"pwtail{uuid.uuid4().hex[:8]}"
    command = f"{SCRIPT} --storage {url} runs tail {run_id} --interval 0.2; echo EXIT=$?"
    _tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "50", "-c", str(project))
    try:
        _tmux("send-keys", "-t", session, command, "Enter")
        snapshots: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            screen = _tmux("capture-pane", "-p", "-t", session)
            snapshots.append(screen)
            if re.search(r"EXIT=\d", screen):
                break
            time.sleep(0.3)
        runner.wait(timeout=30)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)

    live = [s for s in snapshots if not re.search(r"EXIT=\d", s)]
    # While the run sleeps the view shows a sleeping operation, and finished steps grow.
    assert any(re.search(r"sleep 1\.00s\s+sleeping", s) for s in live), live[-1:]
    done_counts = [len(re.findall(r"clirun_double\s+completed", s)) for s in live]
    assert len(set(done_counts)) >= 2, done_counts  # seen progressing, not just the end
    final = snapshots[-1]
    assert "EXIT=0" in final
    assert f"run {run_id} completed after" in final
    assert final.count("sleep done after") == 4


# -- runs retry under the Celery runtime: enqueued by name, without the code ------------------


def test_retry_under_celery_enqueues_by_name_without_the_code(tmp_path: Path) -> None:
    pytest.importorskip("celery", reason="pip install 'pyworkflow-engine[celery]'")
    redis_lib = pytest.importorskip("redis")
    base = require_service("redis")
    broker = base.rsplit("/", 1)[0] + "/15"  # a database of its own: nobody consumes it
    client = redis_lib.Redis.from_url(broker)
    client.flushdb()
    url = f"sqlite:///{tmp_path / 'celery.db'}"
    old = foreign_run("run_failed_on_a_worker", status=RunStatus.FAILED, tags=["nightly"])
    old.max_duration = "1h"
    old.max_recovery_attempts = 7
    store_run(url, old)
    try:
        done = subprocess.run(
            [str(SCRIPT), "--storage", url, "--runtime", "celery", "--broker", broker]
            + ["-o", "json", "runs", "retry", old.run_id],
            cwd=tmp_path,  # no workflow module anywhere near
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        new = json.loads(done.stdout)
        assert new["status"] == "pending" and new["retry_of"] == old.run_id
        messages = [json.loads(m) for m in client.lrange("pyworkflow.workflows", 0, -1)]
    finally:
        client.flushdb()
        client.close()
    bodies = [json.loads(base64.b64decode(m["body"])) for m in messages]
    assert [b[1]["run_id"] for b in bodies] == [new["run_id"]]

    status = CliRunner().invoke(
        main, ["--storage", url, "-o", "json", "runs", "status", new["run_id"]]
    )
    item = json.loads(status.output)
    assert item["workflow_name"] == "clirun_not_here"
    assert item["args"] == [1, "two"] and item["kwargs"] == {"k": True}  # as stored
    assert item["tags"] == ["nightly", f"retry-of:{old.run_id}"]
    assert item["max_recovery_attempts"] == 7  # the old run's settings, without its code
    assert item["deadline_at"] is not None


# -- runs signal -----------------------------------------------------------------------------


def test_signal_from_a_shell_without_the_code(db: str, flows: ModuleType, tmp_path: Path) -> None:
    """``runs signal`` stores the signal and makes the waiting run due; a process serving
    runs with the code then delivers it. Bad input exits non-zero with nothing stored."""

    async def start_listener() -> str:
        pyworkflow.configure(storage=db)
        try:
            run_id: str = await pyworkflow.start(flows.clirun_listener, 2)
            return run_id
        finally:
            await get_runtime("local").shutdown()
            await pyworkflow.get_storage().close()

    run_id = asyncio.run(start_listener())
    sent = cli_json(db, "runs", "signal", run_id, "clirun_note", "--payload", '{"n": 1}')
    assert sent == {
        "run_id": run_id,
        "name": "clirun_note",
        "sequence": 1,
        "signal_id": sent["signal_id"],
    }
    payload_file = tmp_path / "note.json"
    payload_file.write_text('"second"')
    again = cli_json(
        db,
        "runs",
        "signal",
        run_id,
        "clirun_note",
        "--payload-file",
        str(payload_file),
        "--signal-id",
        "note-2",
    )
    assert again["sequence"] == 2 and again["signal_id"] == "note-2"
    status = cli_json(db, "runs", "status", run_id)
    assert status["status"] == "suspended"  # nobody here has the code: stored, made due

    bad = CliRunner().invoke(
        main, ["--storage", db, "runs", "signal", run_id, "clirun_note", "--payload", "{oops"]
    )
    assert bad.exit_code == 2 and "not a JSON value" in bad.output
    nan = CliRunner().invoke(
        main, ["--storage", db, "runs", "signal", run_id, "clirun_note", "--payload", "NaN"]
    )
    assert nan.exit_code == 2 and "NaN is not JSON" in nan.output
    unknown = CliRunner().invoke(
        main, ["--storage", db, "runs", "signal", "run_nope", "clirun_note"]
    )
    assert unknown.exit_code == 1 and "no run with id 'run_nope'" in unknown.output

    async def serve_until_done() -> WorkflowRun:
        pyworkflow.configure(storage=db)
        try:
            runtime = get_runtime("local")
            assert isinstance(runtime, pyworkflow.LocalRuntime)
            server = asyncio.ensure_future(runtime.serve())
            try:
                return await pyworkflow.wait_for_run(run_id, timeout=15)
            finally:
                server.cancel()
        finally:
            await get_runtime("local").shutdown()
            await pyworkflow.get_storage().close()

    # runs query replays the run here (its module is imported in this process): the
    # signals are stored but not taken yet.
    assert cli_json(db, "runs", "query", run_id, "notes") == []

    run = asyncio.run(serve_until_done())
    assert run.result == [{"n": 1}, "second"]
    answered = cli_json(db, "runs", "query", run_id, "notes", "1")  # JSON arguments
    assert answered == ["second"]
    unknown = CliRunner().invoke(main, ["--storage", db, "runs", "query", run_id, "nope"])
    assert unknown.exit_code == 1 and "has no query 'nope'" in unknown.output
    ended = CliRunner().invoke(main, ["--storage", db, "runs", "signal", run_id, "clirun_note"])
    assert ended.exit_code == 1 and "has ended (completed)" in ended.output
