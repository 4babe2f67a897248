"""Signals benchmark runner for DBOS (``DBOS.send`` / ``DBOS.recv``), run by
benchmarks/signals_bench.py in its own venv. The same two scenarios as signals_ours.py.
DBOS's settings are its defaults but for the log level and no admin server."""

from __future__ import annotations

import argparse
import json
import sys
import time

from dbos import DBOS


@DBOS.workflow()
def take(n: int) -> int:
    total = 0
    for _ in range(n):
        message = DBOS.recv("sb_msg", timeout_seconds=60)
        if message is None:
            raise RuntimeError("no message within 60 s")
        total += message
    return total


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["burst", "latency"])
    p.add_argument("--db", required=True)
    p.add_argument("--n", type=int, required=True)
    args = p.parse_args()
    DBOS(
        config={
            "name": "signals-bench",
            "system_database_url": f"sqlite:///{args.db}",
            "log_level": "WARNING",
            "run_admin_server": False,
        }
    )
    DBOS.launch()
    warm = DBOS.start_workflow(take, 1)
    DBOS.send(warm.get_workflow_id(), 1, "sb_msg")
    warm.get_result()
    out: dict[str, object] = {"engine": "dbos", "scenario": args.scenario, "n": args.n}
    if args.scenario == "burst":
        handle = DBOS.start_workflow(take, args.n)
        t0 = time.perf_counter()
        for _ in range(args.n):
            DBOS.send(handle.get_workflow_id(), 1, "sb_msg")
        result = handle.get_result(polling_interval_sec=0.001)
        out["seconds"] = time.perf_counter() - t0
        assert result == args.n, result
    else:
        waits = []
        for _ in range(args.n):
            handle = DBOS.start_workflow(take, 1)
            sent = time.time()
            DBOS.send(handle.get_workflow_id(), 1, "sb_msg")
            assert handle.get_result(polling_interval_sec=0.001) == 1
            waits.append(time.time() - sent)
        waits.sort()
        out.update(median_s=waits[len(waits) // 2], p95_s=waits[int(len(waits) * 0.95)])
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    import os

    os._exit(0)


if __name__ == "__main__":
    main()
