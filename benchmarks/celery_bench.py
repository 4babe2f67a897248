"""S5: the Celery runtime end to end (real workers, a real broker, a shared storage).

Prints one table and writes ``benchmarks/results/celery.json``. For each storage
(SQLite file; PostgreSQL in a fresh schema, skipped if 127.0.0.1:5432 does not answer)
and 1 and 2 workers (``--concurrency=2`` each), plus one ``pyworkflow scheduler``:

* ``wf/s``, ``steps/s``: ``--workflows`` (default 500) workflows of 5 trivial steps,
  started by 20 concurrent clients; from the first ``start()`` to the last
  ``completed_at`` stored; the median of ``--repeat`` (default 3) rounds. Mode
  ``dispatched``: each step is one message to the step queue (the task that records a
  round's last step goes on with the workflow itself); mode ``inline``: workers run with
  ``celery_inline_steps`` (one task per workflow).
* ``start p50/p99``: client-side time for ``await start(...)`` to return (one storage
  write plus one enqueue), over the starts of all rounds.
* ``wake late p50/p99``: 50 workflows each ``sleep("2s")`` then run one step; lateness =
  the ``sleep.completed`` event's timestamp minus the ``fire_at`` of ``sleep.started``.
  Default config: the scheduler polls every 1 s and short sleeps also get a broker
  countdown, so whichever comes first wakes the run. Steady state: one sleeper in the
  warm-up takes the scheduler's one-time first-fire cost (see the warm-up comment).
* ``worker RSS``: the largest worker's peak RSS, summed over its process tree (main
  process and pool children, ``VmHWM`` from ``/proc``; forked pages shared between them
  are counted once per process, so this is an upper bound).
* ``sched CPU s``: CPU time the ``pyworkflow scheduler`` process used over the whole
  configuration (start to end of measurements); mostly idle polling when all is well.

Broker: Redis database 14 (flushed before each configuration). This file is also the
workflow module the workers import (``PYWORKFLOW_MODULES=celery_bench``, with
``benchmarks/`` on ``PYTHONPATH``); the benchmark itself runs under ``__main__``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pyworkflow import sleep, step, workflow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FLOWS_MODULE = "celery_bench"
BROKER = "redis://127.0.0.1:6379/14"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
WORKFLOWS = 500
STEPS = 5
CLIENTS = 20  # concurrent start() callers
SLEEPERS = 50
SLEEP = "2s"
WORKER_COUNTS = (1, 2)
CONCURRENCY = 2
LEASE_TTL = 30.0
WAIT_LIMIT = 120.0  # seconds a phase may take before the benchmark gives up


# --------------------------------------------------------------------------- workflows
# Imported by the workers as module ``celery_bench``; explicit names, so the benchmark
# process (module ``__main__``) and the workers agree on them.


@step(name="s5_noop")
async def noop(i: int) -> int:
    return i


@workflow(name="s5_five_steps")
async def five_steps() -> int:
    total = 0
    for i in range(STEPS):
        total += await noop(i)
    return total


@workflow(name="s5_sleeper")
async def sleeper() -> int:
    await sleep(SLEEP)
    return await noop(1)


# --------------------------------------------------------------------------- processes


@dataclass
class Cluster:
    """Worker and scheduler processes (each in its own process group) for one storage."""

    tmp: Path
    storage_url: str
    inline: bool = False
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
        return {
            **keep,
            "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)]),
            "PYWORKFLOW_STORAGE": self.storage_url,
            "PYWORKFLOW_MODULES": FLOWS_MODULE,
            "PYWORKFLOW_CELERY_BROKER": BROKER,
            "PYWORKFLOW_LEASE_TTL": str(LEASE_TTL),
            "PYWORKFLOW_CELERY_INLINE_STEPS": "true" if self.inline else "false",
        }

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def _spawn(self, name: str, cmd: list[str], ready: Callable[[], bool]) -> None:
        with self.log(name).open("ab") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=self.tmp,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if ready():
                return
            if proc.poll() is not None:
                text = self.log(name).read_text(errors="replace")
                raise RuntimeError(f"{name} exited early:\n{text[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"{name} not ready within 60 s; see {self.log(name)}")

    def _logged(self, name: str, text: str) -> Callable[[], bool]:
        return lambda: text in self.log(name).read_text(errors="replace")

    def start_worker(self, n: int) -> None:
        cmd = [
            sys.executable, "-m", "celery", "-A", "pyworkflow.celery.app", "worker",
            f"--concurrency={CONCURRENCY}", "--loglevel=WARNING", "--without-gossip",
            "--without-mingle", "--without-heartbeat", f"--hostname=w{n}@%h",
        ]  # fmt: skip
        # "<name> ready." is logged at INFO only: at WARNING, ask the worker itself
        # (remote-control ping; independent of gossip, mingle and heartbeat).
        self._spawn(f"worker-{n}", cmd, lambda: _answers_ping(f"w{n}@"))

    def start_scheduler(self) -> None:
        cmd = [sys.executable, "-m", "pyworkflow.cli", "scheduler"]
        self._spawn("scheduler", cmd, self._logged("scheduler", "pyworkflow scheduler"))

    def worker_peak_rss_mb(self) -> float | None:
        """The largest worker tree's summed ``VmHWM`` (MB), or ``None`` without /proc."""
        peaks = [_tree_hwm_kb(p.pid) for name, p in self.procs.items() if name.startswith("worker")]
        if not peaks or None in peaks:
            return None
        return max(p for p in peaks if p is not None) / 1024

    def cpu_split(self) -> dict[str, float]:
        """CPU seconds used so far by each part of the deployment: the worker main
        processes (Celery's consumer: fetch, hand to the pool, acknowledge), their pool
        processes (the tasks: pyworkflow's code, storage client, publishing), the
        scheduler, and, machine-wide, Redis and PostgreSQL server processes."""
        split = {"worker main": 0.0, "worker pool": 0.0, "scheduler": 0.0}
        for name, proc in self.procs.items():
            if name == "scheduler":
                split["scheduler"] += _cpu_of(proc.pid)
            elif name.startswith("worker"):
                split["worker main"] += _cpu_of(proc.pid)
                split["worker pool"] += sum(_cpu_of(child) for child in _children(proc.pid))
        split["redis"] = sum(_cpu_of(pid) for pid in _pids_named("redis-server"))
        split["postgres"] = sum(_cpu_of(pid) for pid in _pids_named("postgres"))
        times = os.times()
        split["client"] = times.user + times.system
        return split

    def cpu_seconds(self, name: str) -> float | None:
        """CPU time (user + system) process ``name`` used so far (children not included)."""
        try:
            fields = Path(f"/proc/{self.procs[name].pid}/stat").read_text().rsplit(")", 1)[1]
        except (OSError, KeyError):
            return None
        utime, stime = fields.split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Pool children left behind by a main process that died first.
        for proc in self.procs.values():
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def log_problems(self) -> list[str]:
        """Lines of the process logs that look like errors or warnings."""
        marks = ("ERROR", "CRITICAL", "WARNING", "Traceback", "Error:")
        found = []
        for name in self.procs:
            for line in self.log(name).read_text(errors="replace").splitlines():
                if any(m in line for m in marks):
                    found.append(f"{name}: {line.strip()[:240]}")
        return found


