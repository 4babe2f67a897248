"""Helpers shared by the per-engine runner scripts (standard library only).

Each runner is executed by its engine's own interpreter (ours: ``/work/main/.venv``;
peers: ``benchmarks/.peer-venvs/<name>``) and prints exactly one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from typing import Any


def parse_args(extra_modes: bool = False) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument(
        "scenario", choices=["s1", "s2", "s3live", "s3cold-start", "s3cold-finish", "s4", "probe"]
    )
    p.add_argument("--db", required=True, help="SQLite database file (fresh per scenario run)")
    p.add_argument("--n", type=int, default=0, help="steps (S2/S3) or workflows (S1/S4)")
    p.add_argument("--run-id", default="", help="s3cold-finish: the suspended run")
    p.add_argument("--due", type=float, default=0.0, help="s3cold-finish: epoch due time")
    p.add_argument("--live-timeout", type=float, default=30.0)
    if extra_modes:
        p.add_argument(
            "--mode", choices=["default", "strict", "memory", "postgres"], default="default"
        )
    return p.parse_args()


def emit(result: dict[str, Any]) -> None:
    result.setdefault("ok", True)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["python"] = sys.version.split()[0]
    result["platform"] = platform.platform()
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # End here: an engine's leftover non-daemon threads (e.g. an open aiosqlite
    # connection on a failure path) must not keep the process alive.
    os._exit(0)


def fail(reason: str, **extra: Any) -> None:
    emit({"ok": False, "reason": reason, **extra})


def wait_until(epoch: float) -> None:
    delay = epoch - time.time()
    if delay > 0:
        time.sleep(delay)


def journal_mode(db_path: str) -> str:
    """The journal mode persisted in the database file (read with our own sqlite3)."""
    import sqlite3

    try:
        con = sqlite3.connect(db_path)
        try:
            return str(con.execute("PRAGMA journal_mode").fetchone()[0])
        finally:
            con.close()
    except Exception as exc:  # noqa: BLE001 - informational only
        return f"unknown ({exc})"
