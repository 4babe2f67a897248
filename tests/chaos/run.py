"""``make chaos``: many runs on the Celery runtime while workers are SIGKILLed and
PostgreSQL restarts; prints what survived (see ``docs/fault-tolerance.md``).

Setup, all private to this run (never the shared servers): a PostgreSQL cluster and a
Redis broker in temporary directories on free ports (:mod:`tests.private_servers`), two
Celery workers (``--concurrency=2``, each in its own process group) and one
``pyworkflow scheduler`` (:mod:`tests.celery.cluster`). This process is the
application: it starts ``CHAOS_RUNS`` runs of :func:`tests.chaos.flows.chaos_flow`.

While runs are unfinished (at most the chaos window): every 2-5 s a random worker's
whole process group is SIGKILLed and a replacement started (now and then the scheduler
instead); PostgreSQL is restarted twice, once killed (``pg_ctl stop -m immediate``) and
once shut down cleanly (``-m fast``), each time down for 3-5 s, with a worker kill
while it is down. Then calm, until every run is terminal or the deadline passes.
Finally every run's state and history is checked against the ledger of step-body
executions (:mod:`tests.chaos.report`). Exit status 1 when a run was lost, failed,
completed twice or woke early; 2 when the servers cannot be set up.

Environment: ``CHAOS_RUNS`` (1000), ``CHAOS_SEED`` (random; printed), ``CHAOS_SECONDS``
(chaos window; default ``max(60, 0.15 * runs)``), ``CHAOS_DEADLINE`` (seconds from the
first start until every run must be terminal; default window + dispatch timeout + 180),
``CHAOS_LEASE_TTL`` (5), ``CHAOS_DISPATCH_TIMEOUT`` (the product default, 300),
``CHAOS_KEEP=1`` keeps the logs directory (always kept when a problem was found).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from loguru import logger

import pyworkflow
from pyworkflow import StorageUnavailableError
from pyworkflow.storage.schemas import RunStatus
from tests.celery.cluster import Cluster
from tests.chaos.flows import chaos_flow
from tests.chaos.report import (
    ChaosCounts,
    Findings,
    Ledger,
    analyse,
    log_digest,
    log_excerpts,
    print_summary,
)
from tests.private_servers import PrivatePostgres, PrivateRedis

WORKERS = 2
CONCURRENCY = 2
KILL_EVERY = (2.0, 5.0)  # seconds between two kills (uniform)
PG_DOWN = (3.0, 5.0)  # seconds PostgreSQL stays down (uniform)
SCHEDULER_KILL_CHANCE = 0.15  # of a kill hitting the scheduler instead of a worker
# Restart PostgreSQL when this share of the runs is terminal, or at this share of the
# chaos window, whichever comes first.
RESTART_PROGRESS = (0.15, 0.5)
RESTART_WINDOW = (0.3, 0.65)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


@dataclass(frozen=True)
class Settings:
    runs: int
    seed: int
    chaos_seconds: float
    deadline: float
    lease_ttl: float
    dispatch_timeout: float
    keep: bool

    @classmethod
    def from_env(cls) -> Settings:
        runs = int(os.environ.get("CHAOS_RUNS") or 1000)
        window = _env_float("CHAOS_SECONDS", max(60.0, 0.15 * runs))
        dispatch = _env_float("CHAOS_DISPATCH_TIMEOUT", 300.0)
        return cls(
            runs=runs,
            seed=int(os.environ.get("CHAOS_SEED") or random.randrange(1 << 30)),
            chaos_seconds=window,
            deadline=_env_float("CHAOS_DEADLINE", window + dispatch + 180.0),
            lease_ttl=_env_float("CHAOS_LEASE_TTL", 5.0),
            dispatch_timeout=dispatch,
            keep=os.environ.get("CHAOS_KEEP", "") not in ("", "0"),
        )


class ChaosCluster(Cluster):
    """:class:`Cluster` with uniquely named replacement processes (one log each)."""

    spawned: int = 0
    spawned_schedulers: int = 0

    def start_next_worker(self) -> str:
        self.spawned += 1
        name = f"w{self.spawned}"
        self.start_worker(name, CONCURRENCY)
        return name

    def start_scheduler(self) -> subprocess.Popen[bytes]:
        self.spawned_schedulers += 1
        log = self.tmp / f"scheduler-{self.spawned_schedulers}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "pyworkflow.cli", "scheduler"],
            cwd=self.tmp, env=self.env(), stdout=log.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.schedulers.append(proc)
        self._wait_for_log(log, "pyworkflow scheduler", proc)
        return proc


@dataclass
class Progress:
    """Run counts by status, polled from storage (the last answer while it is down)."""

    total: int
    by_status: dict[str, int] = field(default_factory=dict)

    @property
    def terminal(self) -> int:
        return sum(n for s, n in self.by_status.items() if RunStatus(s).is_terminal)

    @property
    def all_done(self) -> bool:
        return self.terminal >= self.total

    def line(self) -> str:
        parts = ", ".join(f"{s} {n}" for s, n in sorted(self.by_status.items()))
        return f"{self.terminal}/{self.total} terminal ({parts or 'none stored yet'})"


class Chaos:
    """Kills and restarts, one at a time, while the runs are unfinished."""

    def __init__(
        self, cluster: ChaosCluster, pg: PrivatePostgres, settings: Settings, progress: Progress
    ) -> None:
        self.cluster = cluster
        self.pg = pg
        self.settings = settings
        self.progress = progress
        self.rng = random.Random(settings.seed)
        self.counts = ChaosCounts()
        self.began = time.monotonic()

    def note(self, text: str) -> None:
        print(f"[{time.monotonic() - self.began:6.1f}s] {text}", flush=True)

    async def run(self) -> None:
        window = self.settings.chaos_seconds
        next_kill = time.monotonic() + self.rng.uniform(*KILL_EVERY)
        while not self.progress.all_done and time.monotonic() - self.began < window:
            if self._restart_due():
                await self.restart_postgres(crash=not self.counts.pg_restarts)
                next_kill = time.monotonic() + self.rng.uniform(*KILL_EVERY)
            elif time.monotonic() >= next_kill:
                await self.kill_one()
                next_kill = time.monotonic() + self.rng.uniform(*KILL_EVERY)
            await asyncio.sleep(0.2)
        self.note(f"chaos over: {self.progress.line()}")

    def _restart_due(self) -> bool:
        done = len(self.counts.pg_restarts)
        if done >= len(RESTART_PROGRESS):
            return False
        share = self.progress.terminal / self.progress.total
        elapsed = (time.monotonic() - self.began) / self.settings.chaos_seconds
        return share >= RESTART_PROGRESS[done] or elapsed >= RESTART_WINDOW[done]

    async def kill_one(self, *, scheduler_allowed: bool = True) -> None:
        if scheduler_allowed and self.rng.random() < SCHEDULER_KILL_CHANCE:
            await self.kill_scheduler()
            return
        name = self.rng.choice(sorted(self.cluster.workers))
        pgid = self.cluster.workers[name].pid
        await asyncio.to_thread(self.cluster.kill_worker, name)
        self.counts.worker_kills += 1
        replacement = await asyncio.to_thread(self.cluster.start_next_worker)
        self.note(f"SIGKILL worker {name} (process group {pgid}); {replacement} started")

    async def kill_scheduler(self) -> None:
        old = self.cluster.schedulers[0]
        await asyncio.to_thread(self.cluster.kill_scheduler, old)
        self.counts.scheduler_kills += 1
        await asyncio.to_thread(self.cluster.start_scheduler)
        self.note(f"SIGKILL scheduler (process group {old.pid}); a new one started")

    async def restart_postgres(self, *, crash: bool) -> None:
        how = "crash" if crash else "clean stop"
        self.note(f"PostgreSQL {how} ({self.progress.line()})")
        went = time.monotonic()
        await self.pg.stop(crash=crash)
        down = self.rng.uniform(*PG_DOWN)
        await asyncio.sleep(down / 2)
        await self.kill_one(scheduler_allowed=False)  # the scheduler cannot start now
        await asyncio.sleep(max(0.0, went + down - time.monotonic()))
        await self.pg.start()
        took = time.monotonic() - went
        self.counts.pg_restarts.append(f"{how}, down {took:.1f} s")
        self.note(f"PostgreSQL back after {took:.1f} s")


async def poll_progress(progress: Progress, url: str, stop: asyncio.Event) -> None:
    """Count runs by status every second (one small query; errors while down ignored)."""
    import asyncpg

    while not stop.is_set():
        try:
            conn = await asyncpg.connect(url, timeout=2)
            try:
                rows = await conn.fetch("SELECT status, count(*) AS n FROM runs GROUP BY status")
                progress.by_status = {row["status"]: row["n"] for row in rows}
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError, TimeoutError):
            pass
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def start_runs(runs: int, run_ids: dict[int, str], deadline: float) -> None:
    """Start every run, retrying with the same idempotency key while storage is away."""
    for n in range(runs):
        while time.monotonic() < deadline:
            try:
                run_ids[n] = await pyworkflow.start(chaos_flow, n, idempotency_key=f"chaos-{n}")
                break
            except StorageUnavailableError:
                await asyncio.sleep(0.5)


async def _wait_until(progress: Progress, deadline: float, chaos: Chaos) -> None:
    last = 0.0
    while not progress.all_done and time.monotonic() < deadline:
        if time.monotonic() - last >= 15:
            chaos.note(f"waiting: {progress.line()}")
            last = time.monotonic()
        await asyncio.sleep(0.5)


async def drive(settings: Settings, pg: PrivatePostgres, redis: PrivateRedis, tmp: Path) -> bool:
    """Run the scenario; print the summary; whether no problem was found."""
    ledger_path = tmp / "ledger.txt"
    env = {
        "PYWORKFLOW_MODULES": "tests.chaos.flows",
        "PYWORKFLOW_LEASE_TTL": str(settings.lease_ttl),
        "PYWORKFLOW_DISPATCH_TIMEOUT": str(settings.dispatch_timeout),
        "CHAOS_LEDGER": str(ledger_path),
    }
    cluster = ChaosCluster(tmp=tmp, broker=redis.url, storage_url=pg.url, env_extra=env)
    pyworkflow.reset_config()
    pyworkflow.configure(
        storage=pg.url,
        celery_broker=redis.url,
        default_runtime="celery",
        modules=["tests.chaos.flows"],
        lease_ttl=settings.lease_ttl,
        dispatch_timeout=settings.dispatch_timeout,
    )
    storage = pyworkflow.get_storage()
    await storage.connect()  # creates the tables before any worker touches them
    progress = Progress(total=settings.runs)
    stop = asyncio.Event()
    poller = asyncio.create_task(poll_progress(progress, pg.url, stop))
    try:
        for _ in range(WORKERS):
            await asyncio.to_thread(cluster.start_next_worker)
        await asyncio.to_thread(cluster.start_scheduler)
        chaos = Chaos(cluster, pg, settings, progress)
        deadline = time.monotonic() + settings.deadline
        run_ids: dict[int, str] = {}
        chaos.note(f"starting {settings.runs} runs (seed {settings.seed})")
        starter = asyncio.create_task(start_runs(settings.runs, run_ids, deadline))
        await chaos.run()
        await _wait_until(progress, deadline, chaos)
        await starter
        wall = time.monotonic() - chaos.began
        chaos.note(f"done waiting: {progress.line()}")
    finally:
        stop.set()
        await poller
        await asyncio.to_thread(cluster.stop)
    findings = await analyse(storage, run_ids, settings.runs, Ledger.read(ledger_path))
    await storage.close()
    title = (
        f"chaos: {settings.runs} runs, PostgreSQL + {WORKERS} Celery workers "
        f"(--concurrency={CONCURRENCY}) + scheduler, seed {settings.seed}"
    )
    print_summary(findings, chaos.counts, Ledger.read(ledger_path), wall, title)
    _print_logs(findings, cluster)
    return findings.ok


def _print_logs(findings: Findings, cluster: Cluster) -> None:
    logs = sorted(cluster.tmp.glob("*.log"))
    digest = log_digest(logs)
    if digest:
        print(f"\nwarning/error log lines: {sum(digest.values())}; most common (numbers as #):")
        for line, count in digest.most_common(10):
            print(f"  {count:>5}x {line}")
    if findings.problem_runs:
        print("\nlog lines of runs with problems (first 10 runs):")
        print(log_excerpts(logs, findings.problem_runs[:10]))


async def main_async(settings: Settings, tmp: Path) -> bool:
    pg, redis = PrivatePostgres(), PrivateRedis()
    try:
        await pg.setup()
        await redis.setup()
        return await drive(settings, pg, redis, tmp)
    finally:
        await redis.destroy()
        await pg.destroy()


def _quiet_this_process(tmp: Path) -> None:
    """Send this process's own log output (the storage driver retrying while PostgreSQL
    is down, pyworkflow's warnings) to ``harness.log``: the console keeps the chaos
    timeline and the summary."""
    handler = logging.FileHandler(tmp / "harness.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logger.remove()
    logger.add(tmp / "harness.log", level="INFO")


def main() -> int:
    settings = Settings.from_env()
    tmp = Path(tempfile.mkdtemp(prefix="pw-chaos-"))
    _quiet_this_process(tmp)
    ok = False
    try:
        ok = asyncio.run(main_async(settings, tmp))
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:  # a server is missing
        print(f"chaos: cannot set up the private servers: {exc}", file=sys.stderr)
        return 2
    finally:
        if ok and not settings.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"\nlogs and ledger kept in {tmp}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
