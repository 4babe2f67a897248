"""Runner for the peer ``pyworkflow-engine==0.4.0`` (its own venv under
``benchmarks/.peer-venvs/``; never our venv).

Public API only (as documented in its README/docstrings and summarised in
``/work/shared/SPEC.md``): ``workflow``, ``step``, ``sleep``, ``start``, ``resume``,
``configure(default_runtime="local", default_durable=True, storage=...)``,
``get_workflow_run``, ``configure_logging`` and
``pyworkflow.storage.sqlite.SQLiteStorageBackend(db_path)`` with ``connect()`` /
``disconnect()``. Its SQLite settings are left as they are.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from _common import emit, fail, journal_mode, parse_args, wait_until

import pyworkflow
from pyworkflow import (
    configure,
    configure_logging,
    get_workflow_events,
    get_workflow_run,
    resume,
    sleep,
    start,
    step,
    workflow,
)
from pyworkflow.storage.sqlite import SQLiteStorageBackend

SLEEP_S = 1.0
_reached_sleep: list[float] = []


@step(name="peer_bench_noop")
async def noop(i: int) -> int:
    return i


@workflow(name="peer_bench_ten")
async def ten_steps() -> int:
    total = 0
    for i in range(10):
        total += await noop(i)
    return total


@workflow(name="peer_bench_long")
async def long_run(n: int) -> int:
    for i in range(n):
        await noop(i)
    return n


@workflow(name="peer_bench_sleeper")
async def sleeper(n: int) -> int:
    for i in range(n):
        await noop(i)
    if not _reached_sleep:
        _reached_sleep.append(time.time())
    await sleep(SLEEP_S)
    await noop(-1)
    return n


def _epoch(dt: datetime) -> float:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


async def _status(run_id: str) -> str:
    run = await get_workflow_run(run_id)
    assert run is not None
    return str(getattr(run.status, "value", run.status))


async def main() -> None:
    args = parse_args()
    if "site-packages" not in (pyworkflow.__file__ or ""):
        return fail(f"imported the wrong pyworkflow: {pyworkflow.__file__}")
    configure_logging(level="WARNING")
    out: dict[str, Any] = {
        "engine": "pyworkflow-engine",
        "version": getattr(pyworkflow, "__version__", "?"),
        "scenario": args.scenario,
        "n": args.n,
    }
    if args.scenario == "s3cold-finish":
        wait_until(args.due + 0.1)  # overdue when this process starts its engine
        t0 = time.time()
    storage = SQLiteStorageBackend(args.db)
    await storage.connect()
    configure(default_runtime="local", default_durable=True, storage=storage)
    if args.scenario == "probe":
        out["module_file"] = pyworkflow.__file__
    elif args.scenario == "s1":
        await start(ten_steps)  # warm-up
        ids = []
        t0 = time.perf_counter()
        for _ in range(args.n):
            ids.append(await start(ten_steps))
        elapsed = time.perf_counter() - t0
        bad = [s for s in [await _status(r) for r in ids] if s != "completed"]
        if bad:
            return fail(f"{len(bad)} runs not completed: {bad[:3]}")
        out.update(seconds=elapsed, workflows=args.n, steps=args.n * 10)
    elif args.scenario == "s2":
        await start(ten_steps)  # warm-up
        t0 = time.perf_counter()
        run_id = await start(long_run, args.n)
        out["seconds"] = time.perf_counter() - t0
        if (s := await _status(run_id)) != "completed":
            return fail(f"run ended {s}")
    elif args.scenario == "s3live":
        await start(ten_steps)  # warm-up
        run_id = await start(sleeper, args.n)
        due = _reached_sleep[0] + SLEEP_S
        while time.time() < due + args.live_timeout:
            run = await get_workflow_run(run_id)
            assert run is not None
            if str(getattr(run.status, "value", run.status)) in ("completed", "failed"):
                break
            await asyncio.sleep(0.01)
        else:
            s = await _status(run_id)
            return fail(
                f"never woke: still {s} {args.live_timeout:.0f} s after its due time "
                "(its LocalRuntime.schedule_wake docstring: 'Local runtime cannot "
                "auto-schedule wake-ups. User must manually call resume().')"
            )
        if run.status != "completed" or run.completed_at is None:
            return fail(f"run ended {run.status}")
        out["seconds"] = _epoch(run.completed_at) - due
    elif args.scenario == "s3cold-start":
        await start(ten_steps)  # warm-up
        run_id = await start(sleeper, args.n)
        if (s := await _status(run_id)) != "suspended":
            return fail(f"expected a suspended run, got {s}")
        out.update(run_id=run_id, due=_reached_sleep[0] + SLEEP_S)
    elif args.scenario == "s3cold-finish":
        # Its documented way to continue a due sleep on the local runtime: resume().
        await resume(args.run_id)
        done = time.time()
        if (s := await _status(args.run_id)) != "completed":
            # Try twice more, each time after the newest recorded due time, then give up.
            for _ in range(2):
                await asyncio.sleep(SLEEP_S + 0.2)
                await resume(args.run_id)
            s = await _status(args.run_id)
            events = await get_workflow_events(args.run_id)
            kinds = [str(getattr(e.type, "value", e.type)).lower() for e in events]
            starts = sum(1 for k in kinds if "sleep" in k and "start" in k)
            ends = sum(1 for k in kinds if "sleep" in k and "complet" in k)
            return fail(
                f"resume() after the due time never finishes the sleep: after 3 resume() "
                f"calls, each past the latest due time, the run is {s}; its event log has "
                f"{starts} sleep.started (each resume re-arms the sleep with a new resume_at) "
                f"and {ends} sleep.completed"
            )
        out.update(seconds=done - t0, due_to_completion=done - args.due)
        out["completion_source"] = "wall clock when resume() returned"
        out["how"] = "fresh process calls resume(run_id) after the due time"
    elif args.scenario == "s4":
        await start(ten_steps)  # warm-up
        t0 = time.perf_counter()
        ids = await asyncio.gather(*(start(ten_steps) for _ in range(args.n)))
        out["seconds"] = time.perf_counter() - t0
        bad = [s for s in [await _status(r) for r in ids] if s != "completed"]
        if bad:
            return fail(f"{len(bad)} runs not completed: {bad[:3]}")
    await storage.disconnect()
    if args.scenario != "probe":
        out["journal_mode"] = journal_mode(args.db)
    emit(out)


if __name__ == "__main__":
    asyncio.run(main())
