"""A real ``pyworkflow dashboard`` (uvicorn) in a subprocess, for tests that need HTTP over
a socket and a process of its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.server.conftest import ADMIN_TOKEN, READ_TOKEN

REPO = Path(__file__).resolve().parents[2]


@dataclass
class LiveServer:
    url: str
    log: Path

    def output(self) -> str:
        """Everything the server printed (its log lines included)."""
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def dashboard(
    storage_url: str, workdir: Path, *, modules: tuple[str, ...] = ("tests.server.flows",)
) -> Iterator[LiveServer]:
    """``pyworkflow --storage URL [--module M] dashboard --no-ui`` on a free port, with
    both tokens set, run from ``workdir``; stopped on exit."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env.update(
        PYWORKFLOW_DASHBOARD_TOKEN=ADMIN_TOKEN,
        PYWORKFLOW_DASHBOARD_READ_TOKEN=READ_TOKEN,
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
    )
    command = [sys.executable, "-m", "pyworkflow.cli", "--storage", storage_url]
    for module in modules:
        command += ["--module", module]
    command += ["dashboard", "--no-ui", "--port", str(port)]
    log = workdir / f"dashboard-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=sink, stderr=sink)
    server = LiveServer(url=f"http://127.0.0.1:{port}", log=log)
    try:
        _wait_healthy(server, process)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(server: LiveServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the dashboard exited:\n{server.output()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the dashboard did not answer within 30 s:\n{server.output()}")
