"""100,000 sleeping runs on PostgreSQL, all due at once, woken by the Celery runtime.

``make bench-scale`` (not part of CI). Steps:

1. A fresh PostgreSQL schema (dropped afterwards) gets ``--runs`` runs of the workflow
   ``scale_sleeper`` (``await sleep(...)``, then return), each stored exactly as a run
   suspended on that sleep is stored (the run row plus its three events:
   ``workflow.started``, ``sleep.started`` with ``fire_at``, ``workflow.suspended``),
   written with ``COPY`` in a few seconds instead of starting each one. Every timer is
   due at the same instant, a little after the processes are up.
2. ``--workers`` Celery workers (``--concurrency`` each) and ``--schedulers``
   ``pyworkflow scheduler`` processes, Redis broker on a database of its own
   (``--broker``, flushed before and after).
3. The benchmark waits until every run is completed and reports, from the stored
   histories: wake lateness (``sleep.completed`` timestamp minus ``fire_at``) p50/p99/max,
   wake-ups per second (runs / time from the due instant to the last wake-up), and how
   many runs each scheduler claimed (from its log). A run that did not complete, or was
   woken twice (two ``sleep.completed`` events), is reported.

``--claim-only`` measures the storage's claim rate alone: no broker, no workers; two
claimers on separate connections call ``claim_due_runs`` (batches of 100, as the
scheduler does) until nothing is due, and the benchmark checks that no run was claimed
twice.

Results go to ``benchmarks/results/scale-wake.json`` (``scale-claims.json`` with
``--claim-only``). This file is also the workflow module
the workers import (``PYWORKFLOW_MODULES=scale_bench``, ``benchmarks/`` on
``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

# Shared with S5 (same PostgreSQL, same process helpers); benchmarks/ is on the path.
import celery_bench  # noqa: E402
from celery_bench import _answers_ping, _drop_schema, _pct  # noqa: E402

from pyworkflow import sleep, workflow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FLOWS_MODULE = "scale_bench"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
BROKER = "redis://127.0.0.1:6379/15"  # a database of its own; flushed before and after
LEASE_TTL = 30.0


@workflow(name="scale_sleeper")
async def scale_sleeper() -> int:
    await sleep("1h")  # the stored fire_at (see seed) is what the engine honours
    return 1


# --------------------------------------------------------------------------- seeding


async def template(tmp: Path) -> tuple[Any, list[Any]]:
    """One real run of ``scale_sleeper`` suspended on its sleep (in a scratch SQLite
    file): its record and events are what every seeded run copies."""
    import pyworkflow

    pyworkflow.reset_config()
    pyworkflow.configure(storage=f"sqlite:///{tmp / 'template.db'}")
    try:
        run_id = await pyworkflow.start(scale_sleeper)
        storage = pyworkflow.get_storage()
        run, events = await storage.get_run(run_id), await storage.get_events(run_id)
        await storage.close()
    finally:
        pyworkflow.reset_config()
    assert run is not None and run.status.value == "suspended", run
    return run, events


async def seed(backend: Any, count: int, due: datetime, model: tuple[Any, list[Any]]) -> float:
    """Store ``count`` suspended runs like ``model`` (a run and its events) whose timers
    are all due at ``due`` (COPY into the runs and events tables); returns the seconds it
    took."""
    from pyworkflow.storage._sql_statements import EVENT_COLUMNS, RUN_COLUMNS

    run, events = model
    sql = backend.sql
    started = time.perf_counter()
    fire_at = due.isoformat()
    run_rows: list[tuple[Any, ...]] = []
    event_rows: list[tuple[Any, ...]] = []
    base = due - timedelta(hours=1)
    for i in range(count):
        run_id = f"scale_{i:07d}"
        created = base + timedelta(microseconds=i)
        run_rows.append(
            sql.run_row(
                replace(run, run_id=run_id, created_at=created, started_at=created,
                        updated_at=created, wake_at=due)
            )
        )  # fmt: skip
        copies = []
        for event in events:
            data = dict(event.data)
            if "fire_at" in data:
                data["fire_at"] = fire_at
            if "wake_at" in data:
                data["wake_at"] = fire_at
            copies.append(
                replace(event, run_id=run_id, data=data, timestamp=created,
                        event_id=uuid.uuid4().hex)
            )  # fmt: skip
        event_rows += sql.event_rows(run_id, copies)

    import asyncpg

    conn = await asyncpg.connect(POSTGRES)
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "runs", records=run_rows, columns=RUN_COLUMNS, schema_name=backend.schema
            )
            await conn.copy_records_to_table(
                "events", records=event_rows, columns=EVENT_COLUMNS, schema_name=backend.schema
            )
        await conn.execute(f'ANALYZE "{backend.schema}".runs')
    finally:
        await conn.close()
    return time.perf_counter() - started


# --------------------------------------------------------------------------- processes


@dataclass
class Cluster(celery_bench.Cluster):
    """S5's process group (spawning, logs), with a broker of the benchmark's choosing."""

    broker: str = BROKER

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "PYWORKFLOW_MODULES": FLOWS_MODULE,
            "PYWORKFLOW_CELERY_BROKER": self.broker,
        }

    def spawn(self, name: str, cmd: list[str], ready: Callable[[], bool]) -> None:
        self._spawn(name, cmd, ready)

    def start_worker(self, n: int, concurrency: int) -> None:
        cmd = [
            sys.executable, "-m", "celery", "-A", "pyworkflow.celery.app", "worker",
            f"--concurrency={concurrency}", "--loglevel=WARNING", "--without-gossip",
            "--without-mingle", "--without-heartbeat", f"--hostname=scale{n}@%h",
        ]  # fmt: skip
        self.spawn(f"worker-{n}", cmd, lambda: _answers_ping(f"scale{n}@"))

    def start_scheduler(self, n: int) -> None:
        name = f"scheduler-{n}"
        cmd = [sys.executable, "-m", "pyworkflow.cli", "scheduler"]
        self.spawn(name, cmd, lambda: "pyworkflow scheduler" in self.log(name).read_text())

    def stop(self) -> None:
        # SIGINT first: a scheduler logs its claim total on the way out.
        for sig in (signal.SIGINT, signal.SIGTERM):
            for proc in self.procs.values():
                if proc.poll() is None:
                    with suppress(ProcessLookupError):
                        os.killpg(proc.pid, sig)
            for proc in self.procs.values():
                with suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
        for proc in self.procs.values():
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def claims(self) -> dict[str, int]:
        """Runs each scheduler claimed, from its last log line saying so."""
        found = {}
        for name in self.procs:
            if name.startswith("scheduler"):
                totals = re.findall(
                    r"\((\d+) in total\)|claimed (\d+) due run\(s\) in total",
                    self.log(name).read_text(errors="replace"),
                )
                numbers = [int(a or b) for a, b in totals if a or b]
                found[name] = numbers[-1] if numbers else 0
        return found

    def problems(self) -> list[str]:
        marks = ("ERROR", "CRITICAL", "Traceback")
        return [
            f"{name}: {line.strip()[:240]}"
            for name in self.procs
            for line in self.log(name).read_text(errors="replace").splitlines()
            if any(m in line for m in marks)
        ]


def _flush(broker: str) -> None:
    import redis

    client = redis.Redis.from_url(broker)
    try:
        client.flushdb()
    finally:
        client.close()


# --------------------------------------------------------------------------- measurements


async def _count(schema: str, where: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES)
    try:
        return int(await conn.fetchval(f'SELECT COUNT(*) FROM "{schema}".runs WHERE {where}'))
    finally:
        await conn.close()


async def _wakes(schema: str) -> list[tuple[str, datetime]]:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES)
    try:
        rows = await conn.fetch(
            f"SELECT run_id, timestamp FROM \"{schema}\".events WHERE type = 'sleep.completed'"
        )
    finally:
        await conn.close()
    return [(r["run_id"], r["timestamp"]) for r in rows]


async def wake_all(args: argparse.Namespace, schema: str, tmp: Path) -> dict[str, Any]:
    import pyworkflow
    from pyworkflow.storage.schemas import utcnow

    url = f"{POSTGRES}?schema={schema}"
    _flush(args.broker)
    model = await template(tmp)
    pyworkflow.configure(storage=url, celery_broker=args.broker, default_runtime="celery")
    backend = pyworkflow.get_storage()
    await backend.connect()
    cluster = Cluster(tmp=tmp, storage_url=url, broker=args.broker)
    # Due after seeding and process start-up (both measured on this machine: ~1 min at
    # 100,000 runs); the processes are up and idle when the minute comes.
    due = utcnow() + timedelta(seconds=args.lead)
    seeded = await seed(backend, args.runs, due, model)
    print(f"seeded {args.runs} suspended runs in {seeded:.1f} s; due at {due:%H:%M:%S}")
    try:
        for n in range(1, args.workers + 1):
            cluster.start_worker(n, args.concurrency)
        for n in range(1, args.schedulers + 1):
            cluster.start_scheduler(n)
        wait = (due - utcnow()).total_seconds()
        if wait < 0:
            print(f"warning: processes were up {-wait:.0f} s after the due time (raise --lead)")
        print(f"processes up; {max(0.0, wait):.0f} s until due")
        await asyncio.sleep(max(0.0, wait))
        deadline = time.monotonic() + args.timeout
        left = args.runs
        while left and time.monotonic() < deadline:
            await asyncio.sleep(5)
            left = await _count(schema, "status <> 'completed'")
            print(f"  {utcnow():%H:%M:%S} {args.runs - left} completed, {left} left", flush=True)
    finally:
        cluster.stop()
        await backend.close()
        pyworkflow.reset_config()
        _flush(args.broker)
    wakes = await _wakes(schema)
    woken = {run_id for run_id, _ in wakes}
    late = [(ts - due).total_seconds() for _, ts in wakes]
    last = max(late) if late else None
    return {
        "mode": "wake",
        "runs": args.runs,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "schedulers": args.schedulers,
        "seed_s": seeded,
        "completed": args.runs - left,
        "woken": len(woken),
        "woken_twice": len(wakes) - len(woken),
        "wake_late_p50_s": _pct(late, 0.5) if late else None,
        "wake_late_p99_s": _pct(late, 0.99) if late else None,
        "wake_late_max_s": last,
        "wakeups_per_s": len(woken) / last if last else None,
        "claims_per_scheduler": cluster.claims(),
        "log_problems": cluster.problems()[:20],
    }


async def claim_only(args: argparse.Namespace, schema: str, tmp: Path) -> dict[str, Any]:
    """Two claimers on separate connections drain every due run; claims per second."""
    import pyworkflow
    from pyworkflow.storage.schemas import utcnow

    url = f"{POSTGRES}?schema={schema}"
    model = await template(tmp)
    pyworkflow.configure(storage=url)
    backend = pyworkflow.get_storage()
    await backend.connect()
    due = utcnow() + timedelta(seconds=1)
    seeded = await seed(backend, args.runs, due, model)
    await backend.close()
    pyworkflow.reset_config()
    await asyncio.sleep(max(0.0, (due - utcnow()).total_seconds()))
    from pyworkflow.storage.postgres import PostgresStorageBackend

    claimers = [PostgresStorageBackend.from_url(url) for _ in range(2)]
    got: list[list[str]] = [[], []]

    async def drain(i: int) -> None:
        storage = claimers[i]
        await storage.connect()
        while True:
            now = utcnow()
            ids = await storage.claim_due_runs(
                now, f"sweep:bench{i}/{uuid.uuid4().hex[:8]}", now + timedelta(hours=1), 100
            )
            if not ids:
                return
            got[i] += ids

    began = time.perf_counter()
    await asyncio.gather(drain(0), drain(1))
    seconds = time.perf_counter() - began
    for storage in claimers:
        await storage.close()
    every = got[0] + got[1]
    return {
        "mode": "claim-only",
        "runs": args.runs,
        "seed_s": seeded,
        "claim_s": seconds,
        "claims_per_s": len(every) / seconds,
        "claimed": len(set(every)),
        "claimed_twice": len(every) - len(set(every)),
        "claims_per_claimer": [len(g) for g in got],
    }


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt  # stop the processes and drop the schema on the way out


def main() -> None:
    sys.modules.setdefault(FLOWS_MODULE, sys.modules[__name__])
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--schedulers", type=int, default=2)
    parser.add_argument("--broker", default=os.environ.get("SCALE_BENCH_BROKER", BROKER))
    parser.add_argument("--lead", type=float, default=60.0, help="seconds until due")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--claim-only", action="store_true")
    parser.add_argument("--logs", type=Path, help="keep the process logs in this directory")
    args = parser.parse_args()
    schema = f"scale_bench_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="scale-") as name:
        where = Path(name) if args.logs is None else args.logs
        where.mkdir(parents=True, exist_ok=True)
        try:
            run = claim_only if args.claim_only else wake_all
            result = asyncio.run(run(args, schema, where))
        finally:
            asyncio.run(_drop_schema(schema))
    result.update(cpu_count=os.cpu_count(), python=platform.python_version())
    print(json.dumps(result, indent=2, default=str))
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    suffix = "claims" if args.claim_only else "wake"
    (out / f"scale-{suffix}.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
