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
from pathlib import Path
from typing import Any

from workload import STEPS_PER_WORKFLOW, long_run, resume_cost, workflows_per_second

from pyworkflow import start
from pyworkflow.storage import storage_from_url
from pyworkflow.storage.base import StorageBackend


async def throughput(storage: StorageBackend, workflows: int = 200) -> dict[str, float]:
    per_s = await workflows_per_second(storage, workflows)
    return {"workflows_per_s": per_s, "steps_per_s": per_s * STEPS_PER_WORKFLOW}


async def long_history(storage: StorageBackend, n: int = 3000) -> float:
    t0 = time.perf_counter()
    await start(long_run, n, storage=storage)
    return time.perf_counter() - t0


async def measure(url: str) -> dict[str, Any]:
    storage = storage_from_url(url)
    result: dict[str, Any] = {"storage": url.split("?")[0].split(":")[0]}
    if "synchronous=FULL" in url:
        result["storage"] += " (FULL)"
    elif url.startswith("sqlite"):
        result["storage"] += " (NORMAL)"
    result.update(await throughput(storage))
    result["s_3000_steps"] = await long_history(storage)
    result["s_resume_3000_live"], result["s_resume_3000_cold"] = await resume_cost(storage)
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
