"""Runner for the peer ``dbos==3.4.0`` (DBOS Transact; its own venv under
``benchmarks/.peer-venvs/``; never our venv).

Public, documented API only: ``DBOS(config=...)`` with ``system_database_url =
"sqlite:///<file>"``, ``DBOS.launch()``, ``@DBOS.workflow()``, ``@DBOS.step()``,
``DBOS.sleep`` (durable sleep), ``DBOS.start_workflow``, ``DBOS.start_workflow_async``,
``DBOS.retrieve_workflow`` and workflow handles. Besides the database URL the config
only sets ``log_level="WARNING"`` (quiet console) and ``run_admin_server=False`` (no
HTTP admin port); its SQLite settings are left as they are.
S1-S3 use synchronous workflows/steps (DBOS's primary form); S4 uses async workflows
started concurrently with ``DBOS.start_workflow_async`` + ``asyncio.gather``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from importlib.metadata import version
from typing import Any

from _common import emit, fail, journal_mode, parse_args, wait_until
from dbos import DBOS

SLEEP_S = 1.0
_reached_sleep: list[float] = []
_reached_event = threading.Event()


@DBOS.step()
def noop(i: int) -> int:
    return i


@DBOS.workflow()
def ten_steps() -> int:
    total = 0
    for i in range(10):
        total += noop(i)
    return total


@DBOS.workflow()
def long_run(n: int) -> int:
    for i in range(n):
        noop(i)
    return n


@DBOS.workflow()
def sleeper(n: int) -> int:
    for i in range(n):
        noop(i)
    if not _reached_sleep:
        _reached_sleep.append(time.time())
        _reached_event.set()
    DBOS.sleep(SLEEP_S)
    noop(-1)
    return n


@DBOS.step()
async def noop_async(i: int) -> int:
    return i


@DBOS.workflow()
async def ten_steps_async() -> int:
    total = 0
    for i in range(10):
        total += await noop_async(i)
    return total


def _launch(db: str) -> None:
    DBOS(
        config={
            "name": "peer-bench",
            "system_database_url": f"sqlite:///{db}",
            "log_level": "WARNING",
            "run_admin_server": False,
        }
    )
    DBOS.launch()


def main() -> None:
    args = parse_args()
    out: dict[str, Any] = {
        "engine": "dbos",
        "version": version("dbos"),
        "scenario": args.scenario,
        "n": args.n,
    }
    if args.scenario == "s3cold-finish":
        wait_until(args.due + 0.1)  # overdue when this process launches DBOS
        t0 = time.time()
    _launch(args.db)
    if args.scenario == "s3cold-finish":
        out["launch_s"] = time.time() - t0
    if args.scenario == "probe":
        pass
    elif args.scenario == "s1":
        ten_steps()  # warm-up
        t0 = time.perf_counter()
        results = [ten_steps() for _ in range(args.n)]
        elapsed = time.perf_counter() - t0
        if results != [45] * args.n:
            return fail("wrong results")
        out.update(seconds=elapsed, workflows=args.n, steps=args.n * 10)
    elif args.scenario == "s2":
        ten_steps()  # warm-up
        t0 = time.perf_counter()
        result = long_run(args.n)
        out["seconds"] = time.perf_counter() - t0
        if result != args.n:
            return fail(f"wrong result {result!r}")
    elif args.scenario == "s3live":
        ten_steps()  # warm-up
        handle = DBOS.start_workflow(sleeper, args.n)
        if not _reached_event.wait(timeout=600):
            return fail("never reached the sleep")
        due = _reached_sleep[0] + SLEEP_S
        box: list[Any] = []
        waiter = threading.Thread(target=lambda: box.append(handle.get_result()), daemon=True)
        waiter.start()
        waiter.join(timeout=max(0.0, due + args.live_timeout - time.time()))
        done = time.time()
        if not box:
            return fail(f"did not wake within {args.live_timeout:.0f} s of its due time")
        if box[0] != args.n:
            return fail(f"wrong result {box[0]!r}")
        out["seconds"] = done - due
        out["completion_source"] = "wall clock when handle.get_result() returned"
    elif args.scenario == "s3cold-start":
        ten_steps()  # warm-up
        handle = DBOS.start_workflow(sleeper, args.n)
        if not _reached_event.wait(timeout=600):
            return fail("never reached the sleep")
        time.sleep(0.3)  # let DBOS.sleep durably record its wake-up time
        out.update(run_id=handle.get_workflow_id(), due=_reached_sleep[0] + SLEEP_S)
        out["journal_mode"] = journal_mode(args.db)
        emit(out)  # exits the process at once, mid-sleep (like a crash)
    elif args.scenario == "s3cold-finish":
        # DBOS.launch() above recovered this executor's pending workflows.
        handle = DBOS.retrieve_workflow(args.run_id)
        box = []
        waiter = threading.Thread(
            target=lambda: box.append(handle.get_result(polling_interval_sec=0.01)), daemon=True
        )
        waiter.start()
        waiter.join(timeout=args.live_timeout)
        done = time.time()
        if not box:
            return fail(f"fresh process did not finish the run within {args.live_timeout:.0f} s")
        if box[0] != args.n and args.n:
            return fail(f"wrong result {box[0]!r}")
        out.update(seconds=done - t0, due_to_completion=done - args.due)
        out["completion_source"] = (
            "wall clock when handle.get_result(polling_interval_sec=0.01) returned"
        )
        out["how"] = "fresh process: DBOS.launch() recovers the pending workflow"
    elif args.scenario == "s4":
        ten_steps()  # warm-up

        async def concurrent() -> list[int]:
            await (await DBOS.start_workflow_async(ten_steps_async)).get_result()  # warm-up
            t0 = time.perf_counter()
            handles = await asyncio.gather(
                *(DBOS.start_workflow_async(ten_steps_async) for _ in range(args.n))
            )
            results = await asyncio.gather(*(h.get_result() for h in handles))
            out["seconds"] = time.perf_counter() - t0
            return list(results)

        if asyncio.run(concurrent()) != [45] * args.n:
            return fail("wrong results")
    out["journal_mode"] = journal_mode(args.db)
    emit(out)


if __name__ == "__main__":
    main()
