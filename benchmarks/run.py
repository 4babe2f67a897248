"""First benchmark: durable throughput and replay cost on the embedded default.

Prints one table and writes ``benchmarks/results/latest.json``:

* ``steps/s`` and ``workflows/s``: 200 workflows x 10 trivial steps, one after another.
* ``3000-step run``: one workflow of 3,000 sequential steps (seconds, end to end).
* ``resume``: a run with 1,500 completed steps (3,000 step events) suspended on a
  sleep; ``live`` = due time to completion when the local runtime wakes it, ``cold`` =
  one resume with no runtime service running (read history, replay, finish).

Storage: SQLite in WAL mode with ``synchronous=NORMAL`` (the default) and ``FULL``; and
memory for reference. Peers are compared side by side in a later benchmark suite.
"""

from __future__ import annotations

import asyncio
import json
import platform
import resource
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from pyworkflow import EventType, get_runtime, sleep, start, step, wait_for_run, workflow
from pyworkflow.engine.runner import new_owner_id, resume_run
from pyworkflow.storage import storage_from_url
from pyworkflow.storage.base import StorageBackend


@step(name="bench_noop")
async def noop(i: int) -> int:
    return i


@workflow(name="bench_ten_steps")
async def ten_steps() -> int:
    total = 0
    for i in range(10):
        total += await noop(i)
    return total


@workflow(name="bench_long")
async def long_run(n: int) -> int:
    for i in range(n):
        await noop(i)
    return n


@workflow(name="bench_sleeper")
async def sleeper(n: int) -> int:
    for i in range(n):
        await noop(i)
    await sleep(0.2)
    await noop(-1)
    return n


async def throughput(storage: StorageBackend, workflows: int = 200) -> dict[str, float]:
    await start(ten_steps, storage=storage)  # warm up connection and schema
    t0 = time.perf_counter()
    for _ in range(workflows):
        await start(ten_steps, storage=storage)
    elapsed = time.perf_counter() - t0
    return {"workflows_per_s": workflows / elapsed, "steps_per_s": workflows * 10 / elapsed}


async def long_history(storage: StorageBackend, n: int = 3000) -> float:
    t0 = time.perf_counter()
    await start(long_run, n, storage=storage)
    return time.perf_counter() - t0


async def resume_cost(storage: StorageBackend, steps: int = 1500) -> dict[str, float]:
    """Replay cost of a 3,000-event history, measured two ways.

    ``live``: the local runtime's own timer wakes the run; time from its due time to its
    completion. ``cold``: with no runtime service running (as in a freshly started
    process), one ``resume_run`` call: read the history, replay it, finish.
    """
    run_id = await start(sleeper, steps, storage=storage)
    run = await wait_for_run(run_id, storage=storage, timeout=60)
    assert run.completed_at is not None
    events = await storage.get_events(run_id)
    due = next(e for e in events if e.type == EventType.SLEEP_STARTED).data["fire_at"]
    live = (run.completed_at - datetime.fromisoformat(due)).total_seconds()

    run_id = await start(sleeper, steps, storage=storage)
    await get_runtime("local").shutdown()  # no timer loop: nothing resumes it but us
    await asyncio.sleep(0.25)
    t0 = time.perf_counter()
    await resume_run(storage, run_id, owner=new_owner_id(), lease_ttl=30)
    cold = time.perf_counter() - t0
    run = await storage.get_run(run_id)
    assert run is not None and run.status == "completed", run
    return {"live": live, "cold": cold}


async def measure(url: str) -> dict[str, Any]:
    storage = storage_from_url(url)
    result: dict[str, Any] = {"storage": url.split("?")[0].split(":")[0]}
    if "synchronous=FULL" in url:
        result["storage"] += " (FULL)"
    elif url.startswith("sqlite"):
        result["storage"] += " (NORMAL)"
    result.update(await throughput(storage))
    result["s_3000_steps"] = await long_history(storage)
    resumed = await resume_cost(storage)
    result["s_resume_3000_live"] = resumed["live"]
    result["s_resume_3000_cold"] = resumed["cold"]
    await storage.close()
    return result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        urls = [
            "memory://",
            f"sqlite:///{tmp}/normal.db",
            f"sqlite:///{tmp}/full.db?synchronous=FULL",
        ]
        rows = [asyncio.run(measure(url)) for url in urls]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    header = (
        f"{'storage':<18}{'steps/s':>10}{'wf/s':>9}{'3000 steps (s)':>16}"
        f"{'resume live (ms)':>18}{'resume cold (ms)':>18}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['storage']:<18}{r['steps_per_s']:>10.0f}{r['workflows_per_s']:>9.0f}"
            f"{r['s_3000_steps']:>16.3f}{r['s_resume_3000_live'] * 1000:>18.1f}"
            f"{r['s_resume_3000_cold'] * 1000:>18.1f}"
        )
    print(f"\npeak RSS: {rss_mb:.0f} MB; python {sys.version.split()[0]} on {platform.machine()}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps({"rows": rows, "peak_rss_mb": rss_mb}, indent=2))


if __name__ == "__main__":
    main()