def _cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _pids_named(name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
    return pids


def _tree_hwm_kb(pid: int) -> int | None:
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            return None if current == pid else total
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
        for task in Path(f"/proc/{current}/task").glob("*"):
            with suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return total


def _answers_ping(prefix: str) -> bool:
    from pyworkflow.celery.app import sending_app

    replies = sending_app().control.ping(timeout=0.5) or []
    return any(name.startswith(prefix) for reply in replies for name in reply)


def _reachable(host: str, port: int) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as exc:
        return str(exc)


def _flush_broker() -> None:
    import redis

    client = redis.Redis.from_url(BROKER)
    try:
        client.flushdb()
    finally:
        client.close()


async def _drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # generated name
    finally:
        await conn.close()


# --------------------------------------------------------------------------- measurements


def _pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, linear between the nearest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1]


async def _wait_terminal(storage: Any, run_ids: list[str]) -> list[Any]:
    """Poll storage until every run is terminal; the runs, in ``run_ids`` order."""
    deadline = time.monotonic() + WAIT_LIMIT
    pending, done = list(run_ids), {}
    while pending:
        for run_id in pending:
            run = await storage.get_run(run_id)
            if run is not None and run.status.is_terminal:
                done[run_id] = run
        pending = [r for r in pending if r not in done]
        if pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} runs unfinished after {WAIT_LIMIT:.0f} s")
            await asyncio.sleep(0.2)
    return [done[r] for r in run_ids]


def _failures(runs: list[Any]) -> int:
    return sum(1 for r in runs if r.status.value != "completed")


