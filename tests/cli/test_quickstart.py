"""``pyworkflow quickstart DIR``: the scaffolded project runs and its test passes as
written, and an existing project is never overwritten by accident."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import pyworkflow
from pyworkflow.cli import main
from pyworkflow.core.config import get_config

BIN = Path(sys.executable).parent
FILES = [
    "workflows.py",
    "tests/test_workflows.py",
    "pyworkflow.config.yaml",
    "pyproject.toml",
    ".gitignore",
]


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def clean_env() -> dict[str, str]:
    """A user's shell: no PYWORKFLOW_* settings, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env.pop("PYTHONPATH", None)
    return env


def test_scaffolds_the_project_and_prints_next_steps(tmp_path: Path) -> None:
    code, out, err = invoke("quickstart", "shop")
    assert code == 0, err
    for name in FILES:
        assert (tmp_path / "shop" / name).is_file(), name
        assert name in out
    assert "cd shop" in out
    assert "python -m workflows" in out
    assert "pytest" in out
    assert "pyworkflow runs list" in out


def test_its_config_is_what_the_loader_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert invoke("quickstart", "shop")[0] == 0
    monkeypatch.chdir(tmp_path / "shop")
    pyworkflow.reset_config()
    config = get_config()
    assert config.storage == "sqlite:///.pyworkflow/pyworkflow.db"
    assert config.default_runtime == "local"
    assert config.modules == ["workflows"]


def test_json_output_lists_the_files(tmp_path: Path) -> None:
    code, out, _ = invoke("-o", "json", "quickstart", "shop")
    assert code == 0
    assert json.loads(out) == {"directory": "shop", "files": FILES}


def test_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    (project / "workflows.py").write_text("# mine\n")
    code, _, err = invoke("quickstart", "shop")
    assert code == 1
    assert "not empty" in err and "--force" in err
    assert (project / "workflows.py").read_text() == "# mine\n"
    assert not (project / "pyworkflow.config.yaml").exists()


def test_force_writes_into_it_and_keeps_other_files(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    (project / "notes.txt").write_text("keep me")
    code, _, err = invoke("quickstart", "--force", "shop")
    assert code == 0, err
    assert (project / "notes.txt").read_text() == "keep me"
    assert (project / "workflows.py").is_file()


def test_an_empty_existing_directory_is_fine(tmp_path: Path) -> None:
    (tmp_path / "shop").mkdir()
    assert invoke("quickstart", "shop")[0] == 0


def test_a_file_in_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "shop").write_text("")
    code, _, err = invoke("quickstart", "shop")
    assert code != 0
    assert "shop" in err


def test_directory_is_required() -> None:
    code, _, err = invoke("quickstart")
    assert code == 2
    assert "DIRECTORY" in err


def run(cwd: Path, *argv: str | Path) -> subprocess.CompletedProcess[str]:
    """``argv`` in a fresh process, as typed in a user's shell."""
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=clean_env(), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_installed_quickstart_runs_and_its_tests_pass(tmp_path: Path) -> None:
    """What the next steps promise, each in a fresh process of the installed tools."""
    proc = run(tmp_path, BIN / "pyworkflow", "quickstart", "demo")
    assert proc.returncode == 0, proc.stderr
    project = tmp_path / "demo"

    ran = run(project, sys.executable, "-m", "workflows")
    assert ran.returncode == 0, ran.stderr
    assert "completed: {'order_id': 'ORD-1', 'status': 'completed'" in ran.stdout
    assert (project / ".pyworkflow" / "pyworkflow.db").is_file()

    tested = run(project, BIN / "pytest", "-q")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout
