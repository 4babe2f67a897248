"""Flow-control benchmark runner for our engine (run by benchmarks/flow_bench.py).

    python flow_ours.py concurrency|rate --db PATH --n N --limit C --step-ms MS

concurrency: N runs of a workflow with ``concurrency_limit=C`` whose one step sleeps
MS ms, started at once; time from the first start until every run completed, and the
most steps seen running at once. rate: N runs of a workflow with ``rate_limit="C/s"``
and no step; time until every run completed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from pyworkflow import configure, get_workflow_run, start, step, wait_for_run, workflow

running = 0
most = 0


@step(name="fb_call")
async def call(ms: int) -> None:
    global running, most
    running += 1
    most = max(most, running)
    await asyncio.sleep(ms / 1000)
    running -= 1


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["concurrency", "rate"])
    p.add_argument("--db", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--limit", type=int, required=True)
    p.add_argument("--step-ms", type=int, default=20)
    args = p.parse_args()
    configure(storage=f"sqlite:///{args.db}")

    @workflow(name="fb_limited", concurrency_limit=args.limit)
    async def limited(i: int) -> int:
        await call(args.step_ms)
        return i

    @workflow(name="fb_rated", rate_limit=f"{args.limit}/s")
    async def rated(i: int) -> int:
        return i

    target = limited if args.scenario == "concurrency" else rated
    await wait_for_run(await start(target, -1), timeout=30)  # warm-up
    await asyncio.sleep(1.1)  # the warm-up's rate window passes
    global most
    most = 0
    t0 = time.perf_counter()
    run_ids = await asyncio.gather(*(start(target, i) for i in range(args.n)))
    for run_id in run_ids:
        run = await wait_for_run(run_id, timeout=600, poll_interval=0.001)
        assert run.status == "completed", run.error
    seconds = time.perf_counter() - t0
    assert (await get_workflow_run(run_ids[-1])).result == args.n - 1
    out = {"engine": "ours", "scenario": args.scenario, "seconds": seconds, "most": most}
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
