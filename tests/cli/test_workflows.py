"""``pyworkflow workflows list|info|run``: Click's runner for every command and option,
then the installed script in a project directory against SQLite and PostgreSQL (and a
Celery run started by name from a process without the workflow code)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import pyworkflow
from pyworkflow.cli import main
from tests.cli.project_support import SCRIPT, project_dir, script, storage_urls

MODULE = "cli_wfs_shop"
MODULE_TEXT = '''"""Workflows the CLI tests run."""
from pyworkflow import FatalError, sleep, step, workflow


@step()
async def reserve(item: str, qty: int) -> str:
    return f"reserved {qty} x {item}"


@step()
async def charge(amount: float) -> str:
    return f"charged {amount}"


@workflow(tags=["shop"], max_recovery_attempts=5)
async def order(item: str, qty: int = 1, price: float = 2.5) -> dict:
    """Reserve stock, then charge the customer."""
    reserved = await reserve(item, qty)
    await sleep("1s")
    return {"reserve": reserved, "charge": await charge(qty * price)}


@workflow()
async def echo(*args, **kwargs) -> dict:
    return {"args": list(args), "kwargs": kwargs}


@workflow(durable=False)
async def quick(n: int) -> int:
    return n * 2


@workflow()
async def waits() -> str:
    await sleep("1h")
    return "late"


@step(max_retries=0)
async def explode() -> None:
    raise FatalError("boom")


@workflow()
async def broken() -> None:
    await explode()
'''


# A workflow this test process never imports (only the subprocess that seeds its runs
# does): what an operator's shell without the code sees.
GHOST = "cli_wfs_ghost_flow"
GHOST_MODULE = "cli_wfs_ghost"
GHOST_TEXT = f"""from pyworkflow import workflow


@workflow()
async def {GHOST}() -> str:
    return "boo"
"""


def seed_ghost_run(project: Path) -> None:
    (project / f"{GHOST_MODULE}.py").write_text(GHOST_TEXT)
    done = script(project, f"sqlite:///{project}/wf.db", "-m", GHOST_MODULE,
                  "workflows", "run", GHOST)  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty project directory holding the workflow module, as cwd, with fresh config."""
    yield from project_dir(tmp_path, monkeypatch, MODULE, MODULE_TEXT)


def cli(project: Path, *args: str, module: bool = True) -> Result:
    base = ["--storage", f"sqlite:///{project}/wf.db"]
    if module:
        base += ["--module", MODULE]
    return CliRunner().invoke(main, [*base, *args])


def cli_json(project: Path, *args: str, module: bool = True) -> dict:
    result = cli(project, "-o", "json", *args, module=module)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- workflows run ------------------------------------------------------------------------


def test_run_shows_the_steps_live_and_prints_the_result(project: Path) -> None:
    result = cli(project, "workflows", "run", "order", "--arg", "item=apple", "--arg", "qty=3")
    assert result.exit_code == 0, result.output
    assert "completed" in result.stdout
    assert '"charge": "charged 7.5"' in result.stdout  # qty parsed as JSON: 3 * 2.5
    for line in ("step reserve", "sleep", "step charge", "done"):
        assert line in result.stderr  # the live view (stderr: stdout keeps the result)


def test_run_json_result_for_scripts(project: Path) -> None:
    out = cli_json(project, "workflows", "run", "echo", "--args-json", '{"a": [1, 2]}',
                   "--arg", "b=true", "--arg", "c=text", "--arg", 'd="7"')  # fmt: skip
    assert out["status"] == "completed" and out["workflow"] == "echo"
    assert out["result"] == {"args": [], "kwargs": {"a": [1, 2], "b": True, "c": "text", "d": "7"}}
    assert out["run_id"].startswith("run_") and out["duration_seconds"] >= 0


def test_args_json_list_gives_positional_arguments(project: Path) -> None:
    out = cli_json(project, "workflows", "run", "echo", "--args-json", '[1, "x", null]')
    assert out["result"] == {"args": [1, "x", None], "kwargs": {}}


def test_arg_overrides_the_same_key_of_args_json(project: Path) -> None:
    out = cli_json(project, "workflows", "run", "echo", "--args-json", '{"k": 1}', "--arg", "k=2")
    assert out["result"]["kwargs"] == {"k": 2}


