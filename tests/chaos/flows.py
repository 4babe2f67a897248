"""The workflow the chaos run starts (imported by the workers through
``PYWORKFLOW_MODULES=tests.chaos.flows``).

Every step body appends one line to the ledger file named by ``CHAOS_LEDGER``: a single
``write`` on a descriptor opened with ``O_APPEND``, so lines from any number of processes
never interleave, and a line is on disk (in the page cache) as soon as the call returns,
even when the process is SIGKILLed right after. A line::

    <kind> <n> <step_id> <attempt> <pid> <unix time>

``n`` is the run's number (its argument); the harness maps it to the run id. The ledger
says which step bodies really ran, when, and how often; the run's history says which
completions were recorded. The ``end`` line is written each time the workflow body
reaches its ``return`` (again on a replay after a crash between that and the commit).
"""

from __future__ import annotations

import asyncio
import os
import time

from pyworkflow import sleep, step, workflow
from pyworkflow.context.base import current_step

#: Recovery attempts a run may use: the harness kills a worker every few seconds, so a
#: run can lose its process more often than the default (3) allows; exhausting a
#: declared limit is the run's own failure, not what this run looks for.
MAX_RECOVERY_ATTEMPTS = 25


def ledger(kind: str, n: int) -> None:
    path = os.environ.get("CHAOS_LEDGER")
    if not path:
        return
    info = current_step.get()
    step_id, attempt = (info.step_id, info.attempt) if info is not None else ("-", 0)
    line = f"{kind} {n} {step_id} {attempt} {os.getpid()} {time.time():.6f}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def nap_seconds(n: int) -> int:
    """The durable sleep of run ``n``: 1 to 5 s."""
    return 1 + n % 5


def flaky_run(n: int) -> bool:
    """Runs whose ``chaos_flaky`` step fails its first attempt (a durable retry wait)."""
    return n % 10 == 3


def expected(n: int) -> int:
    """What run ``n`` returns."""
    fetched = sum(n * 10 + i for i in range(5))
    return fetched + 1 + n + 7


@step(name="chaos_fetch")
async def fetch(n: int, i: int) -> int:
    """A dispatched step (the step queue); long enough to be killed in the middle."""
    ledger("fetch", n)
    await asyncio.sleep(0.02 + 0.02 * (n % 4))
    return n * 10 + i


@step(name="chaos_tally", force_local=True)
async def tally(n: int, values: list[int]) -> int:
    """Runs inside the workflow task (no step-queue hop)."""
    ledger("tally", n)
    return sum(values)


@step(name="chaos_after_sleep")
async def after_sleep(n: int) -> int:
    """The first step after the sleep: its ledger time must not precede the sleep's
    stored wake-up time."""
    ledger("after_sleep", n)
    return 1


@step(name="chaos_flaky", max_retries=3, retry_delay=1)
async def flaky(n: int) -> int:
    ledger("flaky", n)
    info = current_step.get()
    if flaky_run(n) and info is not None and info.attempt == 1:
        raise RuntimeError("chaos: the first attempt of this step always fails")
    return n + 7


@workflow(name="chaos_flow", max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
async def chaos_flow(n: int) -> int:
    """One step, three in parallel, an inline step, a 1-5 s durable sleep, then a step
    and two more in parallel (one of them retried after a failure in some runs)."""
    first = await fetch(n, 0)
    fanned = await asyncio.gather(*(fetch(n, i) for i in (1, 2, 3)))
    total = await tally(n, [first, *fanned])
    await sleep(nap_seconds(n))
    total += await after_sleep(n)
    more = await asyncio.gather(fetch(n, 4), flaky(n))
    ledger("end", n)
    return total + sum(more)
