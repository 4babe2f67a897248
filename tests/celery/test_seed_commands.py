"""The seed README's commands, exactly as written, from a user's project directory.

A directory holding ``myflows.py`` and a ``pyworkflow.config.yaml`` naming it
(``module: myflows``), storage a SQLite file in that directory, the test Redis as broker;
the processes get no ``PYTHONPATH`` and no ``PYWORKFLOW_*`` variables, so everything
they know comes from the directory they run in. Runs are started by a script in that
directory, as an application would. Sleeps end only through beat or the scheduler
(``celery_countdown_window: 0``), so the sleeping runs show those commands work too.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyworkflow.storage.config import storage_from_url
from tests.celery.conftest import _purge, _redis_broker

pytestmark = pytest.mark.timeout(300)

BIN = Path(sys.executable).parent
CELERY = str(BIN / "celery")
PYWORKFLOW = str(BIN / "pyworkflow")
# The seed README's commands (the quick start and its docker-compose file).
WORKER = [CELERY, "-A", "pyworkflow.celery.app", "worker", "--loglevel=info"]
BEAT = [CELERY, "-A", "pyworkflow.celery.app", "beat", "--loglevel=info"]

MYFLOWS = """\
from pyworkflow import sleep, step, workflow


@step()
async def shout(text: str) -> str:
    return text.upper()


@workflow()
async def greet(name: str) -> str:
    loud = await shout(name)
    await sleep("2s")
    return f"{loud}!"


@workflow()
async def quick(n: int) -> str:
    return await shout(f"run {n}")
"""

START_RUNS = """\
import asyncio
import json

from pyworkflow import start

from myflows import greet, quick


async def main() -> None:
    ids = [await start(quick, n) for n in range(3)]
    ids += [await start(greet, f"sleeper {n}") for n in range(3)]
    print(json.dumps(ids))


asyncio.run(main())
"""
EXPECTED = ["RUN 0", "RUN 1", "RUN 2", "SLEEPER 0!", "SLEEPER 1!", "SLEEPER 2!"]


def scaffold(directory: Path, broker: str, module: str = "myflows") -> Path:
    """A project directory as a user would write it."""
    directory.mkdir(exist_ok=True)
    (directory / "myflows.py").write_text(MYFLOWS)
    (directory / "start_runs.py").write_text(START_RUNS)
    (directory / "pyworkflow.config.yaml").write_text(
        f"module: {module}\n"
        "runtime: celery\n"
        f"storage: sqlite:///{directory / 'workflows.db'}\n"
        "celery_countdown_window: 0\n"
        f"celery:\n  broker: {broker}\n"
    )
    return directory


def user_env() -> dict[str, str]:
    """This environment without PYTHONPATH or any pyworkflow setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env.pop("PYTHONPATH", None)
    return env


