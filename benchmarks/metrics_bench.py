"""What Prometheus metrics cost: S1 (ten-step workflows, one after another, SQLite) with
prometheus_client not installed (hidden from the process, as on a base install), installed
with metrics turned off (``metrics_enabled=False``), and on (the default when installed:
counters and histograms in the default registry, as a single process counts them).

Each measurement runs in a fresh process; the modes alternate, the median of
``--repeats`` is reported.

    python benchmarks/metrics_bench.py [--workflows 2000] [--repeats 5]
"""

from __future__ import annotations

import importlib.abc
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from fresh_process import compare  # noqa: E402

MODES = ("absent", "off", "on")


class _Hidden(importlib.abc.MetaPathFinder):
    """As if the ``metrics`` extra were not installed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:  # noqa: ARG002
        if name.split(".")[0] == "prometheus_client":
            raise ModuleNotFoundError(f"No module named {name!r}")


async def _measure(mode: str, workflows: int, tmp: Path) -> dict[str, float]:
    if mode == "absent":
        sys.meta_path.insert(0, _Hidden())
    from workload import workflows_per_second

    import pyworkflow

    pyworkflow.configure(storage=f"sqlite:///{tmp}/bench.db", metrics_enabled=mode == "on")
    storage = pyworkflow.get_storage()
    rate = await workflows_per_second(storage, workflows)
    await storage.close()
    counted = 0.0
    if mode == "on":
        from prometheus_client import REGISTRY

        counted = (
            REGISTRY.get_sample_value(
                "pyworkflow_steps_total",
                {"workflow": "bench_ten_steps", "step": "bench_noop", "status": "completed"},
            )
            or 0.0
        )
    imported = "prometheus_client" in sys.modules
    return {"wf_per_s": rate, "steps_counted": counted, "client_imported": imported}


def main() -> None:
    compared = compare(__file__, __doc__, MODES, _measure)
    if compared is None:
        return
    opts, results = compared
    for result in results["absent"]:
        assert not result["client_imported"], result
    rates = {mode: statistics.median(r["wf_per_s"] for r in results[mode]) for mode in MODES}
    print(f"S1, {opts.workflows} workflows x 10 steps, SQLite, median of {opts.repeats}")
    print(f"{'mode':<7} {'wf/s':>8} {'steps/s':>9} {'steps counted':>14} {'vs absent':>10}")
    for mode in MODES:
        rate, counted = rates[mode], results[mode][-1]["steps_counted"]
        print(
            f"{mode:<7} {rate:>8.1f} {rate * 10:>9.0f} {counted:>14.0f}"
            f" {rate / rates['absent']:>9.2f}x"
        )


if __name__ == "__main__":
    main()