async def _start_many(workflow: Any, count: int, latencies: list[float]) -> list[str]:
    """Start ``count`` runs from :data:`CLIENTS` concurrent callers; their ids."""
    import pyworkflow

    gate = asyncio.Semaphore(CLIENTS)

    async def one() -> str:
        async with gate:
            t0 = time.perf_counter()
            run_id = await pyworkflow.start(workflow)
            latencies.append(time.perf_counter() - t0)
            return run_id

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def measure(
    label: str, storage_url: str, workers: int, tmp: Path, opts: argparse.Namespace
) -> dict[str, Any]:
    import pyworkflow
    from pyworkflow.storage.schemas import utcnow

    _flush_broker()
    inline = opts.mode == "inline"
    cluster = Cluster(tmp=tmp, storage_url=storage_url, inline=inline)
    pyworkflow.reset_config()
    pyworkflow.configure(
        storage=storage_url,
        celery_broker=BROKER,
        default_runtime="celery",
        modules=[FLOWS_MODULE],
        lease_ttl=LEASE_TTL,
    )
    storage = pyworkflow.get_storage()
    await storage.connect()  # creates the tables before any worker touches them
    try:
        for n in range(1, workers + 1):
            cluster.start_worker(n)
        cluster.start_scheduler()

        # Warm-up: connections, imports and first-use caches in every pool process, and
        # one timer through the scheduler (its first fire imports the Celery app and
        # connects to the broker: about a second, once per scheduler process).
        warm = [await pyworkflow.start(sleeper)]
        warm += [await pyworkflow.start(five_steps) for _ in range(2 * workers * CONCURRENCY)]
        await _wait_terminal(storage, warm)

        # 1 + 2: throughput (median of the rounds) and start latency.
        starts: list[float] = []
        rates: list[float] = []
        failed = 0
        cpu_before = cluster.cpu_split()
        for _ in range(opts.repeat):
            began = utcnow()
            run_ids = await _start_many(five_steps, opts.workflows, starts)
            runs = await _wait_terminal(storage, run_ids)
            ended = max(r.completed_at or r.updated_at for r in runs)
            rates.append(opts.workflows / (ended - began).total_seconds())
            failed += _failures(runs)
        rate = statistics.median(rates)
        cpu_after = cluster.cpu_split()
        total_runs = opts.workflows * opts.repeat
        # CPU milliseconds per workflow, by process (the client's includes its polling).
        cpu_ms = {k: 1000 * (cpu_after[k] - cpu_before[k]) / total_runs for k in cpu_after}

        # 3: wake-up lateness.
        sleepers = [await pyworkflow.start(sleeper) for _ in range(SLEEPERS)]
        slept = await _wait_terminal(storage, sleepers)
        late: list[float] = []
        for run_id in sleepers:
            events = await storage.get_events(run_id)
            due = next(e for e in events if e.type.value == "sleep.started").data["fire_at"]
            woke = next((e for e in events if e.type.value == "sleep.completed"), None)
            if woke is not None:
                late.append((woke.timestamp - datetime.fromisoformat(due)).total_seconds())

        rss = cluster.worker_peak_rss_mb()
        scheduler_cpu = cluster.cpu_seconds("scheduler")
        return {
            "storage": label,
            "mode": opts.mode,
            "workers": workers,
            "concurrency": CONCURRENCY,
            "workflows": opts.workflows,
            "steps_per_workflow": STEPS,
            "rounds_wf_per_s": rates,
            "cpu_ms_per_workflow": cpu_ms,
            "workflows_per_s": rate,
            "steps_per_s": rate * STEPS,
            "start_p50_ms": _pct(starts, 0.50) * 1000,
            "start_p99_ms": _pct(starts, 0.99) * 1000,
            "wake_late_p50_ms": _pct(late, 0.50) * 1000 if late else None,
            "wake_late_p99_ms": _pct(late, 0.99) * 1000 if late else None,
            "wake_late_max_ms": max(late) * 1000 if late else None,
            "worker_peak_rss_mb": rss,
            "scheduler_cpu_s": scheduler_cpu,
            "failed_runs": failed + _failures(slept),
            "log_problems": cluster.log_problems(),
        }
    finally:
        cluster.stop()
        await storage.close()
        pyworkflow.reset_config()


