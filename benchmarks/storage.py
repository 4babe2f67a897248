"""Storage benchmark: the same durable workload on every storage backend, one table.

Run ``python benchmarks/storage.py`` (from the repository root; ``--only sqlite,postgres``
narrows it). For each backend:

* ``steps/s``: 100 workflows x 10 trivial steps, started one after another with
  ``pyworkflow.start(..., storage=backend)`` (each step is one durable append).
* ``starts/s``: 500 starts of a workflow with no steps (run creation plus completion).
* ``resume``: a run with 1,500 completed steps (3,000 step events) suspended on a sleep;
  ``live`` = from its due time to completion when the local runtime wakes it, ``cold`` =
  one ``resume_run`` with no runtime service running (read the history, replay, finish).

Backends: memory, file, SQLite (WAL, ``synchronous=NORMAL``), PostgreSQL, MySQL/MariaDB,
Redis (``redis://127.0.0.1:6379/15``) and, only when asked for (``--only dynamodb``),
DynamoDB on the moto emulator: moto copies the whole table on every transaction, so this
workload takes it many minutes and tens of GB of memory, and its numbers would measure
the emulator, not AWS. Server backends get a fresh schema / database / key prefix
/ table, removed afterwards (the helpers of ``tests/storage/backend_*.py``; servers from
``PYWORKFLOW_TEST_*_URL`` or the local defaults). A backend whose module, driver or server
is missing is skipped with a note. Results also go to ``benchmarks/results/storage.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests/ helpers that set up isolated server stores

from workload import (  # noqa: E402
    STEPS_PER_WORKFLOW,
    empty,
    resume_cost,
    workflows_per_second,
)

from pyworkflow import get_runtime, start  # noqa: E402
from pyworkflow.storage.base import StorageBackend  # noqa: E402

WORKFLOWS, STARTS, HISTORY_STEPS = 100, 500, 1500
REDIS_URL = "redis://127.0.0.1:6379/15"


# -- the workload (shared with run.py) ------------------------------------------------------


async def steps_per_second(storage: StorageBackend) -> float:
    return await workflows_per_second(storage, WORKFLOWS) * STEPS_PER_WORKFLOW


async def starts_per_second(storage: StorageBackend) -> float:
    await start(empty, storage=storage)
    t0 = time.perf_counter()
    for _ in range(STARTS):
        await start(empty, storage=storage)
    return STARTS / (time.perf_counter() - t0)


# -- the backends -------------------------------------------------------------------------

Opener = Callable[[Path], AbstractAsyncContextManager[tuple[StorageBackend, Any]]]


@asynccontextmanager
async def _memory(tmp: Path) -> AsyncIterator[tuple[StorageBackend, Any]]:  # noqa: ARG001
    from pyworkflow.storage.memory import InMemoryStorageBackend

    yield InMemoryStorageBackend(), None


@asynccontextmanager
async def _file(tmp: Path) -> AsyncIterator[tuple[StorageBackend, Any]]:
    from pyworkflow.storage.file import FileStorageBackend

    yield FileStorageBackend(tmp / "data"), None


@asynccontextmanager
async def _sqlite(tmp: Path) -> AsyncIterator[tuple[StorageBackend, Any]]:
    from pyworkflow.storage.sqlite import SQLiteStorageBackend

    yield SQLiteStorageBackend(tmp / "bench.db"), None


def _from_tests(name: str) -> Opener:
    """The isolated store the conformance suite would use for backend ``name``."""

    def opener(tmp: Path) -> AbstractAsyncContextManager[tuple[StorageBackend, Any]]:
        import importlib

        module = importlib.import_module(f"tests.storage.backend_{name}")
        opened: AbstractAsyncContextManager[tuple[StorageBackend, Any]] = module.open_backend(tmp)
        return opened

    return opener


BACKENDS: dict[str, Opener] = {
    "memory": _memory,
    "file": _file,
    "sqlite": _sqlite,
    "postgres": _from_tests("postgres"),
    "mysql": _from_tests("mysql"),
    "redis": _from_tests("redis"),
    "dynamodb": _from_tests("dynamodb"),
}


def _skip_reason(exc: BaseException) -> str:
    # tests.services.require_service and pytest.importorskip raise pytest's Skipped.
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:110]


async def measure(name: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        async with BACKENDS[name](Path(tmp)) as (storage, _):
            try:
                steps = await steps_per_second(storage)
                starts = await starts_per_second(storage)
                live, cold = await resume_cost(storage, HISTORY_STEPS)
            finally:
                with contextlib.suppress(Exception):
                    await get_runtime("local").shutdown()
                await storage.close()
    return {
        "storage": name,
        "steps_per_s": steps,
        "starts_per_s": starts,
        "resume_3000_live_ms": live * 1000,
        "resume_3000_cold_ms": cold * 1000,
    }


def run_one(name: str) -> dict[str, Any]:
    try:
        return asyncio.run(measure(name))
    except ImportError as exc:
        return {"storage": name, "skipped": f"module or driver missing: {exc}"}
    except BaseException as exc:  # noqa: BLE001 - a skip (pytest's Skipped) or a failure
        if isinstance(exc, KeyboardInterrupt):
            raise
        kind = "skipped" if type(exc).__name__ == "Skipped" else "failed"
        return {"storage": name, kind: _skip_reason(exc)}


#: Not run unless named with --only (see the module docstring).
OPT_IN = {"dynamodb": "opt-in (--only dynamodb): moto copies the table per transaction"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated backend names", default="")
    args = parser.parse_args()
    wanted = [n for n in args.only.split(",") if n]
    os.environ.setdefault("PYWORKFLOW_TEST_REDIS_URL", REDIS_URL)

    rows = []
    for name in BACKENDS:
        if wanted and name not in wanted:
            continue
        if name in OPT_IN and name not in wanted:
            rows.append({"storage": name, "skipped": OPT_IN[name]})
            continue
        print(f"benchmarking {name} ...", file=sys.stderr, flush=True)
        rows.append(run_one(name))
    header = (
        f"{'storage':<10}{'steps/s':>10}{'starts/s':>10}"
        f"{'resume 3000 live (ms)':>23}{'resume 3000 cold (ms)':>23}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        if "steps_per_s" in r:
            print(
                f"{r['storage']:<10}{r['steps_per_s']:>10.0f}{r['starts_per_s']:>10.0f}"
                f"{r['resume_3000_live_ms']:>23.1f}{r['resume_3000_cold_ms']:>23.1f}"
            )
        else:
            status = "skipped" if "skipped" in r else "FAILED"
            print(f"{r['storage']:<10}  {status}: {r.get('skipped') or r.get('failed')}")
    print(
        f"\n{WORKFLOWS} workflows x {STEPS_PER_WORKFLOW} steps; {STARTS} starts; "
        f"{HISTORY_STEPS * 2}-event history. python {sys.version.split()[0]} on "
        f"{platform.machine()}, {os.cpu_count()} CPUs; servers on localhost."
    )
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "storage.json").write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