def test_transient_workflow_runs_and_shows_its_result(project: Path) -> None:
    out = cli_json(project, "workflows", "run", "quick", "--arg", "n=21")
    assert out["status"] == "completed" and out["result"] == 42


def test_plain_output(project: Path) -> None:
    result = cli(project, "-o", "plain", "workflows", "run", "echo", "--arg", "x=1")
    assert result.exit_code == 0
    assert "status\tcompleted" in result.stdout.splitlines()
    assert result.stderr == ""  # no live view outside the table format


def test_idempotency_key_returns_the_first_run(project: Path) -> None:
    first = cli_json(project, "workflows", "run", "echo", "--arg", "n=1", "--idempotency-key", "k")
    again = cli_json(project, "workflows", "run", "echo", "--arg", "n=2", "--idempotency-key", "k")
    assert again["run_id"] == first["run_id"]
    assert again["result"] == {"args": [], "kwargs": {"n": 1}}


def test_no_wait_prints_only_the_run_id(project: Path) -> None:
    result = cli(project, "workflows", "run", "waits", "--no-wait")
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip()
    assert run_id.startswith("run_") and "\n" not in run_id
    url = f"sqlite:///{project}/wf.db"
    run = asyncio.run(pyworkflow.get_workflow_run(run_id, storage=url))
    assert run is not None and run.status.value == "suspended"


def test_a_long_suspension_ends_the_watch(project: Path) -> None:
    out = cli_json(project, "workflows", "run", "waits")
    assert out["status"] == "suspended" and out["wake_at"] is not None


def test_failed_run_exits_1_with_its_error(project: Path) -> None:
    result = cli(project, "workflows", "run", "broken")
    assert result.exit_code == 1
    assert "failed" in result.stdout and "FatalError: boom" in result.stdout
    assert "✗ step explode" in result.stderr


def test_local_run_without_the_module_names_the_fix(project: Path) -> None:
    result = cli(project, "workflows", "run", GHOST, module=False)
    assert result.exit_code == 1
    assert "--module" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "bad",
    [
        ["--arg", "novalue"],
        ["--arg", "1x=2"],
        ["--args-json", "{nope"],
        ["--args-json", "42"],
    ],
)
def test_malformed_arguments_are_usage_errors(project: Path, bad: list[str]) -> None:
    result = cli(project, "workflows", "run", "echo", *bad)
    assert result.exit_code == 2
    assert "--arg" in result.output


# -- workflows list / info ---------------------------------------------------------------


def test_list_shows_registered_workflows_options_and_run_counts(project: Path) -> None:
    cli_json(project, "workflows", "run", "echo")
    cli_json(project, "workflows", "run", "echo")
    out = cli_json(project, "workflows", "list")
    rows = {row["name"]: row for row in out["workflows"]}
    # (other tests of this process may have registered more workflows)
    assert {"order", "echo", "quick", "waits", "broken"} <= set(rows) and out["next_cursor"] is None
    assert rows["order"]["registered"] is True
    assert rows["order"]["tags"] == ["shop"] and rows["order"]["max_recovery_attempts"] == 5
    assert rows["order"]["module"] == f"{MODULE}:order"
    assert rows["echo"]["recent_runs"] == 2 and rows["order"]["recent_runs"] == 0

    table = cli(project, "workflows", "list")
    assert table.exit_code == 0 and "registered here: " in table.stdout


def test_list_without_the_code_shows_names_from_storage(project: Path) -> None:
    seed_ghost_run(project)
    out = cli_json(project, "workflows", "list", module=False)
    assert {"name": GHOST, "registered": False, "recent_runs": 1} in out["workflows"]


def test_info_shows_signature_docstring_options_steps_and_runs(project: Path) -> None:
    run = cli_json(project, "workflows", "run", "order", "--arg", "item=a")
    out = cli_json(project, "workflows", "info", "order", "--runs", "3")
    assert out["signature"] == "order(item: str, qty: int = 1, price: float = 2.5) -> dict"
    assert out["docstring"] == "Reserve stock, then charge the customer."
    assert out["steps"] == ["reserve", "charge"]
    assert out["tags"] == ["shop"] and out["max_recovery_attempts"] == 5
    assert out["parameters"][1] == {
        "name": "qty", "kind": "positional_or_keyword", "annotation": "int", "default": 1,
    }  # fmt: skip
    assert [r["run_id"] for r in out["recent_runs"]] == [run["run_id"]]
    assert out["recent_runs"][0]["status"] == "completed"

    table = cli(project, "workflows", "info", "order")
    assert table.exit_code == 0
    assert "Reserve stock" in table.stdout and "recent runs" in table.stdout


