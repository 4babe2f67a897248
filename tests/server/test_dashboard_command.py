"""``pyworkflow dashboard`` as a user runs it: a subprocess from a project directory, no
PYTHONPATH, the workflow module named with ``--module``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import ADMIN_TOKEN, READ_TOKEN

FLOWS = """
from pyworkflow import step, workflow


@step()
async def add(a: int, b: int) -> int:
    return a + b


@workflow()
async def adder(a: int, b: int) -> int:
    return await add(a, b)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def pyworkflow_command() -> str:
    return str(Path(sys.executable).with_name("pyworkflow"))


def wait_healthy(base: str, proc: subprocess.Popen[str], seconds: float = 30) -> None:
    """Return once the server at ``base`` answers ``/healthz``; fail if it exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.1)
    raise AssertionError(f"{base} did not answer /healthz within {seconds} s")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """``pyworkflow --module myflows dashboard`` on a free port; its base URL."""
    (tmp_path / "myflows.py").write_text(FLOWS)
    port = free_port()
    env = user_env(
        PYWORKFLOW_DASHBOARD_TOKEN=ADMIN_TOKEN, PYWORKFLOW_DASHBOARD_READ_TOKEN=READ_TOKEN
    )
    proc = subprocess.Popen(
        [pyworkflow_command(), "--module", "myflows", "dashboard", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc)
        yield base
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
        assert ADMIN_TOKEN not in stderr and READ_TOKEN not in stderr


def test_serves_api_and_runs_workflows_of_its_module(served: str) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    started = httpx.post(
        f"{served}/api/workflows/adder/runs", json={"args": [2, 3]}, headers=admin, timeout=10
    )
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    deadline = time.monotonic() + 20
    run: dict[str, object] = {}
    while time.monotonic() < deadline:
        run = httpx.get(f"{served}/api/runs/{run_id}", headers=admin, timeout=10).json()
        if run["status"] == "completed":
            break
        time.sleep(0.1)
    assert run["status"] == "completed" and run["result"] == 5
    assert httpx.get(f"{served}/api/runs", timeout=10).status_code == 401
    spec = httpx.get(f"{served}/api/openapi.json", headers=admin, timeout=10).json()
    assert "/api/runs" in spec["paths"]
    assert httpx.get(f"{served}/api/openapi.json", timeout=10).status_code == 401


def test_refuses_open_server_on_a_public_address(tmp_path: Path) -> None:
    proc = subprocess.run(
        [pyworkflow_command(), "dashboard", "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=tmp_path,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: refusing to serve the dashboard on 0.0.0.0")
    assert "PYWORKFLOW_DASHBOARD_TOKEN" in proc.stderr


def test_refuses_a_short_token(tmp_path: Path) -> None:
    proc = subprocess.run(
        [pyworkflow_command(), "dashboard", "--port", str(free_port())],
        cwd=tmp_path,
        env=user_env(PYWORKFLOW_DASHBOARD_TOKEN="tiny-secret"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "at least 16 characters" in proc.stderr
    assert "tiny-secret" not in proc.stderr  # a secret, even a bad one, is never echoed
