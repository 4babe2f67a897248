"""Compare modes of one workload, each measurement in a fresh process (the modes
alternate, so a noisy machine slows them alike): the driver of ``logging_bench.py`` and
``tracing_bench.py``. A script calls :func:`compare` with its modes and its measuring
coroutine; run without ``--child`` it runs itself once per mode and repeat, and
returns every mode's results (one dict per process) for the script to report."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

Measure = Callable[[str, int, Path], Awaitable[dict[str, Any]]]


def compare(
    script: str, doc: str | None, modes: Sequence[str], measure: Measure
) -> tuple[argparse.Namespace, dict[str, list[dict[str, Any]]]] | None:
    """Parse the command line; in a child, measure one mode and print its result (then
    ``None`` is returned); else the options and each mode's results, in repeat order."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--workflows", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--child", choices=modes, help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.child:
        # ignore_cleanup_errors: a background checkpoint may still touch the database.
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
            print(json.dumps(asyncio.run(measure(opts.child, opts.workflows, Path(tmp)))))
        return None
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for _ in range(opts.repeats):
        for mode in modes:
            out = subprocess.run(
                [sys.executable, script, "--child", mode, "--workflows", str(opts.workflows)],
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                raise SystemExit(f"{mode} failed:\n{out.stderr}")
            results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return opts, results