def _storages(tmp: Path) -> list[tuple[str, str, str | None]]:
    """``(label, url template, postgres schema prefix)``; ``{n}`` makes each unique."""
    found: list[tuple[str, str, str | None]] = [("sqlite", f"sqlite:///{tmp}/bench-{{n}}.db", None)]
    problem = _reachable("127.0.0.1", 5432)
    if problem is None:
        found.append(("postgres", f"{POSTGRES}?schema={{n}}", "s5_bench_"))
    else:
        print(f"note: PostgreSQL skipped, 127.0.0.1:5432 unreachable ({problem})")
    return found


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="S5: the Celery runtime end to end.")
    parser.add_argument("--workflows", type=int, default=WORKFLOWS, help="per round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the median is shown")
    parser.add_argument("--mode", default="dispatched,inline", help="dispatched,inline")
    parser.add_argument("--storage", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument("--workers", default="1,2", help="worker counts, e.g. 1,2")
    return parser.parse_args()


def main() -> None:
    opts = _options()
    # Importing the workflow module by name (as the client config lists it) must give
    # this very module, not a second copy registering the same names again.
    sys.modules.setdefault(FLOWS_MODULE, sys.modules[__name__])
    problem = _reachable("127.0.0.1", 6379)
    if problem is not None:
        sys.exit(f"Redis is not reachable at 127.0.0.1:6379 ({problem}); the broker is required")
    rows: list[dict[str, Any]] = []
    t_total = time.perf_counter()
    wanted = set(opts.storage.split(","))
    with tempfile.TemporaryDirectory(prefix="s5-") as name:
        tmp = Path(name)
        for label, template, schema_prefix in _storages(tmp):
            if label not in wanted:
                continue
            for mode in opts.mode.split(","):
                for workers in [int(w) for w in opts.workers.split(",")]:
                    tag = f"{schema_prefix or ''}{uuid.uuid4().hex[:10]}"
                    url = template.format(n=tag)
                    where = tmp / f"{label}-{mode}-{workers}"
                    where.mkdir()
                    run_opts = argparse.Namespace(**{**vars(opts), "mode": mode})
                    try:
                        rows.append(asyncio.run(measure(label, url, workers, where, run_opts)))
                    finally:
                        if schema_prefix is not None:
                            asyncio.run(_drop_schema(tag))
                        _flush_broker()
    total = time.perf_counter() - t_total

    header = (
        f"{'storage':<10}{'mode':<12}{'workers':>8}{'wf/s':>8}{'steps/s':>9}"
        f"{'rounds wf/s':>20}{'start p50 ms':>14}"
        f"{'start p99 ms':>14}{'wake late p50 ms':>18}{'wake late p99 ms':>18}"
        f"{'worker RSS MB':>15}{'sched CPU s':>13}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        rounds = "/".join(f"{v:.0f}" for v in r["rounds_wf_per_s"])
        print(
            f"{r['storage']:<10}{r['mode']:<12}{r['workers']:>8}{r['workflows_per_s']:>8.1f}"
            f"{r['steps_per_s']:>9.0f}{rounds:>20}"
            f"{r['start_p50_ms']:>14.1f}{r['start_p99_ms']:>14.1f}"
            f"{_fmt(r['wake_late_p50_ms'], '.0f'):>18}{_fmt(r['wake_late_p99_ms'], '.0f'):>18}"
            f"{_fmt(r['worker_peak_rss_mb'], '.0f'):>15}{_fmt(r['scheduler_cpu_s'], '.1f'):>13}"
        )
    parts = list(rows[0]["cpu_ms_per_workflow"]) if rows else []
    print("\nCPU ms per workflow, by process (where the time goes):")
    print(f"{'storage':<10}{'mode':<12}{'workers':>8}" + "".join(f"{p:>13}" for p in parts))
    for r in rows:
        cpu = r["cpu_ms_per_workflow"]
        print(
            f"{r['storage']:<10}{r['mode']:<12}{r['workers']:>8}"
            + "".join(f"{cpu[p]:>13.1f}" for p in parts)
        )
    cores = os.cpu_count()
    print(
        f"\n{opts.workflows} workflows x {STEPS} steps per round, median of {opts.repeat} "
        f"rounds; {SLEEPERS} x sleep({SLEEP!r}); workers --concurrency={CONCURRENCY}; "
        f"broker {BROKER}"
    )
    print(
        f"machine: {cores} cores; python {sys.version.split()[0]} on {platform.machine()}; "
        f"total {total:.0f} s"
    )
    for r in rows:
        failed, problems = r["failed_runs"], r["log_problems"]
        if failed or problems:
            print(
                f"{r['storage']} {r['mode']} x{r['workers']}: {failed} failed runs, "
                f"{len(problems)} log lines:"
            )
            for line in problems[:5]:
                print(f"  {line}")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    result = {
        "scenario": "S5 celery runtime",
        "rows": rows,
        "cpu_count": cores,
        "python": sys.version.split()[0],
        "total_s": total,
    }
    (out / "celery.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
