"""A tiny application the crash tests run in child processes.

    python crash_app.py start DB LEDGER [--block-step2]   start a run, print its id, then wait
    python crash_app.py wait DB RUN_ID                    recover/resume until the run is terminal
    python crash_app.py resume DB RUN_ID                  resume once, then wait until terminal
    python crash_app.py parent|chain DB                   start a parent/child or a continue_as_new
                                                          chain, print its id, then wait
    python crash_app.py wait-chain DB RUN_ID              wait until the chain has ended

With CRASH_LOG_FILE set, each process appends its log lines (JSON, INFO) to that file.
Every step appends a line to LEDGER, so the test can count real executions, while the
event log tells how many completions were recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path

from pyworkflow import (
    LocalRuntime,
    StepContext,
    WorkflowAlreadyRunningError,
    WorkflowRun,
    cancel_workflow,
    configure,
    configure_logging,
    continue_as_new,
    get_step_context,
    get_workflow_chain,
    get_workflow_run,
    hook,
    resume,
    resume_hook,
    set_step_context,
    sleep,
    start,
    start_child_workflow,
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


class Tenant(StepContext):
    tenant: str


@step(name="crash_tenant_step")
async def tenant_step(label: str) -> str:
    note(f"tenant {label}")
    return f"{get_step_context().tenant}:{label}"  # type: ignore[attr-defined]


@workflow(name="crash_child")
async def crash_child(n: int) -> int:
    await step1(f"child-{n}")
    await sleep(0.5)
    return n * 10


@workflow(name="crash_parent")
async def crash_parent() -> dict[str, object]:
    await set_step_context(Tenant(tenant="acme"))
    before = await tenant_step("before")
    child = await start_child_workflow(crash_child, 4)
    after = await tenant_step("after")
    return {"before": before, "child": child, "after": after}


@workflow(name="crash_chain")
async def crash_chain(n: int, last: int) -> int:
    await step1(f"link-{n}")
    await sleep(0.3)
    if n < last:
        continue_as_new(n + 1, last)
    return n


async def print_token(token: str) -> None:
    print(f"TOKEN {token}", flush=True)


@workflow(name="crash_approval")
async def crash_approval(order: str) -> str:
    await step1(order)
    decision = await hook("crash_decision", on_created=print_token)
    return f"{order}: {decision['verdict']}"


async def main(argv: list[str]) -> None:
    command, db = argv[0], argv[1]
    configure(storage=f"sqlite:///{db}", timer_poll_interval=0.1)
    if os.environ.get("CRASH_LOG_FILE"):  # lifecycle lines of every process, one file
        configure_logging(
            level="INFO", log_file=os.environ["CRASH_LOG_FILE"], json_logs=True, stderr=False
        )
    if command == "start":
        nap = float(argv[2])
        run_id = await start(crash_order, "ORD-1", nap)
        print(f"RUN {run_id}", flush=True)
        await asyncio.sleep(3600)  # stay alive (holding nothing) until killed
    elif command in ("parent", "chain"):
        run_id = await (start(crash_parent) if command == "parent" else start(crash_chain, 0, 5))
        print(f"RUN {run_id}", flush=True)
        await asyncio.sleep(3600)  # killed by the test while the run is in flight
    elif command == "hook":
        run_id = await start(crash_approval, "ORD-9")
        print(f"RUN {run_id}", flush=True)
        await asyncio.sleep(3600)  # holds the suspended run's storage open, serving timers
    elif command == "cancel":
        await cancel_workflow(argv[2], "operator", wait=True, timeout=60)
        run = await get_workflow_run(argv[2])
        print(f"DONE {run.status.value if run else 'missing'}", flush=True)
    elif command == "deliver":
        await resume_hook(argv[2], {"verdict": "approved"})
        print("DELIVERED", flush=True)
    elif command == "wait-chain":
        chain = await _wait_chain(argv[2], 6)
        print(f"DONE {chain[-1].status.value} {len(chain)} {chain[-1].result}", flush=True)
    elif command == "wait":
        run = await wait_for_run(argv[2], timeout=60)
        print(f"DONE {run.status.value}", flush=True)
        if os.environ.get("CRASH_METRICS"):  # what this process counted (default registry)
            print(f"METRICS {_counted()}", flush=True)
    elif command == "resume":
        with contextlib.suppress(WorkflowAlreadyRunningError):
            await resume(argv[2])  # another racer holds the lease: it will finish the run
        run = await wait_for_run(argv[2], timeout=60)
        print(f"DONE {run.status.value}", flush=True)


def _counted() -> str:
    from prometheus_client import REGISTRY

    return json.dumps(
        {
            f"{sample.name}{sorted(sample.labels.items())}": sample.value
            for family in REGISTRY.collect()
            if family.name.startswith("pyworkflow_") and family.type == "counter"
            for sample in family.samples
            if sample.name.endswith("_total")
        }
    )


async def _wait_chain(run_id: str, length: int) -> list[WorkflowRun]:
    serving = asyncio.ensure_future(LocalRuntime.default().serve())  # resume what is due
    async with asyncio.timeout(60):
        while True:
            chain = await get_workflow_chain(run_id)
            if len(chain) >= length and chain[-1].status.is_terminal:
                serving.cancel()
                return chain
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
