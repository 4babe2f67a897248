"""Dashboard benchmark: ``GET /api/runs`` (and the HTML runs page) over 100,000 runs on
PostgreSQL, through a real HTTP server.

Run ``python benchmarks/dashboard_bench.py`` (or ``make bench-dashboard``) from the
repository root. It:

1. creates a private schema on the PostgreSQL server of ``PYWORKFLOW_TEST_POSTGRES_URL``
   (default ``postgresql://postgres@127.0.0.1:5432/test``) and stores ``--runs`` runs
   (100,000) with ``create_run`` (``--concurrency`` at a time, one ``workflow.started``
   event each): 20 workflow names of skewed popularity, 80% completed / 8% failed /
   6% suspended / 4% running / 2% cancelled, up to two of 40 tags, an idempotency key on
   one run in ten, creation times spread over 30 days;
2. serves ``pyworkflow dashboard`` from a subprocess (uvicorn, ``PYWORKFLOW_STORAGE``
   pointing at that schema, a read token), waiting for ``/healthz``;
3. sends ``--requests`` (200) sequential requests per case with httpx after a short
   warm-up, each with its own parameters drawn from the stored data (another prefix,
   another deep cursor, ...), and reports p50/p95/max latency and the rows returned;
4. drops the schema, whatever happened.

The cases: the first page, ``status=failed&workflow=<popular>``, a tag, a one-day
window, a run id prefix of 9 characters (about one id: the search box), the prefix
every id shares (``run_``), an idempotency key, a deep page (a cursor 20% to 90% of the
runs in), and ``GET /`` (the HTML runs page; skipped with a note while it answers 404).
Goal: p95 under 200 ms. Results go to ``benchmarks/results/dashboard.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyworkflow.storage.base import run_cursor  # noqa: E402
from pyworkflow.storage.postgres import PostgresStorageBackend  # noqa: E402
from pyworkflow.storage.schemas import (  # noqa: E402
    Event,
    EventType,
    RunStatus,
    WorkflowRun,
)

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
GOAL_MS = 200.0
WORKFLOWS = [f"wf_{name}" for name in ("order", "invoice", "refund", "email", "report")] + [
    f"wf_batch_{i:02}" for i in range(15)
]
# Zipf-like: the first workflows run far more often than the last.
WORKFLOW_WEIGHTS = [1 / (rank + 1) for rank in range(len(WORKFLOWS))]
STATUSES = [
    (RunStatus.COMPLETED, 80),
    (RunStatus.FAILED, 8),
    (RunStatus.SUSPENDED, 6),
    (RunStatus.RUNNING, 4),
    (RunStatus.CANCELLED, 2),
]
TAGS = [f"customer:{i}" for i in range(30)] + [f"region:{r}" for r in "abcdefghij"]


# -- the data -----------------------------------------------------------------------------


def make_runs(count: int, now: datetime, rng: random.Random) -> list[WorkflowRun]:
    statuses = [s for s, _ in STATUSES]
    weights = [w for _, w in STATUSES]
    runs = []
    for i in range(count):
        created = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
        status = rng.choices(statuses, weights)[0]
        done = status in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)
        runs.append(
            WorkflowRun(
                run_id=f"run_{uuid.UUID(int=rng.getrandbits(128), version=4).hex}",
                workflow_name=rng.choices(WORKFLOWS, WORKFLOW_WEIGHTS)[0],
                status=status,
                created_at=created,
                updated_at=created + timedelta(seconds=5),
                started_at=created,
                completed_at=created + timedelta(seconds=5) if done else None,
                input_payload=json.dumps({"args": [i, "x" * 100], "kwargs": {"n": i}}),
                result_payload=json.dumps({"ok": i}) if status == RunStatus.COMPLETED else None,
                error="ValueError: the bench says no" if status == RunStatus.FAILED else None,
                idempotency_key=f"key-{i}" if i % 10 == 0 else None,
                tags=rng.sample(TAGS, rng.choice((0, 1, 1, 2))),
                wake_at=created + timedelta(days=40) if status == RunStatus.SUSPENDED else None,
                last_sequence=1,
            )
        )
    return runs


async def fill(storage: PostgresStorageBackend, runs: list[WorkflowRun], concurrency: int) -> None:
    """Store ``runs`` through the storage API, ``concurrency`` creates in flight."""
    queue = iter(runs)

    async def worker() -> None:
        for run in queue:
            started = Event(
                run_id=run.run_id,
                type=EventType.WORKFLOW_STARTED,
                data={"workflow_name": run.workflow_name},
                sequence=1,
                timestamp=run.created_at,
            )
            await storage.create_run(run, [started])

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# -- the server ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(storage_url: str, port: int, token: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYWORKFLOW_STORAGE": storage_url,
        "PYWORKFLOW_DASHBOARD_READ_TOKEN": token,
        "PYWORKFLOW_DASHBOARD_TOKEN": secrets.token_urlsafe(32),
    }
    argv = [sys.executable, "-m", "pyworkflow", "dashboard", "--port", str(port)]
    return subprocess.Popen(argv, env=env, cwd=ROOT)


async def wait_ready(base: str, server: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(base_url=base) as http:
        for _ in range(300):
            if server.poll() is not None:
                raise RuntimeError(f"the dashboard exited with {server.returncode}")
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the dashboard did not answer /healthz within 30 s")


# -- the cases ----------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    path: str
    params: Callable[[int], dict[str, str]]


def same(params: dict[str, str]) -> Callable[[int], dict[str, str]]:
    """The parameters of a case whose requests are all alike."""
    return lambda _: params


def cases(runs: list[WorkflowRun], rng: random.Random, requests: int) -> list[Case]:
    newest = sorted(runs, key=lambda r: (r.created_at, r.run_id), reverse=True)
    popular = WORKFLOWS[0]
    keys = [r.idempotency_key for r in runs if r.idempotency_key]
    picks = [rng.randrange(len(runs)) for _ in range(requests)]
    lo, hi = len(newest) // 5, len(newest) * 9 // 10
    deep = [newest[rng.randrange(lo, max(hi, lo + 1))] for _ in range(requests)]
    days = [newest[-1].created_at + timedelta(days=rng.uniform(0, 29)) for _ in range(requests)]

    def window(i: int) -> dict[str, str]:
        since = days[i % len(days)]
        return {"since": since.isoformat(), "until": (since + timedelta(days=1)).isoformat()}

    return [
        Case("first page", "/api/runs", same({})),
        Case(
            f"status=failed&workflow={popular}",
            "/api/runs",
            same({"status": "failed", "workflow": popular}),
        ),
        Case("tag", "/api/runs", lambda i: {"tag": TAGS[i % len(TAGS)]}),
        Case("one-day window", "/api/runs", window),
        Case(
            "run id prefix (9 chars)",
            "/api/runs",
            lambda i: {"run_id_prefix": runs[picks[i % len(picks)]].run_id[:9]},
        ),
        Case("run id prefix 'run_' (all)", "/api/runs", same({"run_id_prefix": "run_"})),
        Case("idempotency key", "/api/runs", lambda i: {"idempotency_key": keys[i % len(keys)]}),
        Case(
            "deep page (cursor 20%-90% in)",
            "/api/runs",
            lambda i: {"cursor": run_cursor(deep[i % len(deep)])},
        ),
        Case("HTML runs page GET /", "/", same({})),
        Case(
            f"HTML runs page, status=failed&workflow={popular}",
            "/",
            same({"status": "failed", "workflow": popular}),
        ),
    ]


async def measure(http: httpx.AsyncClient, case: Case, requests: int) -> dict[str, Any]:
    for i in range(10):  # warm-up: connections, prepared statements, caches
        answer = await http.get(case.path, params=case.params(i))
        if answer.status_code != 200:
            return {"case": case.name, "skipped": f"HTTP {answer.status_code}"}
    timings, rows = [], []
    for i in range(requests):
        t0 = time.perf_counter()
        answer = await http.get(case.path, params=case.params(i))
        timings.append((time.perf_counter() - t0) * 1000)
        answer.raise_for_status()
        if case.path.startswith("/api/"):
            rows.append(len(answer.json()["runs"]))
    cuts = statistics.quantiles(timings, n=100)
    return {
        "case": case.name,
        "requests": requests,
        "p50_ms": round(cuts[49], 2),
        "p95_ms": round(cuts[94], 2),
        "max_ms": round(max(timings), 2),
        "mean_rows": round(statistics.mean(rows), 1) if rows else None,
    }


def print_table(results: list[dict[str, Any]], header: str) -> None:
    print(f"\n{header}")
    line = f"{'case':<44}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'rows':>7}  goal"
    print(line)
    print("-" * len(line))
    for r in results:
        if "skipped" in r:
            print(f"{r['case']:<44}  skipped: {r['skipped']}")
            continue
        ok = "ok" if r["p95_ms"] < GOAL_MS else "SLOW"
        rows = "" if r["mean_rows"] is None else f"{r['mean_rows']:.0f}"
        print(
            f"{r['case']:<44}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}{r['max_ms']:>9.1f}"
            f"{rows:>7}  {ok}"
        )


# -- main ---------------------------------------------------------------------------------


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    base_url = os.environ.get("PYWORKFLOW_TEST_POSTGRES_URL") or DEFAULT_URL
    schema = f"bench_dash_{uuid.uuid4().hex[:12]}"
    url = f"{base_url}{'&' if '?' in base_url else '?'}schema={schema}"
    rng = random.Random(opts.seed)
    now = datetime.now(UTC)
    runs = make_runs(opts.runs, now, rng)
    storage = PostgresStorageBackend.from_url(f"{url}&max_size={opts.concurrency}")
    server = None
    try:
        t0 = time.perf_counter()
        await fill(storage, runs, opts.concurrency)
        fill_s = time.perf_counter() - t0
        await storage.close()
        await admin(base_url, f'ANALYZE "{schema}".runs, "{schema}".run_tags')
        print(f"stored {len(runs):,} runs in {fill_s:.1f} s ({len(runs) / fill_s:,.0f}/s)")

        token, port = secrets.token_urlsafe(32), free_port()
        server = start_server(url, port, token)
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base, server)
        headers = {"Authorization": f"Bearer {token}"}
        results = []
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
            for case in cases(runs, rng, opts.requests):
                result = await measure(http, case, opts.requests)
                if case.path == "/" and "skipped" in result:
                    result["skipped"] += " (the HTML runs page is not there yet)"
                results.append(result)
                print(f"  {case.name}: {result.get('p95_ms', result.get('skipped'))}", flush=True)
        return {
            "runs": len(runs),
            "fill_seconds": round(fill_s, 1),
            "requests_per_case": opts.requests,
            "goal_p95_ms": GOAL_MS,
            "results": results,
            "environment": {
                "python": sys.version.split()[0],
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "server": "PostgreSQL on 127.0.0.1, dashboard via uvicorn in a subprocess",
            },
        }
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        await storage.close()
        await admin(base_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seed", type=int, default=16)
    opts = parser.parse_args()
    report = asyncio.run(run(opts))
    header = (
        f"GET latency over {report['runs']:,} runs on PostgreSQL, {opts.requests} sequential "
        f"requests per case (goal: p95 < {GOAL_MS:.0f} ms)"
    )
    print_table(report["results"], header)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "dashboard.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out / 'dashboard.json'}")


if __name__ == "__main__":
    main()
