"""``examples/dashboard``: its script serves the example module and drives the HTTP API
with curl to the end (the script's own checks wait for each state it announces)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dashboard"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(shutil.which("curl") is None, reason="the example script uses curl")
def test_try_it_script(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env.update(
        PYTHON=sys.executable,
        PORT=str(_free_port()),
        PYWORKFLOW_STORAGE=f"sqlite:///{tmp_path / 'example.db'}",
        PYWORKFLOW_SECRET_KEY="dashboard-example-test-secret",  # no key file in examples/
    )
    done = subprocess.run(
        ["bash", str(EXAMPLE / "try_it.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "'paid': True" in lines[2] and "'by': 'auto'" in lines[2]
    assert lines[4].endswith(": cancelled")
    assert not (EXAMPLE / ".pyworkflow").exists()
