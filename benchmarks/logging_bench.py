"""What lifecycle logging costs: S1 (ten-step workflows, one after another, SQLite) with
pyworkflow at its default level (WARNING: no line per run) beside INFO lines written as
JSON to a file (``configure_logging(level="INFO", log_file=..., json_logs=True)``: a
started and a completed line per run). Goal: INFO within 15 % of WARNING.

Each measurement runs in a fresh process; the modes alternate, the median of
``--repeats`` is reported.

    python benchmarks/logging_bench.py [--workflows 2000] [--repeats 5]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fresh_process import compare  # noqa: E402

MODES = ("warning", "info-json")


async def _measure(mode: str, workflows: int, tmp: Path) -> dict[str, float]:
    from workload import workflows_per_second

    import pyworkflow
    from pyworkflow import configure_logging

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


def main() -> None:
    compared = compare(__file__, __doc__, MODES, _measure)
    if compared is None:
        return
    opts, results = compared
    rates = {mode: statistics.median(r["wf_per_s"] for r in results[mode]) for mode in MODES}
    base = rates["warning"]
    print(f"S1, {opts.workflows} workflows x 10 steps, SQLite, median of {opts.repeats}")
    print(f"{'mode':<12} {'wf/s':>8} {'steps/s':>9} {'lines':>7} {'vs warning':>11}")
    for mode in MODES:
        rate, lines = rates[mode], int(results[mode][-1]["lines"])
        print(f"{mode:<12} {rate:>8.1f} {rate * 10:>9.0f} {lines:>7} {rate / base:>10.2f}x")


if __name__ == "__main__":
    main()
