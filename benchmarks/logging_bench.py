"""What lifecycle logging costs: S1 (ten-step workflows, one after another, SQLite) with
pyworkflow at its default level (WARNING: no line per run) beside INFO lines written as
JSON to a file (``configure_logging(level="INFO", log_file=..., json_logs=True)``: a
started and a completed line per run). Goal: INFO within 15 % of WARNING.

Each measurement runs in a fresh process; the modes alternate, the median of
``--repeats`` is reported.

    python benchmarks/logging_bench.py [--workflows 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MODES = ("warning", "info-json")


async def _measure(mode: str, workflows: int, tmp: Path) -> dict[str, float]:
    import pyworkflow
    from pyworkflow import configure_logging

    sys.path.insert(0, str(Path(__file__).parent))
    from workload import workflows_per_second

    pyworkflow.configure(storage=f"sqlite:///{tmp}/bench.db")
    log_file = tmp / "workflow.log"
    if mode == "info-json":
        configure_logging(level="INFO", log_file=str(log_file), json_logs=True, stderr=False)
    storage = pyworkflow.get_storage()
    rate = await workflows_per_second(storage, workflows)
    await storage.close()
    from loguru import logger

    logger.complete()
    lines = len(log_file.read_text().splitlines()) if log_file.exists() else 0
    return {"wf_per_s": rate, "lines": lines}


def _child(mode: str, workflows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(asyncio.run(_measure(mode, workflows, Path(tmp)))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workflows", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.child:
        _child(opts.child, opts.workflows)
        return
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    lines: dict[str, int] = {}
    for _ in range(opts.repeats):
        for mode in MODES:
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--workflows", str(opts.workflows)],
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            rates[mode].append(result["wf_per_s"])
            lines[mode] = int(result["lines"])
    base = statistics.median(rates["warning"])
    print(f"S1, {opts.workflows} workflows x 10 steps, SQLite, median of {opts.repeats}")
    print(f"{'mode':<12} {'wf/s':>8} {'steps/s':>9} {'lines':>7} {'vs warning':>11}")
    for mode in MODES:
        rate = statistics.median(rates[mode])
        print(f"{mode:<12} {rate:>8.1f} {rate * 10:>9.0f} {lines[mode]:>7} {rate / base:>10.2f}x")


if __name__ == "__main__":
    main()
