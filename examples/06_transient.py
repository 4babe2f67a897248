"""Transient mode: ``@workflow(durable=False)`` and ``start(..., durable=False)``.

A transient run keeps no event log: steps still retry with their policy and ``sleep``
still waits, but both happen in memory (``asyncio.sleep``) and ``start`` returns when the
run has finished. The run is visible through ``get_workflow_run`` while this process
lives; storage never sees it. It is faster and lighter, and it does not survive a crash.

The same workflow started normally (durable) is shown last for contrast: its events are
stored.

Storage: ``$PYWORKFLOW_EXAMPLE_DB`` if set, else ``.pyworkflow/examples.db``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter

from pyworkflow import (
    Event,
    RetryableError,
    configure,
    get_storage,
    get_workflow_events,
    get_workflow_run,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)

calls: Counter[str] = Counter()


@step(max_retries=2, retry_delay=0.2)
async def flaky_lookup(key: str) -> str:
    calls[key] += 1
    if calls[key] == 1:
        raise RetryableError(f"cache miss for {key}")  # retried in memory after 0.2 s
    return f"value-of-{key}"


@workflow(name="ex06_transient_lookup", durable=False)
async def transient_lookup(key: str) -> str:
    value = await flaky_lookup(key)
    await sleep("0.3s")  # an in-memory asyncio.sleep here
    return value


@workflow(name="ex06_lookup")  # durable by default
async def lookup(key: str) -> str:
    value = await flaky_lookup(key)
    await sleep("0.3s")
    return value


async def show(label: str, run_id: str, elapsed: float | None = None) -> list[Event]:
    run = await get_workflow_run(run_id)
    assert run is not None
    events = await get_workflow_events(run_id)
    stored = await get_storage().get_run(run_id)
    took = f" start() took {elapsed:.2f}s," if elapsed is not None else ""
    print(
        f"{label}: {run_id}{took} status={run.status.value} result={run.result!r}, "
        f"{len(events)} stored events, in storage: {stored is not None}"
    )
    return events


async def main() -> None:
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", ".pyworkflow/examples.db")
    configure(storage=f"sqlite:///{db}")

    # 1. the decorator makes every run of this workflow transient
    began = time.monotonic()
    run_id = await start(transient_lookup, "a")
    elapsed = time.monotonic() - began
    events = await show("@workflow(durable=False)", run_id, elapsed)
    run = await get_workflow_run(run_id)
    assert run is not None and run.status == "completed" and run.result == "value-of-a"
    assert events == [] and await get_storage().get_run(run_id) is None
    assert calls["a"] == 2  # the retry happened, in memory
    assert elapsed >= 0.45, elapsed  # 0.2 s retry delay + 0.3 s sleep, inside start()

    # 2. a durable workflow, made transient for one call
    began = time.monotonic()
    run_id = await start(lookup, "b", durable=False)
    elapsed = time.monotonic() - began
    events = await show("start(..., durable=False)", run_id, elapsed)
    run = await get_workflow_run(run_id)
    assert run is not None and run.status == "completed" and run.result == "value-of-b"
    assert events == [] and await get_storage().get_run(run_id) is None
    assert calls["b"] == 2

    # 3. contrast: the same workflow, durable (the default)
    run_id = await start(lookup, "c")
    run = await wait_for_run(run_id, timeout=30)
    events = await show("durable (default)", run_id)
    assert run.status == "completed" and run.result == "value-of-c"
    print("  " + ", ".join(e.type.value for e in events))
    assert len(events) > 0 and await get_storage().get_run(run_id) is not None

    print("\nOK: transient runs retried and slept in memory and stored nothing")


if __name__ == "__main__":
    asyncio.run(main())
