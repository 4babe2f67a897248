"""Flow control side by side: our engine against DBOS queues
(``DBOS.register_queue(concurrency=C)``, ``register_queue(limiter=...)``).

    .venv/bin/python benchmarks/flow_bench.py [--n 200] [--limit 10] [--step-ms 20]
        [--rate-n 60] [--rate 20] [--repeats 3]

Two scenarios, each run ``--repeats`` times per engine in a fresh process with a fresh
SQLite database (median reported), both engines on their default settings:

* concurrency: N runs whose one step sleeps ``--step-ms`` ms, at most ``--limit`` at
  once, all started at once: seconds until every run completed (the ideal is
  ``N * step / limit``), and the most steps seen running at once (must be the limit);
* rate: ``--rate-n`` runs of a workflow limited to ``--rate`` starts a second, started
  at once: seconds until every run completed (the ideal is ``(rate-n - 1) // rate``
  seconds plus the last run).

DBOS is also run with its queues polling every 50 ms (its default is 1 s), as a tuned
user would. pyworkflow-engine 0.4.0 (the suite's other peer) has no flow control. DBOS runs in the
peer venv the suite creates (``benchmarks/.peer-venvs/dbos-3.4.0``). Writes
``benchmarks/results/flow.json``.
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

RUNNERS = {
    "ours": HERE / "peers" / "flow_ours.py",
    "dbos": HERE / "peers" / "flow_dbos.py",
    "dbos_fast": HERE / "peers" / "flow_dbos.py",
}
# DBOS's queues poll storage every second by default; also measured polling every 50 ms.
EXTRA = {"dbos_fast": ["--polling", "0.05"]}


def run(engine: str, python: Path, scenario: str, options: list[str]) -> dict[str, Any]:
    return suite.run_fresh(python, RUNNERS[engine], scenario, [*options, *EXTRA.get(engine, [])])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200, help="runs in the concurrency scenario")
    p.add_argument("--limit", type=int, default=10, help="the concurrency limit")
    p.add_argument("--step-ms", type=int, default=20, help="each run's step, in ms")
    p.add_argument("--rate-n", type=int, default=60, help="runs in the rate scenario")
    p.add_argument("--rate", type=int, default=20, help="starts a second allowed")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    dbos = suite.ensure_venv(suite.PEER_VENVS["dbos"])
    dbos_python = Path(dbos["path"]) / "bin" / "python"
    pythons = {"ours": suite.OURS_PYTHON, "dbos": dbos_python, "dbos_fast": dbos_python}
    concurrency = ["--n", str(args.n), "--limit", str(args.limit), "--step-ms", str(args.step_ms)]
    rate = ["--n", str(args.rate_n), "--limit", str(args.rate)]
    results: dict[str, dict[str, Any]] = {}
    for engine, python in pythons.items():
        limited = [run(engine, python, "concurrency", concurrency) for _ in range(args.repeats)]
        rated = [run(engine, python, "rate", rate) for _ in range(args.repeats)]
        results[engine] = {
            "concurrency_s": statistics.median(x["seconds"] for x in limited),
            "most_at_once": max(x["most"] for x in limited),
            "rate_s": statistics.median(x["seconds"] for x in rated),
            "samples": {"concurrency": limited, "rate": rated},
        }
    ours, peer, fast = results["ours"], results["dbos"], results["dbos_fast"]
    ideal = args.n * args.step_ms / 1000 / args.limit
    print(
        f"flow control: {args.n} runs of a {args.step_ms} ms step at most {args.limit} at "
        f"once (ideal {ideal:.2f} s); {args.rate_n} runs at {args.rate} starts/s"
    )
    print(f"{'':20}{'ours':>8}{'dbos 3.4.0':>12}{'dbos/ours':>11}{'dbos 50ms':>11}{'ratio':>8}")
    for label, key in (("concurrency (s)", "concurrency_s"), ("rate (s)", "rate_s")):
        print(
            f"{label:20}{ours[key]:>8.2f}{peer[key]:>12.2f}{peer[key] / ours[key]:>10.1f}x"
            f"{fast[key]:>11.2f}{fast[key] / ours[key]:>7.1f}x"
        )
    most = (ours["most_at_once"], peer["most_at_once"], fast["most_at_once"])
    print(f"{'most at once':20}{most[0]:>8}{most[1]:>12}{'':>11}{most[2]:>11}")
    print("(seconds until every run completed, lower is better; ratios: dbos/ours;")
    print(" 'dbos 50ms': its queues polling every 50 ms instead of its default 1 s)")
    out = HERE / "results" / "flow.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
