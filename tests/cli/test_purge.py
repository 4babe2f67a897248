"""``pyworkflow runs purge``: every option through Click's runner against a real SQLite
file, and the installed console script in a subprocess against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

import pyworkflow
from pyworkflow.cli import main
from pyworkflow.cli.purge import attach, parse_cutoff
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.config import storage_from_url
from pyworkflow.storage.schemas import Event, EventType, HookRecord, RunStatus, WorkflowRun

NOW = datetime.now(UTC)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


async def seed(storage: StorageBackend) -> None:
    """Runs of every kind: old and new, finished and not, two workflows, a hook."""

    async def run(run_id: str, status: RunStatus, days: float, **kw: Any) -> None:
        finished = status.is_terminal
        stored = WorkflowRun(
            run_id=run_id,
            workflow_name=kw.pop("workflow_name", "orders"),
            status=status,
            created_at=ago(days + 1),
            updated_at=ago(days),
            completed_at=ago(days) if finished else None,
            last_sequence=1,
            **kw,
        )
        event = Event(
            run_id=run_id, type=EventType.WORKFLOW_STARTED, data={}, sequence=1, timestamp=ago(days)
        )
        await storage.create_run(stored, [event])

    await storage.connect()
    await run("old-done-1", RunStatus.COMPLETED, 40, idempotency_key="order-1")
    await run("old-done-2", RunStatus.COMPLETED, 35)
    await run("old-done-3", RunStatus.COMPLETED, 31)
    await run("old-failed", RunStatus.FAILED, 60)
    await run("old-billing", RunStatus.COMPLETED, 50, workflow_name="billing")
    await run("new-done", RunStatus.COMPLETED, 2)
    await run("old-running", RunStatus.RUNNING, 90)
    await run("old-interrupted", RunStatus.INTERRUPTED, 90)
    await storage.save_hook(
        HookRecord(token_hash="h1", run_id="old-failed", hook_id="approval#1", name="approval")
    )
    await storage.close()


def remaining(url: str) -> set[str]:
    async def read() -> set[str]:
        storage = storage_from_url(url)
        try:
            return {r.run_id for r in await storage.list_runs(limit=100)}
        finally:
            await storage.close()

    return asyncio.run(read())


EVERYONE = {
    "old-done-1",
    "old-done-2",
    "old-done-3",
    "old-failed",
    "old-billing",
    "new-done",
    "old-running",
    "old-interrupted",
}
NEVER_PURGED = {"new-done", "old-running", "old-interrupted"}


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    asyncio.run(seed(storage_from_url(url)))
    return url


@pytest.fixture(autouse=True)
def runs_group() -> Iterator[None]:
    """``main`` with a ``runs`` group holding ``purge`` (a stand-in for the real group
    until both are merged; the real one when it is there)."""
    existing = main.commands.get("runs")
    if isinstance(existing, click.Group) and "purge" in existing.commands:
        yield
    else:
        group = click.Group("runs")
        attach(group)
        main.add_command(group)
        try:
            yield
        finally:
            if existing is None:
                main.commands.pop("runs", None)
            else:
                main.add_command(existing)
    pyworkflow.reset_config()  # --storage configured the process


def cli(db: str, *args: str, output: str = "table") -> Result:
    return CliRunner().invoke(main, ["--storage", db, "-o", output, "runs", "purge", *args])


def test_purge_deletes_finished_runs_older_than_the_age(db: str) -> None:
    result = cli(db, "--older-than", "30d")
    assert result.exit_code == 0, result.output
    assert "purged 5 runs (5 so far)" in result.stderr
    assert "count" in result.stdout and "5" in result.stdout
    assert remaining(db) == NEVER_PURGED


def test_hooks_and_keys_of_purged_runs_are_gone(db: str) -> None:
    cli(db, "--older-than", "30d")

    async def check() -> None:
        storage = storage_from_url(db)
        assert await storage.get_hook("h1") is None
        assert await storage.get_run_by_idempotency_key("order-1") is None
        assert await storage.get_events("old-failed") == []
        await storage.close()

    asyncio.run(check())


def test_json_output_is_the_summary_object(db: str) -> None:
    before = datetime.now(UTC)
    result = cli(db, "--older-than", "45d", output="json")
    after = datetime.now(UTC)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["count"] == 2  # old-failed (60d), old-billing (50d)
    assert summary["dry_run"] is False
    assert summary["batches"] == 1
    assert summary["statuses"] == ["completed", "failed", "cancelled", "continued_as_new"]
    assert summary["workflow_name"] is None
    # The cutoff is 45 days before the command ran (NOW is module import time: the suite
    # may reach this test many minutes later).
    cutoff = datetime.fromisoformat(summary["cutoff"])
    assert before - timedelta(days=45) <= cutoff <= after - timedelta(days=45)


def test_plain_output_is_key_tab_value(db: str) -> None:
    result = cli(db, "--older-than", "45d", output="plain")
    assert "count\t2" in result.stdout.splitlines()
    assert "dry_run\tFalse" in result.stdout.splitlines()


def test_dry_run_counts_and_deletes_nothing(db: str) -> None:
    result = cli(db, "--older-than", "30d", "--dry-run", output="json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["count"] == 5
    assert json.loads(result.stdout)["dry_run"] is True
    assert result.stderr == ""
    assert remaining(db) == EVERYONE


def test_status_filter(db: str) -> None:
    result = cli(db, "--older-than", "30d", "--status", "failed", output="json")
    assert json.loads(result.stdout)["count"] == 1
    assert remaining(db) == EVERYONE - {"old-failed"}


def test_several_statuses(db: str) -> None:
    result = cli(
        db, "--older-than", "30d", "--status", "failed", "--status", "completed", output="json"
    )
    assert json.loads(result.stdout)["statuses"] == ["failed", "completed"]
    assert remaining(db) == NEVER_PURGED


def test_workflow_filter(db: str) -> None:
    result = cli(db, "--older-than", "30d", "--workflow", "billing", output="json")
    assert json.loads(result.stdout)["count"] == 1
    assert remaining(db) == EVERYONE - {"old-billing"}


def test_batch_size_shows_progress_per_batch(db: str) -> None:
    result = cli(db, "--older-than", "30d", "--batch-size", "2", output="json")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "purged 2 runs (2 so far)",
        "purged 2 runs (4 so far)",
        "purged 1 run (5 so far)",
    ]
    assert json.loads(result.stdout)["batches"] == 3
    assert remaining(db) == NEVER_PURGED


def test_older_than_accepts_an_iso_date(db: str) -> None:
    cutoff = ago(36).date().isoformat()  # a date between old-done-2 (35d) and old-done-1
    result = cli(db, "--older-than", cutoff, output="json")
    assert result.exit_code == 0, result.output
    assert remaining(db) == NEVER_PURGED | {"old-done-2", "old-done-3"}


def test_nothing_to_purge(db: str) -> None:
    result = cli(db, "--older-than", "1000d", output="json")
    assert json.loads(result.stdout)["count"] == 0
    assert result.stderr == ""
    assert remaining(db) == EVERYONE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Missing option '--older-than'"),
        (("--older-than", "soon"), "neither a duration"),
        (("--older-than", "30d", "--status", "running"), "'running' is not one of"),
        (("--older-than", "30d", "--batch-size", "0"), "0 is not in the range x>=1"),
    ],
)
def test_usage_errors_exit_2(db: str, args: tuple[str, ...], message: str) -> None:
    result = cli(db, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert remaining(db) == EVERYONE


def test_help_names_the_safety_rules() -> None:
    result = CliRunner().invoke(main, ["runs", "purge", "--help"])
    assert result.exit_code == 0
    assert "never touched" in result.stdout and "--dry-run" in result.stdout


def test_parse_cutoff() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_cutoff("30d", now) == datetime(2026, 1, 30, tzinfo=UTC)
    assert parse_cutoff("1w12h", now) == datetime(2026, 2, 21, 12, tzinfo=UTC)
    assert parse_cutoff("2026-01-31", now) == datetime(2026, 1, 31, tzinfo=UTC)
    assert parse_cutoff("2026-01-31T12:00:00+01:00", now) == datetime(2026, 1, 31, 11, tzinfo=UTC)


# -- the installed console script ------------------------------------------------------------

SCRIPT = Path(sys.executable).parent / "pyworkflow"


def _script_has_purge() -> bool:
    probe = subprocess.run(
        [str(SCRIPT), "runs", "purge", "--help"], capture_output=True, text=True, timeout=60
    )
    return probe.returncode == 0


def run_script(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def postgres_url() -> Iterator[str]:
    from tests.services import require_service
    from tests.storage.backend_postgres import admin_execute, new_schema, with_options

    pytest.importorskip("asyncpg")
    base = require_service("postgres")
    schema = new_schema()
    yield with_options(base, schema=schema)
    asyncio.run(admin_execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_installed_script_purges(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if not _script_has_purge():
        pytest.skip("the runs group does not carry purge yet (pyworkflow.cli.purge.attach)")
    if backend == "sqlite":
        url = "sqlite:///runs.db"  # relative: the script runs in the project directory
        seed_url = f"sqlite:///{tmp_path / 'runs.db'}"
    else:
        url = seed_url = request.getfixturevalue("postgres_url")
    asyncio.run(seed(storage_from_url(seed_url)))

    dry = run_script(
        tmp_path,
        "--storage",
        url,
        "-o",
        "json",
        "runs",
        "purge",
        "--older-than",
        "30d",
        "--dry-run",
    )
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["count"] == 5
    assert remaining(seed_url) == EVERYONE

    done = run_script(
        tmp_path, "--storage", url, "runs", "purge", "--older-than", "30d", "--batch-size", "3"
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["purged 3 runs (3 so far)", "purged 2 runs (5 so far)"]
    assert "runs purged" in done.stdout
    assert remaining(seed_url) == NEVER_PURGED

    bad = run_script(
        tmp_path, "--storage", url, "runs", "purge", "--older-than", "30d", "--status", "suspended"
    )
    assert bad.returncode == 2
    assert "'suspended' is not one of" in bad.stderr