class Processes:
    """Long-running commands, each in its own process group with a log file."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, cmd: list[str], cwd: Path, ready: str) -> None:
        path = self.logs / f"{name}.log"
        with path.open("ab") as log:
            proc = subprocess.Popen(
                cmd, cwd=cwd, env=user_env(), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.procs.append(proc)
        deadline = time.monotonic() + 90
        while ready not in path.read_text(errors="replace"):
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited early:\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: no {ready!r} within 90 s:\n{self.text()}")
            time.sleep(0.2)

    def text(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.logs.glob("*.log"))
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                except ProcessLookupError:
                    proc.wait()


@pytest.fixture
def broker() -> str:
    url = _redis_broker()
    _purge(url)
    return url


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Processes(logs)
    try:
        yield procs
    finally:
        procs.stop()


def run_start_script(project: Path) -> list[str]:
    """The application side: ``python start_runs.py`` in the project (no PYTHONPATH)."""
    started = subprocess.run(
        [sys.executable, "start_runs.py"],
        cwd=project, env=user_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert started.returncode == 0, started.stdout + started.stderr
    ids: list[str] = json.loads(started.stdout.strip().splitlines()[-1])
    return ids


async def start_runs_and_wait(project: Path, processes: Processes) -> None:
    """Run the project's start script (no PYTHONPATH) and wait for every run to finish
    as expected."""
    run_ids = await asyncio.to_thread(run_start_script, project)
    storage = storage_from_url(f"sqlite:///{project / 'workflows.db'}")
    await storage.connect()
    try:
        deadline = time.monotonic() + 120
        while True:
            runs = [await storage.get_run(run_id) for run_id in run_ids]
            if all(r is not None and r.status.is_terminal for r in runs):
                break
            if time.monotonic() > deadline:
                states = [(r.run_id, r.status.value) for r in runs if r is not None]
                raise AssertionError(f"runs not finished: {states}\n{processes.text()}")
            await asyncio.sleep(0.3)
        assert [r.status.value for r in runs] == ["completed"] * 6, processes.text()
        assert [r.result for r in runs] == EXPECTED
        for run_id in run_ids[3:]:  # each sleeper was woken once, by a timer
            types = [e.type.value for e in await storage.get_events(run_id)]
            assert types.count("sleep.completed") == 1
    finally:
        await storage.close()


async def test_seed_readme_worker_and_beat_complete_runs_from_the_project_directory(
    tmp_path: Path, broker: str, processes: Processes
) -> None:
    """``celery -A pyworkflow.celery.app worker`` and ``... beat`` started in the project
    directory import ``myflows`` from it: plain runs and sleeping runs complete."""
    project = scaffold(tmp_path / "project", broker)
    processes.start("worker", WORKER, project, ready="ready.")
    processes.start("beat", BEAT, project, ready="beat: Starting")
    await start_runs_and_wait(project, processes)
    assert "cannot import" not in processes.text()


async def test_celery_workdir_finds_the_config_and_modules_there(
    tmp_path: Path, broker: str, processes: Processes
) -> None:
    """Started from another directory with ``--workdir`` pointing at the project, worker
    and beat read its config file and import its modules."""
    project = scaffold(tmp_path / "project", broker)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    workdir = ["--workdir", str(project)]
    processes.start("worker", [CELERY, *workdir, *WORKER[1:]], elsewhere, ready="ready.")
    processes.start("beat", [CELERY, *workdir, *BEAT[1:]], elsewhere, ready="beat: Starting")
    await start_runs_and_wait(project, processes)
    assert not (elsewhere / "workflows.db").exists()  # the project's config was used


async def test_pyworkflow_worker_and_scheduler_complete_runs_from_the_project_directory(
    tmp_path: Path, broker: str, processes: Processes
) -> None:
    """``pyworkflow worker`` and ``pyworkflow scheduler`` do the same as the Celery
    commands from a project directory."""
    project = scaffold(tmp_path / "project", broker)
    processes.start("worker", [PYWORKFLOW, "worker"], project, ready="ready.")
    processes.start("scheduler", [PYWORKFLOW, "scheduler"], project, ready="pyworkflow scheduler")
    await start_runs_and_wait(project, processes)


STARTUP_COMMANDS = [
    pytest.param(WORKER, id="celery-worker"),
    pytest.param(BEAT, id="celery-beat"),
    pytest.param([PYWORKFLOW, "worker"], id="pyworkflow-worker"),
    pytest.param([PYWORKFLOW, "scheduler"], id="pyworkflow-scheduler"),
]


@pytest.mark.parametrize("command", STARTUP_COMMANDS)
def test_missing_workflow_module_stops_the_process_at_startup(
    tmp_path: Path, broker: str, command: list[str]
) -> None:
    """A configured module that is not there: the process exits non-zero before it
    consumes or sends anything, and says which module and where it looked."""
    project = scaffold(tmp_path / "project", broker, module="nosuchflows")
    proc = subprocess.Popen(
        command, cwd=project, env=user_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=120)
    finally:  # a process that did start serving has pool children: end them all
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0, output
    assert "cannot import workflow module 'nosuchflows'" in output, output
    assert f"searched the project directory '{project}'" in output, output
    assert "ready." not in output and "Starting..." not in output  # never started serving
