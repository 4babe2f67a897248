"""The seed README's onboarding workflow on Celery workers (needs Redis on localhost).

This script plays every part of a deployment on one machine: it starts a Celery worker
and the `pyworkflow scheduler` as subprocesses (in production: `celery -A
pyworkflow.celery.app worker` and `pyworkflow scheduler`/`celery ... beat` on their own
hosts), then starts runs the way an application does and waits for them.

    python examples/distributed/onboarding.py

Environment: PYWORKFLOW_CELERY_BROKER (default redis://localhost:6379/0),
PYWORKFLOW_EXAMPLE_DB (SQLite file shared by all processes; default ./onboarding.db).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyworkflow
from pyworkflow import sleep, start, step, workflow

HERE = Path(__file__).resolve().parent


@step()
async def send_welcome_email(user_id: str) -> str:
    # Runs on any available Celery worker (the step queue).
    print(f"[pid {os.getpid()}] sending welcome email to {user_id}", flush=True)
    return f"Email sent to {user_id}"


@step()
async def send_tips_email(user_id: str) -> str:
    print(f"[pid {os.getpid()}] sending tips email to {user_id}", flush=True)
    return f"Tips sent to {user_id}"


@workflow()
async def onboarding_workflow(user_id: str) -> str:
    await send_welcome_email(user_id)
    await sleep("2s")  # "1d" in real life: the run is suspended, no worker is held
    await send_tips_email(user_id)
    return "Onboarding complete"


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", *args], env=env, start_new_session=True, cwd=Path.cwd()
    )


async def main() -> None:
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", str(Path.cwd() / "onboarding.db"))
    broker = os.environ.get("PYWORKFLOW_CELERY_BROKER", "redis://localhost:6379/0")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "PYWORKFLOW_MODULES": "onboarding",  # the workers import this file as a module
        "PYWORKFLOW_STORAGE": f"sqlite:///{db}",
        "PYWORKFLOW_CELERY_BROKER": broker,
    }
    worker = _spawn(
        ["celery", "-A", "pyworkflow.celery.app", "worker", "--concurrency=2",
         "--loglevel=WARNING", "--without-gossip", "--without-mingle"],
        env,
    )  # fmt: skip
    scheduler = _spawn(["pyworkflow.cli", "scheduler"], env)
    try:
        # The application: same storage and broker, runtime "celery".
        pyworkflow.configure(storage=f"sqlite:///{db}", celery_broker=broker, runtime="celery")
        began = time.monotonic()
        run_ids = [await start(onboarding_workflow, user_id=f"user_{i}") for i in range(3)]
        print(f"started {len(run_ids)} runs in {time.monotonic() - began:.3f}s", flush=True)
        storage = pyworkflow.get_storage()
        runs = [await pyworkflow.wait_for_run(r, timeout=60) for r in run_ids]
        for run in runs:
            print(run.run_id, run.status.value, run.result)
            assert run.status == "completed" and run.result == "Onboarding complete"
        await storage.close()
    finally:
        for proc in (worker, scheduler):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


if __name__ == "__main__":
    asyncio.run(main())
