"""The distributed example (the seed README's onboarding workflow on a Celery worker and
the pyworkflow scheduler) runs to completion against the local Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.celery.conftest import _purge, _redis_broker

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "distributed" / "onboarding.py"


def test_distributed_onboarding_example_runs(tmp_path: Path) -> None:
    """Three onboarding runs start at once, sleep durably and complete on the worker."""
    broker = _redis_broker()
    _purge(broker)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env.update(
        PYWORKFLOW_CELERY_BROKER=broker,
        PYWORKFLOW_EXAMPLE_DB=str(tmp_path / "onboarding.db"),
        PYTHONPATH=str(EXAMPLE.parents[2]),
    )
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("completed Onboarding complete") == 3
    # The worker's prints reach its log (stderr): each step ran once per run.
    assert (proc.stdout + proc.stderr).count("sending tips email") == 3
