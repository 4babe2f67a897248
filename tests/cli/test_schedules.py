"""``pyworkflow schedules ...``: Click's runner for every command and option, then the
installed script in a project directory against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import pyworkflow
from pyworkflow.cli import main
from tests.cli.project_support import project_dir, script, storage_urls

MODULE = "cli_wfs_reports"
MODULE_TEXT = """from pyworkflow import workflow


@workflow()
async def cli_wfs_report(region: str = "all", *extra) -> str:
    return f"report {region} {list(extra)}"
"""


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty project directory holding the workflow module, as cwd, with fresh config."""
    yield from project_dir(tmp_path, monkeypatch, MODULE, MODULE_TEXT)


def cli(project: Path, *args: str, module: bool = False) -> Result:
    base = ["--storage", f"sqlite:///{project}/s.db"]
    if module:
        base += ["--module", MODULE]
    return CliRunner().invoke(main, [*base, *args])


def cli_json(project: Path, *args: str, module: bool = False) -> dict:
    result = cli(project, "-o", "json", *args, module=module)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def create(project: Path, *extra: str) -> dict:
    return cli_json(project, "schedules", "create", "--workflow", "cli_wfs_report", *extra)


def test_create_with_cron_timezone_policy_id_and_arguments(project: Path) -> None:
    out = create(project, "--cron", "0 9 * * mon-fri", "--timezone", "Europe/Paris",
                 "--overlap", "buffer_one", "--id", "paris", "--catchup-window", "10m",
                 "--arg", "region=emea")  # fmt: skip
    assert out["schedule_id"] == "paris" and out["workflow_name"] == "cli_wfs_report"
    assert out["spec"] == {"cron": "0 9 * * mon-fri", "timezone": "Europe/Paris"}
    assert out["overlap_policy"] == "buffer_one" and out["catchup_window"] == 600
    assert out["kwargs"] == {"region": "emea"} and out["args"] == []
    tick = datetime.fromisoformat(out["next_tick"])
    assert tick.astimezone(UTC).hour in (7, 8)  # 09:00 Paris is 07:00 or 08:00 UTC
    assert out["status"] == "active"


def test_create_with_interval_and_positional_args_json(project: Path) -> None:
    out = create(project, "--interval", "15m", "--args-json", '["apac", 1]')
    assert out["schedule_id"].startswith("sched_")
    assert out["spec"]["interval"] == 900 and out["args"] == ["apac", 1]
    assert out["overlap_policy"] == "skip"


def test_create_without_the_code_notes_it(project: Path) -> None:
    result = cli(project, "schedules", "create", "--workflow", "cli_wfs_never_imported",
                 "--interval", "1h")  # fmt: skip
    assert result.exit_code == 0
    assert "not registered in this process" in result.stderr


def test_create_with_the_code_says_nothing_more(project: Path) -> None:
    result = cli(project, "schedules", "create", "--workflow", "cli_wfs_report", "--interval", "1h",
                 module=True)  # fmt: skip
    assert result.exit_code == 0 and result.stderr == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--cron or --interval"),
        (["--cron", "* * * * *", "--interval", "1h"], "not both"),
        (["--interval", "1h", "--overlap", "sometimes"], "--overlap"),
        (["--interval", "1h", "--arg", "oops"], "--arg"),
    ],
)
def test_create_usage_errors(project: Path, args: list[str], message: str) -> None:
    result = cli(project, "schedules", "create", "--workflow", "cli_wfs_report", *args)
    assert result.exit_code == 2 and message in result.output


@pytest.mark.parametrize(
    "args", [["--cron", "61 * * * *"], ["--interval", "-5m"], ["--cron", "0 9 * * *",
             "--timezone", "Mars/Olympus"]],
)  # fmt: skip
def test_invalid_specs_are_one_line_errors(project: Path, args: list[str]) -> None:
    result = cli(project, "schedules", "create", "--workflow", "cli_wfs_report", *args)
    assert result.exit_code == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.output
    assert cli_json(project, "schedules", "list")["schedules"] == []


