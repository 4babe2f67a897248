"""Signals benchmark runner for our engine (run by benchmarks/signals_bench.py).

    python signals_ours.py burst|latency --db PATH --n N

burst: one workflow takes N messages sent from outside as fast as the sender can; time
from the first send to the run's completion. latency: N times, a workflow waits for one
message; time from the send until waiting for the run returns (polled every 1 ms, as for DBOS).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from pyworkflow import (
    configure,
    send_signal,
    start,
    wait_for_run,
    wait_for_signal,
    workflow,
)


@workflow(name="sb_take")
async def take(n: int) -> int:
    total = 0
    for _ in range(n):
        total += await wait_for_signal("sb_msg")
    return total


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["burst", "latency"])
    p.add_argument("--db", required=True)
    p.add_argument("--n", type=int, required=True)
    args = p.parse_args()
    configure(storage=f"sqlite:///{args.db}")
    await wait_for_run(await start(take, 1, signal=("sb_msg", 1)), timeout=30)  # warm-up
    out: dict[str, object] = {"engine": "ours", "scenario": args.scenario, "n": args.n}
    if args.scenario == "burst":
        run_id = await start(take, args.n)
        t0 = time.perf_counter()
        for _ in range(args.n):
            await send_signal(run_id, "sb_msg", 1)
        run = await wait_for_run(run_id, timeout=600, poll_interval=0.001)
        out["seconds"] = time.perf_counter() - t0
        assert run.result == args.n, run.result
    else:
        waits = []
        for _ in range(args.n):
            run_id = await start(take, 1)
            sent = time.time()
            await send_signal(run_id, "sb_msg", 1)
            run = await wait_for_run(run_id, timeout=30, poll_interval=0.001)
            assert run.result == 1, run.result
            waits.append(time.time() - sent)  # as for DBOS: when the wait returns
        waits.sort()
        out.update(median_s=waits[len(waits) // 2], p95_s=waits[int(len(waits) * 0.95)])
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
