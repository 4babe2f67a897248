"""Flow control: how many runs may execute at once, and how fast runs may start.

``@workflow(concurrency_limit=2, concurrency_key=...)``: at most two runs per customer
call the fragile API at once; the others wait ``pending`` (queued, in start order) and
are let in as slots free up. A run that sleeps holds no slot. The limit is kept in
storage, so it holds across every process and worker sharing it.

``@workflow(rate_limit="5/s")``: starts beyond five a second are delayed, never refused.

Storage: ``$PYWORKFLOW_EXAMPLE_DB`` if set, else ``.pyworkflow/examples.db``.
"""

from __future__ import annotations

import asyncio
import os
import time

from pyworkflow import configure, start, step, wait_for_run, workflow

calling: dict[str, int] = {}
most: dict[str, int] = {}


@step()
async def call_fragile_api(customer: str, order: int) -> str:
    calling[customer] = calling.get(customer, 0) + 1
    most[customer] = max(most.get(customer, 0), calling[customer])
    await asyncio.sleep(0.2)  # the slow, fragile part
    calling[customer] -= 1
    return f"{customer}-{order} synced"


@workflow(
    name="ex19_sync_order",
    concurrency_limit=2,
    concurrency_key=lambda customer, order: customer,
)
async def sync_order(customer: str, order: int) -> str:
    return await call_fragile_api(customer, order)


@workflow(name="ex19_send_email", rate_limit="5/s")
async def send_email(to: str) -> float:
    return time.time()


async def main() -> None:
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", ".pyworkflow/examples.db")
    configure(storage=f"sqlite:///{db}")

    print("1) eight orders of two customers, at most two per customer at once")
    starts = [start(sync_order, customer, n) for customer in ("acme", "globex") for n in range(4)]
    run_ids = await asyncio.gather(*starts)
    runs = [await wait_for_run(r, timeout=30) for r in run_ids]
    assert all(r.status == "completed" for r in runs)
    print(f"   all completed; most calls at once per customer: {most}")
    assert most == {"acme": 2, "globex": 2}

    print("\n2) twelve emails with a rate limit of 5 a second")
    began = time.time()
    run_ids = await asyncio.gather(*(start(send_email, f"user{i}@example.com") for i in range(12)))
    sent = sorted([(await wait_for_run(r, timeout=30)).result - began for r in run_ids])
    print("   started at (s): " + ", ".join(f"{t:.1f}" for t in sent))
    assert all(sent[i + 5] - sent[i] >= 0.95 for i in range(len(sent) - 5))
    print("\nOK: concurrency held per customer, starts spread by the rate limit")


if __name__ == "__main__":
    asyncio.run(main())