def test_create_with_an_existing_id_is_refused(project: Path) -> None:
    create(project, "--interval", "1h", "--id", "dup")
    result = cli(project, "schedules", "create", "--workflow", "cli_wfs_report", "--interval", "2h",
                 "--id", "dup")  # fmt: skip
    assert result.exit_code == 1 and "already exists" in result.stderr


def test_list_filters_by_workflow_and_status(project: Path) -> None:
    create(project, "--interval", "1h", "--id", "a")
    cli_json(project, "schedules", "create", "--workflow", "other", "--cron", "0 * * * *",
             "--id", "b")  # fmt: skip
    cli_json(project, "schedules", "pause", "b")
    everything = cli_json(project, "schedules", "list")
    assert [s["schedule_id"] for s in everything["schedules"]] == ["a", "b"]
    assert everything["schedules"][0]["spec"] == "every 1h"
    assert everything["schedules"][1]["spec"] == "cron 0 * * * *"
    assert everything["next_cursor"] is None
    only = cli_json(project, "schedules", "list", "--workflow", "other")
    assert [s["schedule_id"] for s in only["schedules"]] == ["b"]
    paused = cli_json(project, "schedules", "list", "--status", "paused")
    assert [s["schedule_id"] for s in paused["schedules"]] == ["b"]
    table = cli(project, "schedules", "list")
    assert table.exit_code == 0 and "every 1h" in table.stdout


def test_show_pause_resume(project: Path) -> None:
    create(project, "--interval", "1h", "--id", "s")
    shown = cli_json(project, "schedules", "show", "s")
    assert shown["fired"] == 0 and shown["recent"] == []
    paused = cli_json(project, "schedules", "pause", "s")
    assert paused["status"] == "paused" and paused["next_run_time"] is None
    resumed = cli_json(project, "schedules", "resume", "s")
    assert resumed["status"] == "active" and resumed["next_run_time"] is not None
    table = cli(project, "schedules", "show", "s")
    assert table.exit_code == 0 and "catchup window" in table.stdout


def test_update_each_option(project: Path) -> None:
    create(project, "--interval", "1h", "--id", "u")
    out = cli_json(project, "schedules", "update", "u", "--interval", "30m")
    assert out["spec"]["interval"] == 1800
    out = cli_json(project, "schedules", "update", "u", "--cron", "0 6 * * *",
                   "--timezone", "Asia/Tokyo")  # fmt: skip
    assert out["spec"] == {"cron": "0 6 * * *", "timezone": "Asia/Tokyo"}
    out = cli_json(project, "schedules", "update", "u", "--overlap", "allow_all",
                   "--catchup-window", "5m")  # fmt: skip
    assert out["overlap_policy"] == "allow_all" and out["catchup_window"] == 300
    assert out["spec"]["cron"] == "0 6 * * *"  # unchanged


@pytest.mark.parametrize(
    "args", [[], ["--timezone", "UTC"], ["--cron", "* * * * *", "--interval", "1m"]]
)
def test_update_usage_errors(project: Path, args: list[str]) -> None:
    create(project, "--interval", "1h", "--id", "u")
    assert cli(project, "schedules", "update", "u", *args).exit_code == 2


def test_delete(project: Path) -> None:
    create(project, "--interval", "1h", "--id", "gone")
    assert cli_json(project, "schedules", "delete", "gone") == {
        "schedule_id": "gone",
        "deleted": True,
    }
    again = cli(project, "schedules", "delete", "gone")
    assert again.exit_code == 1 and again.stderr == "error: no schedule with id 'gone'\n"


@pytest.mark.parametrize("command", ["show", "pause", "resume", "trigger"])
def test_unknown_schedule_is_one_line_error(project: Path, command: str) -> None:
    result = cli(project, "schedules", command, "nope", module=True)
    assert result.exit_code == 1 and "no schedule with id 'nope'" in result.stderr