def test_info_of_a_name_known_only_from_storage(project: Path) -> None:
    seed_ghost_run(project)
    out = cli_json(project, "workflows", "info", GHOST, module=False)
    assert out["registered"] is False and len(out["recent_runs"]) == 1
    assert out["recent_runs"][0]["status"] == "completed" and "signature" not in out


def test_info_of_an_unknown_workflow_is_an_error(project: Path) -> None:
    result = cli(project, "workflows", "info", "nope")
    assert result.exit_code == 1 and "no workflow named 'nope'" in result.output


# -- the installed script ---------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest, project: Path) -> Iterator[str]:
    yield from storage_urls(request.param, project)


def test_installed_script_lists_inspects_and_runs(project: Path, storage_url: str) -> None:
    ran = script(project, storage_url, "-m", MODULE, "workflows", "run", "order",
                 "--arg", "item=pear", "--arg", "qty=2")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert '"reserve": "reserved 2 x pear"' in ran.stdout and "completed" in ran.stdout
    assert "step charge" in ran.stderr

    listed = script(project, storage_url, "-m", MODULE, "-o", "json", "workflows", "list")
    rows = {r["name"]: r for r in json.loads(listed.stdout)["workflows"]}
    assert rows["order"]["recent_runs"] == 1 and rows["order"]["registered"] is True

    info = script(project, storage_url, "-o", "json", "workflows", "info", "order")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["registered"] is False  # no --module: storage knows it

    no_wait = script(project, storage_url, "-m", MODULE, "workflows", "run", "waits", "--no-wait")
    assert no_wait.returncode == 0 and no_wait.stdout.strip().startswith("run_")

    failed = script(project, storage_url, "-m", MODULE, "workflows", "run", "broken")
    assert failed.returncode == 1 and "FatalError: boom" in failed.stdout

    missing = script(project, storage_url, "workflows", "run", "order")
    assert missing.returncode == 1 and "--module" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_installed_script_imports_modules_from_the_project_directory(project: Path) -> None:
    # No PYTHONPATH: the module is found because it sits in the current directory.
    ran = script(project, f"sqlite:///{project}/p.db", "-m", MODULE, "-o", "json",
                 "workflows", "run", "echo", "--arg", "x=1")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["result"] == {"args": [], "kwargs": {"x": 1}}


def test_celery_run_by_name_from_a_process_without_the_code(project: Path) -> None:
    """A worker imports the module; the shell that starts the run never does: it enqueues
    by name, then follows the steps the worker records until the run completes."""
    from tests.services import require_service

    redis_url = require_service("redis")
    pytest.importorskip("celery")
    import redis

    broker = redis_url.rsplit("/", 1)[0] + "/14"  # a database of its own: no shared queues
    storage = f"sqlite:///{project}/celery.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env.pop("PYTHONPATH", None)
    with (project / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            [str(SCRIPT), "--broker", broker, "--storage", storage, "-m", MODULE,
             "worker", "run", "--pool", "solo", "--loglevel", "warning"],
            cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        celery = ("--runtime", "celery", "--broker", broker)
        ran = script(project, storage, *celery, "workflows", "run", "order",
                     "--arg", "item=fig", "--arg", "qty=4")  # fmt: skip
        assert ran.returncode == 0, ran.stderr + (project / "worker.log").read_text()
        assert '"charge": "charged 10.0"' in ran.stdout
        assert "step reserve" in ran.stderr and "step charge" in ran.stderr

        queued = script(project, storage, *celery, "workflows", "run", "echo", "--no-wait")
        assert queued.returncode == 0, queued.stderr
        assert queued.stdout.strip().startswith("run_")
    finally:
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        client = redis.Redis.from_url(broker)
        keys = list(client.scan_iter("*"))
        if keys:
            client.delete(*keys)
        client.close()
