"""Crash recovery: a run whose process is killed mid-workflow is finished by another.

The script runs twice over:

1. The parent launches itself as a child process (``python 10_crash_recovery.py
   --child ...``). The child starts the ``ex10_fulfil_order`` workflow; its first step
   (``charge``) completes and is recorded, then the second step (``ship``) blocks,
   because the child is told so through an environment variable.
2. The parent polls storage until the log shows ``charge`` completed, then kills the
   child with SIGKILL: no cleanup, no final events; the run stays ``running`` with a
   lease owned by a process that no longer exists.
3. The parent calls ``wait_for_run(run_id)``. Its local runtime sees that the run's
   owner process is dead, records ``workflow.interrupted``, replays the history (the
   recorded ``charge`` result is reused: the step body does not run again) and runs
   ``ship`` live (it does not block in the parent), so the run completes.

The ``charge`` step appends one line per execution to a ledger file, so the script can
assert the side effect happened exactly once across both processes. POSIX only (SIGKILL).

Storage: ``$PYWORKFLOW_EXAMPLE_DB`` if set, else ``.pyworkflow/examples.db`` (shared by
parent and child; SQLite is safe to share between processes).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

from pyworkflow import (
    Event,
    EventType,
    configure,
    get_workflow_events,
    get_workflow_run,
    start,
    step,
    wait_for_run,
    workflow,
)

BLOCK_ENV = "PYWORKFLOW_EXAMPLE_BLOCK_SHIP"  # set only in the child's environment
SCRIPT = str(Path(__file__).resolve())


def append_line(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


def read_and_remove(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    path.unlink()
    return lines


@step()
async def charge(order_id: str, ledger: str) -> str:
    # the side effect that must happen once (file I/O off the event loop)
    await asyncio.to_thread(append_line, ledger, f"charged {order_id} in pid {os.getpid()}")
    return f"charge-{order_id}"


@step()
async def ship(order_id: str) -> str:
    if os.environ.get(BLOCK_ENV) == "1":
        print(f"[child {os.getpid()}] ship step is blocking; waiting to be killed", flush=True)
        await asyncio.sleep(30)
    return f"shipped {order_id} from pid {os.getpid()}"


@workflow(name="ex10_fulfil_order")
async def fulfil_order(order_id: str, ledger: str) -> dict[str, str]:
    payment = await charge(order_id, ledger)
    shipment = await ship(order_id)
    return {"payment": payment, "shipment": shipment}


def configure_storage() -> None:
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", ".pyworkflow/examples.db")
    configure(storage=f"sqlite:///{db}")


async def child(run_id: str, ledger: str) -> None:
    configure_storage()
    print(f"[child {os.getpid()}] starting run {run_id}", flush=True)
    await start(fulfil_order, "ORD-99", ledger, run_id=run_id)
    print(f"[child {os.getpid()}] ERROR: the run finished; it should have been killed")


def charge_recorded(events: list[Event]) -> bool:
    return any(
        e.type == EventType.STEP_COMPLETED and e.data["step_name"] == "charge" for e in events
    )


async def wait_for_charge(run_id: str, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if charge_recorded(await get_workflow_events(run_id)):
            return
        if proc.returncode is not None:
            raise AssertionError(f"the child exited early with code {proc.returncode}")
        await asyncio.sleep(0.05)
    raise AssertionError("the child did not record the charge step in time")


async def main() -> None:
    configure_storage()
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", ".pyworkflow/examples.db")
    run_id = f"ex10-{uuid.uuid4().hex[:12]}"
    ledger = Path(f"{db}.{run_id}.ledger")
    ledger.parent.mkdir(parents=True, exist_ok=True)

    env = {**os.environ, BLOCK_ENV: "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, SCRIPT, "--child", run_id, str(ledger), env=env
    )
    try:
        await wait_for_charge(run_id, proc)
        print(f"[parent] 'charge' is recorded; killing child {proc.pid} with SIGKILL")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()  # reap it, so its pid is really gone

    run = await get_workflow_run(run_id)
    assert run is not None
    print(f"[parent] after the kill: status={run.status.value} lease_owner={run.lease_owner}")
    assert run.status == "running"

    run = await wait_for_run(run_id, timeout=20)
    print(f"[parent] recovered: status={run.status.value} result={run.result}")
    print(f"[parent] recovery_attempts={run.recovery_attempts}")

    events = await get_workflow_events(run_id)
    print("\nevent log:")
    for e in events:
        detail = {k: v for k, v in e.data.items() if k not in ("args", "kwargs", "result")}
        print(f"  {e.sequence:>3}  {e.timestamp:%H:%M:%S.%f}  {e.type.value:<22} {detail}")
    charges = await asyncio.to_thread(read_and_remove, ledger)
    print(f"\nledger: {charges}")

    assert run.status == "completed"
    assert run.result["payment"] == "charge-ORD-99"
    assert run.result["shipment"] == f"shipped ORD-99 from pid {os.getpid()}"  # ran here
    charge_done = [
        e for e in events if e.type == EventType.STEP_COMPLETED and e.data["step_name"] == "charge"
    ]
    assert len(charge_done) == 1, charge_done  # recorded exactly once
    assert len(charges) == 1, charges  # and its body ran exactly once (in the child)
    assert f"pid {proc.pid}" in charges[0]
    assert any(e.type == EventType.WORKFLOW_INTERRUPTED for e in events)
    assert run.recovery_attempts == 1
    print("OK: the killed run was recovered and completed; 'charge' ran and was recorded once")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        asyncio.run(child(sys.argv[2], sys.argv[3]))
    else:
        asyncio.run(main())
