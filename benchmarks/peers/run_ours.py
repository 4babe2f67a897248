"""Runner for OUR engine (``/work/main/.venv/bin/python benchmarks/peers/run_ours.py ...``).

Public API only: ``workflow``, ``step``, ``sleep``, ``start``, ``wait_for_run``,
``configure``, ``get_workflow_run``, ``get_storage``, ``configure_logging``.
``--mode default`` = ``sqlite:///db`` (WAL + synchronous=NORMAL);
``--mode strict`` = ``sqlite:///db?synchronous=FULL``; reference columns: ``--mode memory``
= ``memory://`` (nothing survives the process, so no S3 cold) and ``--mode postgres`` =
PostgreSQL on 127.0.0.1:5432 (database ``test``) in a schema named after ``--db``, dropped
when the scenario ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from _common import emit, fail, journal_mode, parse_args, wait_until

from pyworkflow import (
    configure,
    configure_logging,
    get_storage,
    get_workflow_run,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)

SLEEP_S = 1.0
_reached_sleep: list[float] = []  # wall clock when the body first reached the sleep


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


async def _status(run_id: str) -> str:
    run = await get_workflow_run(run_id)
    assert run is not None
    return str(run.status.value)


async def main() -> None:
    args = parse_args(extra_modes=True)
    configure_logging(level="WARNING")
    url = _storage_url(args.mode, args.db)
    if args.mode == "memory" and args.scenario.startswith("s3cold"):
        return fail("memory storage does not outlive its process (no cold recovery)")
    if args.scenario != "s3cold-finish":
        configure(storage=url)
    out: dict[str, Any] = {
        "engine": "ours",
        "mode": args.mode,
        "storage_url": url,
        "scenario": args.scenario,
        "n": args.n,
    }
    if args.scenario == "probe":
        import pyworkflow

        out["version"] = pyworkflow.__version__
        out["module_file"] = pyworkflow.__file__
    elif args.scenario == "s1":
        await start(ten_steps)  # warm-up: schema, connection, imports
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
        try:
            run = await wait_for_run(run_id, timeout=SLEEP_S + args.live_timeout)
        except TimeoutError:
            return fail(f"did not wake within {args.live_timeout:.0f} s of its due time")
        if run.status.value != "completed" or run.completed_at is None:
            return fail(f"run ended {run.status.value}")
        out["seconds"] = run.completed_at.timestamp() - due
        out["completion_source"] = "stored completed_at"
    elif args.scenario == "s3cold-start":
        await start(ten_steps)  # warm-up
        run_id = await start(sleeper, args.n)
        if (s := await _status(run_id)) != "suspended":
            return fail(f"expected a suspended run, got {s}")
        out.update(run_id=run_id, due=_reached_sleep[0] + SLEEP_S)
        await get_storage().close()
    elif args.scenario == "s3cold-finish":
        wait_until(args.due + 0.1)  # the run is overdue when this process starts its engine
        t0 = time.time()
        configure(storage=url)
        try:
            run = await wait_for_run(run_id := args.run_id, timeout=args.live_timeout)
        except TimeoutError:
            return fail(f"fresh process did not recover {run_id} within {args.live_timeout:.0f} s")
        if run.status.value != "completed" or run.completed_at is None:
            return fail(f"run ended {run.status.value}")
        done = run.completed_at.timestamp()
        out.update(seconds=done - t0, due_to_completion=done - args.due)
        out["completion_source"] = "stored completed_at"
    elif args.scenario == "s4":
        await start(ten_steps)  # warm-up
        t0 = time.perf_counter()
        ids = await asyncio.gather(*(start(ten_steps) for _ in range(args.n)))
        out["seconds"] = time.perf_counter() - t0
        bad = [s for s in [await _status(r) for r in ids] if s != "completed"]
        if bad:
            return fail(f"{len(bad)} runs not completed: {bad[:3]}")
    await get_storage().close()
    if args.mode == "postgres" and args.scenario not in ("probe", "s3cold-start"):
        await _drop_schema(url)
    if args.scenario != "probe" and args.mode in ("default", "strict"):
        out["journal_mode"] = journal_mode(args.db)
    emit(out)


POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def _storage_url(mode: str, db: str) -> str:
    if mode == "memory":
        return "memory://"
    if mode == "postgres":
        # One schema per scenario run: both processes of S3 cold get the same --db.
        return f"{POSTGRES}?schema=bench_{hashlib.sha1(db.encode()).hexdigest()[:12]}"
    return f"sqlite:///{db}" + ("?synchronous=FULL" if mode == "strict" else "")


async def _drop_schema(url: str) -> None:
    import asyncpg

    schema = url.rsplit("schema=", 1)[1]  # generated above: bench_<hex>
    conn = await asyncpg.connect(POSTGRES)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
