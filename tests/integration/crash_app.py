"""A tiny application the crash tests run in child processes.

    python crash_app.py start DB LEDGER [--block-step2]   start a run, print its id, then wait
    python crash_app.py wait DB RUN_ID                    recover/resume until the run is terminal
    python crash_app.py resume DB RUN_ID                  resume once, then wait until terminal

Every step appends a line to LEDGER, so the test can count real executions, while the
event log tells how many completions were recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

from pyworkflow import (
    WorkflowAlreadyRunningError,
    configure,
    resume,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)

LEDGER = Path(os.environ.get("CRASH_LEDGER", "ledger.txt"))


def note(line: str) -> None:
    with LEDGER.open("a") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


@step(name="crash_step1")
async def step1(order: str) -> str:
    note(f"step1 {order}")
    return f"one:{order}"


@step(name="crash_step2")
async def step2(order: str) -> str:
    note(f"step2 {order}")
    if os.environ.get("CRASH_BLOCK_STEP2") == "1":
        print("BLOCKING", flush=True)
        await asyncio.sleep(3600)
    await asyncio.sleep(0.02)
    return f"two:{order}"


@step(name="crash_step3")
async def step3(order: str) -> str:
    note(f"step3 {order}")
    await asyncio.sleep(0.02)
    return f"three:{order}"


@workflow(name="crash_order")
async def crash_order(order: str, nap: float) -> list[str]:
    a = await step1(order)
    await sleep(nap)
    b = await step2(order)
    c = await step3(order)
    return [a, b, c]


async def main(argv: list[str]) -> None:
    command, db = argv[0], argv[1]
    configure(storage=f"sqlite:///{db}", timer_poll_interval=0.1)
    if command == "start":
        nap = float(argv[2])
        run_id = await start(crash_order, "ORD-1", nap)
        print(f"RUN {run_id}", flush=True)
        await asyncio.sleep(3600)  # stay alive (holding nothing) until killed
    elif command == "wait":
        run = await wait_for_run(argv[2], timeout=60)
        print(f"DONE {run.status.value}", flush=True)
    elif command == "resume":
        with contextlib.suppress(WorkflowAlreadyRunningError):
            await resume(argv[2])  # another racer holds the lease: it will finish the run
        run = await wait_for_run(argv[2], timeout=60)
        print(f"DONE {run.status.value}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
