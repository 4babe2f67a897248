"""The pytest plugin as a user meets it: a project directory with a workflow module and
test files, ``python -m pytest`` run there (no PYTHONPATH, no conftest.py), the fixtures
found through the installed entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FLOWS = """
from pyworkflow import hook, sleep, step, workflow

sent = []

@step()
async def send(email: str, template: str) -> str:
    sent.append(template)
    return template

@workflow()
async def drip(email: str) -> list[str]:
    done = [await send(email, "welcome")]
    await sleep("30d")
    done.append(await send(email, "offer"))
    return done
"""

TESTS = """
import time

import pytest

from flows import drip, sent


@pytest.mark.pyworkflow_env(time_skipping=True)
async def test_a_month_in_milliseconds(pyworkflow_env):
    began = time.perf_counter()
    run_id = await pyworkflow_env.start(drip, "ada@example.com")
    assert await pyworkflow_env.result(run_id) == ["welcome", "offer"]
    assert time.perf_counter() - began < 1


async def test_advancing_by_hand(pyworkflow_env):
    run_id = await pyworkflow_env.start(drip, "bob@example.com")
    await pyworkflow_env.advance("29d")
    assert (await pyworkflow_env.wait(run_id, timeout=0.2, quiet=True)) is None
    await pyworkflow_env.advance("1d")
    assert await pyworkflow_env.result(run_id) == ["welcome", "offer"]


async def test_every_crash_point(pyworkflow_crash_points):
    report = await pyworkflow_crash_points(drip, "cy@example.com", reset=sent.clear)
    assert report.result == ["welcome", "offer"]
    assert len(report.points) == len(report.writes) - 1
"""

UNTOUCHED = """
import sys


def test_nothing_of_pyworkflow_is_loaded_for_a_test_that_uses_no_fixture():
    loaded = sorted(m for m in sys.modules if m == "pyworkflow" or m.startswith("pyworkflow."))
    assert loaded == []
"""


def _pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYWORKFLOW_", "PYTEST_"))}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_users_tests_get_the_fixtures_from_the_installed_plugin(tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(FLOWS)
    (tmp_path / "test_flows.py").write_text(TESTS)
    (tmp_path / "test_plain.py").write_text(UNTOUCHED)
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    plain = _pytest(tmp_path, "test_plain.py")  # (a session that never imports pyworkflow)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    done = _pytest(tmp_path, "test_flows.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    assert not (tmp_path / ".pyworkflow").exists()  # in memory: nothing left behind
    listed = _pytest(tmp_path, "--fixtures", "test_plain.py")
    assert "pyworkflow_env" in listed.stdout and "pyworkflow_crash_points" in listed.stdout


def test_the_testing_example_passes_as_a_copied_project(tmp_path: Path) -> None:
    """``examples/testing`` (time skipping, crash points, a golden history) copied out of
    the repository, as a user would start from it."""
    import shutil

    source = Path(__file__).resolve().parents[2] / "examples" / "testing"
    project = tmp_path / "testing"
    shutil.copytree(source, project, ignore=shutil.ignore_patterns("__pycache__"))
    done = _pytest(project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
