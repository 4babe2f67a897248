"""``pip install "pyworkflow-engine[server]"`` (not editable, from a copy of this checkout)
serves the dashboard from a fresh project directory: pages, their templates and the
vendored static files are in the installed package, and the seed-style workflow module
next to the user's shell is found without PYTHONPATH."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.test_base_install import install_checkout, user_env
from tests.server.test_dashboard_command import free_port, wait_healthy

pytestmark = pytest.mark.timeout(600)

TOKEN = "install-test-admin-token-0123"
FLOWS = """
from pyworkflow import step, workflow


@step()
async def shout(text: str) -> str:
    return text.upper()


@workflow()
async def greeter(name: str) -> str:
    return await shout(f"hello {name}")
"""


@pytest.fixture(scope="module")
def server_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_checkout(tmp_path_factory.mktemp("server-install"), "[server]")


def test_installed_dashboard_serves_pages_and_runs(server_bin: Path, tmp_path: Path) -> None:
    (tmp_path / "myflows.py").write_text(FLOWS)
    port = free_port()
    env = {**user_env(), "PYWORKFLOW_DASHBOARD_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [server_bin / "pyworkflow", "--module", "myflows", "dashboard", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        wait_healthy(base, proc)
        login = httpx.get(f"{base}/login", timeout=10)
        assert login.status_code == 200 and "<form" in login.text
        assert httpx.get(f"{base}/static/htmx.min.js", timeout=10).status_code == 200
        started = httpx.post(
            f"{base}/api/workflows/greeter/runs", json={"args": ["ada"]}, headers=auth, timeout=10
        )
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        for _ in range(200):
            state = httpx.get(f"{base}/api/runs/{run_id}", headers=auth, timeout=10).json()
            if state["status"] == "completed":
                break
            time.sleep(0.1)
        assert state["result"] == "HELLO ADA"
        page = httpx.get(f"{base}/runs/{run_id}", headers=auth, timeout=10)
        assert page.status_code == 200 and "greeter" in page.text and "shout" in page.text
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
