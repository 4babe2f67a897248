"""Where the project directory goes on ``sys.path``, and what a missing workflow module's
error says (the processes that rely on both are tested in
``tests/celery/test_seed_commands.py``)."""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

import pyworkflow
from pyworkflow.core.config import add_project_path, discover_workflows
from pyworkflow.core.exceptions import ConfigurationError


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``tmp_path`` as the current directory, with this process's ``sys.path`` restored
    afterwards and no modules configured."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    monkeypatch.delenv("PYWORKFLOW_MODULES", raising=False)
    pyworkflow.reset_config()
    yield tmp_path
    pyworkflow.reset_config()


def test_project_directory_goes_after_the_stdlib_and_before_site_packages(project: Path) -> None:
    """A project file named like a stdlib module does not replace it; a project module
    wins over an installed package; a second call adds nothing."""
    add_project_path()
    add_project_path()
    assert sys.path.count(str(project)) == 1
    index = sys.path.index(str(project))
    stdlib = os.path.abspath(sysconfig.get_paths()["stdlib"])
    site = os.path.abspath(sysconfig.get_paths()["purelib"])
    assert index > sys.path.index(stdlib)
    assert index < sys.path.index(site)


def test_project_module_imports_but_does_not_shadow_the_stdlib(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "seedcmd_flows.py").write_text("import colorsys\nORIGIN = colorsys.__file__\n")
    (project / "colorsys.py").write_text("raise ImportError('the project shadowed the stdlib')\n")
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    try:
        assert discover_workflows("seedcmd_flows") == ["seedcmd_flows"]
        origin = sys.modules["seedcmd_flows"].ORIGIN
        assert not origin.startswith(str(project))
    finally:
        sys.modules.pop("seedcmd_flows", None)


def test_missing_module_error_names_it_and_the_directories_searched(project: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        discover_workflows("seedcmd_nowhere")
    message = str(info.value)
    assert "cannot import workflow module 'seedcmd_nowhere'" in message
    assert f"searched the project directory '{project}'" in message
    searched = message.split("sys.path: ", 1)[1].split(";", 1)[0].split(", ")
    assert str(project) in searched
    assert os.path.abspath(sysconfig.get_paths()["purelib"]) in searched
    stdlib = os.path.abspath(sysconfig.get_paths()["stdlib"])
    assert not [p for p in searched if p.startswith(stdlib + os.sep) or p == stdlib]
    assert "\n" not in message  # one line: the CLI shows only the first


def test_a_missing_import_inside_the_module_is_not_reported_as_the_module_missing(
    project: Path,
) -> None:
    (project / "seedcmd_broken.py").write_text("import seedcmd_not_installed\n")
    try:
        with pytest.raises(ConfigurationError) as info:
            discover_workflows("seedcmd_broken")
    finally:
        sys.modules.pop("seedcmd_broken", None)
    message = str(info.value)
    assert "No module named 'seedcmd_not_installed'" in message
    assert "searched" not in message