def test_trigger_runs_the_workflow_now(project: Path) -> None:
    create(project, "--interval", "1h", "--id", "t", "--arg", "region=latam")
    out = cli_json(project, "schedules", "trigger", "t", module=True)
    assert out["schedule_id"] == "t" and out["run_id"].startswith("run_")
    run = asyncio_run_get(project, out["run_id"])
    assert run.status.value == "completed" and run.result == "report latam []"
    shown = cli_json(project, "schedules", "show", "t")
    assert shown["last_run_id"] == out["run_id"] and shown["fired"] == 1


def test_trigger_without_the_code_under_the_local_runtime_fails_clearly(project: Path) -> None:
    cli_json(project, "schedules", "create", "--workflow", "cli_wfs_unknown", "--interval",
             "1h", "--id", "x")  # fmt: skip
    result = cli(project, "schedules", "trigger", "x")
    assert result.exit_code == 1 and "cli_wfs_unknown" in result.stderr


def test_backfill_between_iso_and_relative_times(project: Path) -> None:
    create(project, "--interval", "1h", "--id", "bf", "--args-json", '["na", 2]')
    start = (datetime.now(UTC) - timedelta(hours=5)).replace(tzinfo=None).isoformat()
    out = cli_json(project, "schedules", "backfill", "bf", "--start", start, "--end", "2h",
                   module=True)  # fmt: skip
    assert len(out["runs"]) == 3 and out["next_cursor"] is None  # ticks 5h..2h ago, hourly
    run = asyncio_run_get(project, out["runs"][0]["run_id"])
    assert run.result == "report na [2]"
    again = cli_json(project, "schedules", "backfill", "bf", "--start", "5h", module=True)
    assert {r["run_id"] for r in out["runs"]} <= {r["run_id"] for r in again["runs"]}


@pytest.mark.parametrize("option", [["--start", "yesterday"], ["--start", "1h", "--end", "x"]])
def test_backfill_bad_times_are_usage_errors(project: Path, option: list[str]) -> None:
    result = cli(project, "schedules", "backfill", "bf", *option)
    assert result.exit_code == 2


def test_backfill_end_before_start_is_an_error(project: Path) -> None:
    create(project, "--interval", "1h", "--id", "bf")
    result = cli(project, "schedules", "backfill", "bf", "--start", "1h", "--end", "3h")
    assert result.exit_code == 1 and "end_time" in result.stderr


def asyncio_run_get(project: Path, run_id: str) -> pyworkflow.WorkflowRun:
    run = asyncio.run(pyworkflow.get_workflow_run(run_id, storage=f"sqlite:///{project}/s.db"))
    assert run is not None
    return run


# -- the installed script ---------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest, project: Path) -> Iterator[str]:
    yield from storage_urls(request.param, project)


def test_installed_script_manages_a_schedule(project: Path, storage_url: str) -> None:
    def run(*args: str) -> dict:
        done = script(project, storage_url, "-o", "json", *args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    created = run("schedules", "create", "--workflow", "cli_wfs_report", "--cron", "*/5 * * * *",
                  "--id", "nightly", "--arg", "region=eu")  # fmt: skip
    assert created["kwargs"] == {"region": "eu"}
    assert [s["schedule_id"] for s in run("schedules", "list")["schedules"]] == ["nightly"]
    assert run("schedules", "pause", "nightly")["status"] == "paused"
    assert run("schedules", "resume", "nightly")["status"] == "active"
    assert run("schedules", "update", "nightly", "--interval", "1h")["spec"]["interval"] == 3600
    triggered = run("-m", MODULE, "schedules", "trigger", "nightly")
    backfilled = run("-m", MODULE, "schedules", "backfill", "nightly", "--start", "3h",
                     "--end", "1h")  # fmt: skip
    assert len(backfilled["runs"]) == 2
    shown = run("schedules", "show", "nightly")
    assert shown["fired"] == 3 and shown["last_run_id"] == triggered["run_id"]
    listed = script(project, storage_url, "schedules", "list")
    assert "nightly" in listed.stdout and "every 1h" in listed.stdout
    assert run("schedules", "delete", "nightly")["deleted"] is True
    gone = script(project, storage_url, "schedules", "show", "nightly")
    assert gone.returncode == 1 and gone.stderr.strip() == "error: no schedule with id 'nightly'"
