"""Flow-control benchmark runner for DBOS (``DBOS.register_queue(concurrency=C)`` and
``register_queue(limiter=...)``), run by benchmarks/flow_bench.py in its own venv. The same two
scenarios as flow_ours.py. DBOS's settings are its defaults (the queue's polling
interval too, unless ``--polling``) but for the log level and no admin server."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

from dbos import DBOS, Queue

lock = threading.Lock()
running = 0
most = 0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["concurrency", "rate"])
    p.add_argument("--db", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--limit", type=int, required=True)
    p.add_argument("--step-ms", type=int, default=20)
    p.add_argument("--polling", type=float, default=None, help="the queue's polling interval")
    args = p.parse_args()
    polling = {} if args.polling is None else {"polling_interval_sec": args.polling}

    @DBOS.step()
    def call(ms: int) -> None:
        global running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(ms / 1000)
        with lock:
            running -= 1

    @DBOS.workflow()
    def limited(i: int) -> int:
        call(args.step_ms)
        return i

    @DBOS.workflow()
    def rated(i: int) -> int:
        return i

    DBOS(
        config={
            "name": "flow-bench",
            "system_database_url": f"sqlite:///{args.db}",
            "log_level": "WARNING",
            "run_admin_server": False,
        }
    )
    DBOS.launch()
    queue: Queue
    if args.scenario == "concurrency":
        queue = DBOS.register_queue("fb_limited", concurrency=args.limit, **polling)
        target = limited
    else:
        limiter = {"limit": args.limit, "period": 1}
        queue, target = DBOS.register_queue("fb_rated", limiter=limiter, **polling), rated
    queue.enqueue(target, -1).get_result(polling_interval_sec=0.001)  # warm-up
    time.sleep(1.1)  # the warm-up's rate window passes
    global most
    most = 0
    t0 = time.perf_counter()
    handles = [queue.enqueue(target, i) for i in range(args.n)]
    results = [h.get_result(polling_interval_sec=0.001) for h in handles]
    seconds = time.perf_counter() - t0
    assert results[-1] == args.n - 1, results[-1]
    out = {"engine": "dbos", "scenario": args.scenario, "seconds": seconds, "most": most}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
