"""A real Celery deployment for tests: worker and scheduler processes started with
``subprocess``, a broker from :mod:`tests.services`, storage on SQLite or PostgreSQL.

Workers run in their own process group so a test can SIGKILL a whole worker (main
process and pool children), which is what losing a machine looks like to the rest.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Cluster:
    """Processes sharing one broker and one storage; see the module docstring."""

    tmp: Path
    broker: str
    storage_url: str
    env_extra: dict[str, str] = field(default_factory=dict)
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    schedulers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    storage: Any = None  # the test process's connected backend (same database)

    @property
    def ledger(self) -> Path:
        return self.tmp / "ledger.txt"

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
        return {
            **keep,
            "PYTHONPATH": str(ROOT),
            "PYWORKFLOW_MODULES": "tests.celery.flows",
            "PYWORKFLOW_STORAGE": self.storage_url,
            "PYWORKFLOW_CELERY_BROKER": self.broker,
            "PYWORKFLOW_LEASE_TTL": "3",
            "PYWORKFLOW_TIMER_POLL_INTERVAL": "0.5",
            "CELERY_LEDGER": str(self.ledger),
            **self.env_extra,
        }

    def start_worker(self, name: str, concurrency: int = 2, *extra: str) -> None:
        log = (self.tmp / f"worker-{name}.log").open("ab")
        cmd = [
            sys.executable, "-m", "celery", "-A", "pyworkflow.celery.app", "worker",
            f"--hostname={name}@%h", f"--concurrency={concurrency}", "--loglevel=INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat", *extra,
        ]  # fmt: skip
        proc = subprocess.Popen(
            cmd, cwd=self.tmp, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.workers[name] = proc
        self._wait_for_log(self.tmp / f"worker-{name}.log", "ready.", proc)

    def start_scheduler(self, *extra: str) -> subprocess.Popen[bytes]:
        n = len(self.schedulers)
        log = (self.tmp / f"scheduler-{n}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "pyworkflow.cli", "scheduler", *extra],
            cwd=self.tmp, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.schedulers.append(proc)
        self._wait_for_log(self.tmp / f"scheduler-{n}.log", "pyworkflow scheduler", proc)
        return proc

    def _wait_for_log(self, path: Path, text: str, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            content = path.read_text(errors="replace") if path.exists() else ""
            if text in content:
                return
            if proc.poll() is not None:
                raise AssertionError(f"{path.name}: process exited early:\n{content[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"{path.name}: no {text!r} within 60 s")

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker's whole process group (main process and pool)."""
        proc = self.workers.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def terminate_worker(self, name: str, *, group: bool = False, timeout: float = 60) -> int:
        """SIGTERM the worker's main process (as ``docker stop`` and Kubernetes do) or,
        with ``group``, its whole process group (systemd's default); wait for it to exit
        and return its exit code."""
        proc = self.workers.pop(name)
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError(f"worker {name} still running {timeout} s after SIGTERM") from None

    def kill_scheduler(self, proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.schedulers.remove(proc)

    def worker_of_pid(self, pid: int) -> str:
        """The name of the worker whose process group holds ``pid`` (a pool process)."""
        group = os.getpgid(pid)
        for name, proc in self.workers.items():
            if proc.pid == group:
                return name
        raise LookupError(pid)

    def stop(self) -> None:
        for proc in [*self.workers.values(), *self.schedulers]:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=10)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.workers.clear()
        self.schedulers.clear()

    def ledger_lines(self) -> list[list[str]]:
        if not self.ledger.exists():
            return []
        return [line.split() for line in self.ledger.read_text().splitlines() if line]

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in self.tmp.glob("*.log")
        )


async def wait_all_terminal(
    storage: Any, run_ids: list[str], limit: float, cluster: Cluster
) -> list[Any]:
    """Poll storage until every run is terminal; fail with the stragglers and logs."""
    deadline = time.monotonic() + limit
    pending = set(run_ids)
    while pending and time.monotonic() < deadline:
        for run_id in list(pending):
            run = await storage.get_run(run_id)
            if run is not None and run.status.is_terminal:
                pending.discard(run_id)
        if pending:
            await asyncio.sleep(0.2)
    if pending:
        sample = [await storage.get_run(r) for r in sorted(pending)[:5]]
        states = [(r.run_id, r.status.value, r.lease_owner) for r in sample if r]
        raise AssertionError(
            f"{len(pending)} runs not finished after {limit}s, e.g. {states}\n{cluster.logs()}"
        )
    return [await storage.get_run(r) for r in run_ids]


async def completions_per_step(storage: Any, run_id: str) -> Counter[str]:
    """How many ``step.completed`` events each step operation of ``run_id`` has."""
    events = await storage.get_events(run_id)
    return Counter(e.data["step_id"] for e in events if e.type.value == "step.completed")


def unique_db_name() -> str:
    return f"pwcelery_{uuid.uuid4().hex[:12]}"
