"""Signals side by side: our engine against DBOS (``DBOS.send`` / ``DBOS.recv``).

    .venv/bin/python benchmarks/signals_bench.py [--n 500] [--latency-n 100] [--repeats 3]

Two scenarios, each run ``--repeats`` times per engine in a fresh process with a fresh
SQLite database (median reported), both engines on their default SQLite settings:

* burst: one workflow takes N messages that the same process sends as fast as it can:
  messages per second, from the first send to the run's completion;
* latency: a workflow waits for one message; from the send until waiting for the run
  returns (polled every 1 ms by both), median and p95 of ``--latency-n`` runs.

pyworkflow-engine 0.4.0 (the suite's other peer) has no signals. DBOS runs in the peer
venv the suite creates (``benchmarks/.peer-venvs/dbos-3.4.0``). Writes
``benchmarks/results/signals.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import suite  # noqa: E402 - the suite's venv and environment helpers

RUNNERS = {"ours": HERE / "peers" / "signals_ours.py", "dbos": HERE / "peers" / "signals_dbos.py"}


def run(engine: str, python: Path, scenario: str, n: int) -> dict[str, Any]:
    return suite.run_fresh(python, RUNNERS[engine], scenario, ["--n", str(n)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=500, help="messages in the burst")
    p.add_argument("--latency-n", type=int, default=100, help="one-message runs for latency")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    dbos = suite.ensure_venv(suite.PEER_VENVS["dbos"])
    pythons = {"ours": suite.OURS_PYTHON, "dbos": Path(dbos["path"]) / "bin" / "python"}
    results: dict[str, dict[str, Any]] = {}
    for engine, python in pythons.items():
        bursts = [run(engine, python, "burst", args.n) for _ in range(args.repeats)]
        latencies = [run(engine, python, "latency", args.latency_n) for _ in range(args.repeats)]
        seconds = statistics.median(b["seconds"] for b in bursts)
        results[engine] = {
            "burst_messages_per_s": args.n / seconds,
            "latency_median_ms": 1000 * statistics.median(x["median_s"] for x in latencies),
            "latency_p95_ms": 1000 * statistics.median(x["p95_s"] for x in latencies),
            "samples": {"burst": bursts, "latency": latencies},
        }
    ours, peer = results["ours"], results["dbos"]
    print(f"signals, {args.n}-message burst and {args.latency_n} one-message round trips")
    print(f"{'':28}{'ours':>12}{'dbos 3.4.0':>14}{'ours/dbos':>12}")
    rows = [
        ("burst (messages/s)", "burst_messages_per_s", False),
        ("latency median (ms)", "latency_median_ms", True),
        ("latency p95 (ms)", "latency_p95_ms", True),
    ]
    for label, key, lower_is_better in rows:
        ratio = peer[key] / ours[key] if lower_is_better else ours[key] / peer[key]
        print(f"{label:28}{ours[key]:>12.1f}{peer[key]:>14.1f}{ratio:>11.1f}x")
    print("(ratio: how many times better ours is; latency ratios are dbos/ours)")
    out = HERE / "results" / "signals.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
