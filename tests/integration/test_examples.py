"""Every script in ``examples/`` runs to completion (its own asserts check what it shows)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))


def test_examples_are_found() -> None:
    names = {p.name for p in EXAMPLES}
    assert "demo.py" in names
    assert len(names) >= 11, names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYWORKFLOW_EXAMPLE_DB": str(tmp_path / "ex.db"),
        "PYWORKFLOW_DEMO_DB": str(tmp_path / "demo.db"),
        # Import the package from this checkout even if the editable install is stale.
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    proc = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (
        f"{path.name} exited with {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )
