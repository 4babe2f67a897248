"""Side-by-side benchmark: our engine against two peer libraries, in one command.

    .venv/bin/python benchmarks/suite.py

Engines (columns): ours with default SQLite (WAL + synchronous=NORMAL), ours strict
(WAL + synchronous=FULL), ``pyworkflow-engine==0.4.0`` and ``dbos==3.4.0``. The peers are
installed only in virtual environments this script creates (and reuses) under
``benchmarks/.peer-venvs/<name>/``, never in our venv, and are driven only through their
public APIs by the runner scripts in ``benchmarks/peers/`` (see the README there).

Every scenario run is a fresh subprocess of the engine's interpreter, with a fresh
temporary directory and database, so peak RSS is per scenario. A run whose first
measurement took under ``--repeat-under`` seconds is repeated (``--repeats`` in all,
median reported; the same rule for every engine). Prints one table with ratios and writes
``benchmarks/results/suite.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS_DIR = HERE / "peers"
VENV_ROOT = HERE / ".peer-venvs"
RESULTS = HERE / "results" / "suite.json"
OURS_PYTHON = REPO / ".venv" / "bin" / "python"

SLEEP_S = 1.0  # the durable sleep in S3 (fixed in the runners)
LIVE_TIMEOUT_S = 30.0  # a sleep not woken this long after its due time counts as "never"


@dataclass
class PeerVenv:
    name: str  # folder under .peer-venvs/
    requirement: str  # what pip installs
    dist: str  # distribution whose version is checked
    version: str
    check_import: str  # must import (catches a missing extra)


PEER_VENVS = {
    "pyworkflow040": PeerVenv(
        "pyworkflow-engine-0.4.0",
        # The [sqlite] extra only adds aiosqlite, which its SQLite backend imports.
        "pyworkflow-engine[sqlite]==0.4.0",
        "pyworkflow-engine",
        "0.4.0",
        "pyworkflow.storage.sqlite",
    ),
    "dbos": PeerVenv("dbos-3.4.0", "dbos==3.4.0", "dbos", "3.4.0", "dbos"),
}


@dataclass
class Engine:
    key: str
    label: str
    script: str
    extra: list[str] = field(default_factory=list)
    peer: str | None = None  # key in PEER_VENVS
    durability: str = ""
    python: Path = OURS_PYTHON


ENGINES = [
    Engine(
        "ours_default",
        "ours (default)",
        "run_ours.py",
        ["--mode", "default"],
        durability="SQLite sqlite:///path: WAL, synchronous=NORMAL (our default)",
    ),
    Engine(
        "ours_strict",
        "ours (strict)",
        "run_ours.py",
        ["--mode", "strict"],
        durability="SQLite sqlite:///path?synchronous=FULL: WAL, synchronous=FULL",
    ),
    Engine(
        "ours_memory",
        "ours (memory)",
        "run_ours.py",
        ["--mode", "memory"],
        durability="memory:// (reference: nothing is durable)",
    ),
    Engine(
        "ours_postgres",
        "ours (postgres)",
        "run_ours.py",
        ["--mode", "postgres"],
        durability="PostgreSQL 127.0.0.1:5432, server defaults (synchronous_commit=on)",
    ),
    Engine(
        "pyworkflow040",
        "pyworkflow 0.4.0",
        "run_pyworkflow040.py",
        peer="pyworkflow040",
        durability=(
            "SQLiteStorageBackend(db_path), its settings untouched: synchronous=FULL "
            "(per issue 7), journal_mode={jm} (read from the file)"
        ),
    ),
    Engine(
        "dbos",
        "dbos 3.4.0",
        "run_dbos.py",
        peer="dbos",
        durability=(
            "system_database_url=sqlite:///path, its settings untouched: synchronous=FULL "
            "(per issue 7), journal_mode={jm} (read from the file)"
        ),
    ),
]
PEER_KEYS = ["pyworkflow040", "dbos"]
OURS_KEYS = ["ours_default", "ours_strict"]  # the columns compared with the peers
REFERENCE_KEYS = ["ours_memory", "ours_postgres"]  # ours on other storage, no ratios


# --------------------------------------------------------------------------- venvs


def _clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYWORKFLOW_", "DBOS_"))
        and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _venv_ok(venv: PeerVenv, python: Path) -> bool:
    if not python.exists():
        return False
    code = (
        "import importlib, importlib.metadata as m, sys; "
        f"importlib.import_module({venv.check_import!r}); "
        f"sys.exit(0 if m.version({venv.dist!r}) == {venv.version!r} else 3)"
    )
    with tempfile.TemporaryDirectory() as tmp:  # neutral cwd: never import our package
        r = subprocess.run(
            [str(python), "-c", code], cwd=tmp, env=_clean_env(), capture_output=True, timeout=120
        )
    return r.returncode == 0


def ensure_venv(venv: PeerVenv) -> dict[str, Any]:
    """Reuse ``.peer-venvs/<name>`` if it holds the right version, else (re)create it."""
    path = VENV_ROOT / venv.name
    python = path / "bin" / "python"
    t0 = time.monotonic()
    if _venv_ok(venv, python):
        return {"path": str(path), "created": False, "seconds": time.monotonic() - t0}
    print(f"creating {path} ({venv.requirement}) ...", flush=True)
    if path.exists():
        shutil.rmtree(path)
    VENV_ROOT.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(path)], check=True, env=_clean_env())
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    r = subprocess.run(
        [*pip, venv.requirement], env=_clean_env(), capture_output=True, text=True, timeout=600
    )
    if r.returncode != 0 or not _venv_ok(venv, python):
        tail = (r.stderr or r.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"could not install {venv.requirement} into {path}:\n" + "\n".join(tail))
    return {"path": str(path), "created": True, "seconds": time.monotonic() - t0}


# --------------------------------------------------------------------------- running


class Budget:
    def __init__(self, seconds: float) -> None:
        self.start = time.monotonic()
        self.seconds = seconds

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)


def run_fresh(
    python: Path, script: Path, scenario: str, args: list[str], timeout: float = 900
) -> dict[str, Any]:
    """One run of a side-by-side runner (``script scenario --db DB ARGS``) in a fresh
    temporary directory with a fresh SQLite file; the last JSON line it printed. Exits
    with the runner's error output when it fails (the figures would be wrong)."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [str(python), str(script), scenario, "--db", f"{tmp}/db.sqlite", *args],
            cwd=tmp,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if done.returncode != 0:
        raise SystemExit(f"{script.name} {scenario} failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run_runner(
    engine: Engine, scenario: str, db: Path, args: list[str], timeout: float
) -> dict[str, Any]:
    cmd = [
        str(engine.python),
        str(PEERS_DIR / engine.script),
        scenario,
        "--db",
        str(db),
        *engine.extra,
        *args,
    ]
    t0 = time.monotonic()
    try:
        r = subprocess.run(
            cmd, cwd=db.parent, env=_clean_env(), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "reason": f"timed out after {timeout:.0f} s", "timeout": True}
    wall = time.monotonic() - t0
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        err = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"ok": False, "reason": f"runner exited {r.returncode}: {err[:300]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    result["wall_s"] = wall
    return result


def one_sample(
    engine: Engine, kind: str, n: int, budget: Budget, base_timeout: float
) -> dict[str, Any]:
    timeout = max(30.0, min(base_timeout, budget.left() + 30.0))
    with tempfile.TemporaryDirectory(prefix=f"suite-{engine.key}-{kind}-") as tmp:
        db = Path(tmp) / "bench.db"
        live = ["--live-timeout", str(LIVE_TIMEOUT_S)]
        if kind != "s3cold":
            return run_runner(engine, kind, db, ["--n", str(n), *live], timeout)
        first = run_runner(engine, "s3cold-start", db, ["--n", str(n)], timeout)
        if not first.get("ok"):
            return first
        second = run_runner(
            engine,
            "s3cold-finish",
            db,
            ["--n", str(n), "--run-id", first["run_id"], "--due", repr(first["due"]), *live],
            timeout,
        )
        second["start_phase"] = {k: first.get(k) for k in ("wall_s", "peak_rss_mb")}
        if "wall_s" in second:
            second["wall_s"] += first["wall_s"]
        return second


@dataclass
class Cell:
    value: float | None = None  # median seconds, or None for n/a
    reason: str = ""
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def na(self) -> bool:
        return self.value is None


def measure(
    engine: Engine,
    kind: str,
    n: int,
    budget: Budget,
    opts: argparse.Namespace,
    capability_failures: dict[tuple[str, str], str],
) -> Cell:
    prior = capability_failures.get((engine.key, kind))
    if prior:
        return Cell(reason=f"not attempted: {prior}")
    if budget.left() <= 0:
        return Cell(reason="skipped: suite time budget used up")
    base_timeout = 400.0 if kind == "s2" else 240.0
    samples = [one_sample(engine, kind, n, budget, base_timeout)]
    first = samples[0]
    if not first.get("ok"):
        reason = first.get("reason", "failed")
        if not first.get("timeout") and kind in ("s3live", "s3cold"):
            capability_failures[(engine.key, kind)] = f"failed at N={n}: {reason}"
        return Cell(reason=reason, samples=samples)
    if first.get("wall_s", 1e9) < opts.repeat_under:
        for _ in range(opts.repeats - 1):
            if budget.left() <= 0:
                break
            samples.append(one_sample(engine, kind, n, budget, base_timeout))
    good = [s for s in samples if s.get("ok")]
    value = statistics.median(s["seconds"] for s in good)
    failed = [s for s in samples if not s.get("ok")]
    note = ""
    if failed:  # shown under the table: a failing repeat is a finding, not noise
        note = f"{len(failed)} of {len(samples)} runs failed: {failed[0].get('reason')}"
    return Cell(value=value, samples=samples, reason=note)


# --------------------------------------------------------------------------- table


@dataclass
class Row:
    label: str
    unit: str
    higher_is_better: bool
    cells: dict[str, Cell]
    transform: Any = None  # seconds -> displayed value
    fmt: str = "{:.3f}"

    def shown(self, key: str) -> float | None:
        c = self.cells.get(key)
        if c is None or c.na:
            return None
        assert c.value is not None
        return float(self.transform(c.value)) if self.transform else c.value

    def ratio(self, ours: str, peer: str) -> float | None:
        a, b = self.shown(ours), self.shown(peer)
        if a is None or b is None or a == 0 or b == 0:
            return None
        return a / b if self.higher_is_better else b / a


def _fmt(v: float | None, fmt: str) -> str:
    return "n/a" if v is None else fmt.format(v)


def render(rows: list[Row], columns: dict[str, str]) -> str:
    ratio_cols = [(o, p) for p in PEER_KEYS for o in OURS_KEYS]
    short = {"ours_default": "def", "ours_strict": "str", "pyworkflow040": "pw", "dbos": "dbos"}
    head = [f"{'scenario':<30}", f"{'unit':<9}"]
    shown = [k for k in [*OURS_KEYS, *REFERENCE_KEYS, *PEER_KEYS] if k in columns]
    head += [f"{columns[k]:>17}" for k in shown]
    head += [f"{short[o] + '/' + short[p]:>9}" for o, p in ratio_cols]
    lines = ["".join(head)]
    lines.append("-" * len(lines[0]))
    for row in rows:
        parts = [f"{row.label:<30}", f"{row.unit:<9}"]
        parts += [f"{_fmt(row.shown(k), row.fmt):>17}" for k in shown]
        parts += [f"{_fmt(row.ratio(o, p), '{:.2f}x'):>9}" for o, p in ratio_cols]
        lines.append("".join(parts))
    return "\n".join(lines)


def machine_info(probe: dict[str, dict[str, Any]]) -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu,
        "platform": platform.platform(),
        "suite_python": sys.version.split()[0],
        "engine_python": {k: v.get("python") for k, v in probe.items()},
    }


def _postgres_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    except OSError:
        return False
    return True


def peak_rss(cells: dict[str, Cell]) -> dict[str, Cell]:
    """The largest peak RSS over each engine's runs of one scenario."""
    return {
        k: Cell(value=max(x["peak_rss_mb"] for x in c.samples), samples=[])
        if not c.na and c.samples
        else Cell(reason=c.reason or "no runs")
        for k, c in cells.items()
    }


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workflows", type=int, default=200, help="S1/S4 workflows (10 steps each)")
    ap.add_argument("--ns", default="100,1000,3000", help="N values for S2/S3")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--repeat-under", type=float, default=8.0, help="repeat runs faster than this")
    ap.add_argument("--budget", type=float, default=1200.0, help="seconds before runs are skipped")
    ap.add_argument("--engines", default=",".join(e.key for e in ENGINES))
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument(
        "--s5",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run S5 (Celery + Redis; needs Redis on 127.0.0.1:6379)",
    )
    opts = ap.parse_args()
    ns = [int(x) for x in opts.ns.split(",") if x]
    wanted = set(opts.engines.split(","))
    engines = [e for e in ENGINES if e.key in wanted]
    if any(e.key == "ours_postgres" for e in engines) and not _postgres_reachable():
        print("note: ours (postgres) skipped: nothing answers on 127.0.0.1:5432")
        engines = [e for e in engines if e.key != "ours_postgres"]
    budget = Budget(opts.budget)

    venvs: dict[str, Any] = {}
    for e in engines:
        if e.peer:
            venv = PEER_VENVS[e.peer]
            venvs[e.peer] = {**ensure_venv(venv), "requirement": venv.requirement}
            e.python = VENV_ROOT / venv.name / "bin" / "python"
    probe: dict[str, dict[str, Any]] = {}
    for e in engines:
        with tempfile.TemporaryDirectory() as tmp:
            probe[e.key] = run_runner(e, "probe", Path(tmp) / "probe.db", [], 120)
        if not probe[e.key].get("ok"):
            raise SystemExit(f"{e.label}: probe failed: {probe[e.key].get('reason')}")

    capability_failures: dict[tuple[str, str], str] = {}
    results: dict[str, dict[str, Cell]] = {}

    def run_kind(kind: str, n: int) -> None:
        tag = f"{kind}" + (f" N={n}" if kind in ("s2", "s3live", "s3cold") else "")
        results[tag] = {}
        for e in engines:
            cell = measure(e, kind, n, budget, opts, capability_failures)
            results[tag][e.key] = cell
            shown = "n/a: " + cell.reason if cell.na else f"{cell.value:.4f} s {cell.reason}"
            print(f"  {tag:<14} {e.label:<17} {shown}", flush=True)

    print(f"running scenarios (budget {opts.budget:.0f} s) ...", flush=True)
    run_kind("s1", opts.workflows)
    for n in ns:
        run_kind("s2", n)
    for n in ns:
        run_kind("s3live", n)
    for n in ns:
        run_kind("s3cold", n)
    run_kind("s4", opts.workflows)

    w = opts.workflows
    steps = w * 10
    rows: list[Row] = []
    s1 = results["s1"]
    rows.append(Row(f"S1 {w} wf x 10 steps", "wf/s", True, s1, lambda s: w / s, "{:.1f}"))
    rows.append(Row("S1 steps/s", "steps/s", True, s1, lambda s: steps / s, "{:.0f}"))
    rows.append(Row("S1 us per step", "us", False, s1, lambda s: s / steps * 1e6, "{:.0f}"))
    rows.append(Row("S1 peak RSS", "MB", False, peak_rss(s1), None, "{:.1f}"))
    for n in ns:
        rows.append(Row(f"S2 {n} sequential steps", "s", False, results[f"s2 N={n}"], None))
    for n in ns:
        rows.append(
            Row(f"S3 live wake, N={n}", "ms", False, results[f"s3live N={n}"], lambda s: s * 1e3)
        )
        rows[-1].fmt = "{:.1f}"
    for n in ns:
        rows.append(
            Row(f"S3 cold recover, N={n}", "ms", False, results[f"s3cold N={n}"], lambda s: s * 1e3)
        )
        rows[-1].fmt = "{:.1f}"
    rows.append(Row(f"S4 {w} wf x 10 concurrent", "s", False, results["s4"], None))
    # Peak RSS of the other scenarios, at their largest N.
    for label, tag in (
        (f"S2 N={ns[-1]}", f"s2 N={ns[-1]}"),
        (f"S3 live N={ns[-1]}", f"s3live N={ns[-1]}"),
        ("S4", "s4"),
    ):
        if tag in results:
            rss = peak_rss(results[tag])
            rows.append(Row(f"{label} peak RSS", "MB", False, rss, None, "{:.1f}"))

    # Journal mode actually found in each engine's database file.
    journal: dict[str, str] = {}
    for tag_cells in results.values():
        for k, c in tag_cells.items():
            for s in c.samples:
                if s.get("journal_mode"):
                    journal.setdefault(k, s["journal_mode"])
    columns = {e.key: e.label for e in engines}
    for k in [*OURS_KEYS, *PEER_KEYS]:
        columns.setdefault(k, k)
    durability = {e.key: e.durability.format(jm=journal.get(e.key, "?")) for e in engines}

    info = machine_info(probe)
    table = render(rows, columns)
    out: list[str] = []
    out.append("")
    out.append(
        f"Machine: {info['cpu_count']} CPUs ({info['cpu_model']}), {info['platform']}; "
        f"python {info['suite_python']} (every engine: "
        + ", ".join(f"{columns[k]} {v}" for k, v in info["engine_python"].items())
        + ")"
    )
    out.append("Durability per column:")
    for e in engines:
        out.append(f"  {e.label:<17} {durability[e.key]}")
    out.append(
        "Ratios: def/str = ours default/strict vs pw = pyworkflow 0.4.0, dbos = dbos 3.4.0; "
        "throughput ours/peer, times and RSS peer/ours, so > 1.00x always means ours is "
        "better (faster / smaller)."
    )
    out.append(
        f"Values: median of up to {opts.repeats} fresh-process runs when a run took under "
        f"{opts.repeat_under:.0f} s, else one run (same rule for every engine)."
    )
    out.append("")
    out.append(table)
    notes = []
    for tag, cells in results.items():
        for k, c in cells.items():
            if c.na:
                notes.append(f"  {tag:<14} {columns[k]:<17} n/a: {c.reason}")
            elif c.reason:
                notes.append(f"  {tag:<14} {columns[k]:<17} value from the good runs; {c.reason}")
    if notes:
        out.append("")
        out.append("Not measured / failures:")
        out.extend(notes)
    out.append("")
    out.append(
        "S3: a run of N steps, a durable sleep of 1 s, one more step. live = due time -> "
        "completion in the same process; cold = a first process suspends the run and exits "
        "(dbos: killed mid-sleep), a fresh process starts its engine once the run is overdue; "
        "time from that start (engine init included) to completion."
    )
    text = "\n".join(out)
    print(text)

    payload = {
        "machine": info,
        "columns": columns,
        "durability": durability,
        "venvs": venvs,
        "options": vars(opts),
        "probe": probe,
        "suite_seconds": time.monotonic() - budget.start,
        "rows": [
            {
                "scenario": r.label,
                "unit": r.unit,
                "higher_is_better": r.higher_is_better,
                "values": {k: r.shown(k) for k in columns},
                "ratios": {f"{o}/{p}": r.ratio(o, p) for p in PEER_KEYS for o in OURS_KEYS},
            }
            for r in rows
        ],
        "runs": {
            tag: {
                k: {"median_s": c.value, "na_reason": c.reason or None, "samples": c.samples}
                for k, c in cells.items()
            }
            for tag, cells in results.items()
        },
        "table": text,
    }
    if opts.s5:
        payload["s5"] = run_s5()
    path = Path(opts.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {path} (suite took {time.monotonic() - budget.start:.0f} s)")


def run_s5() -> dict[str, Any]:
    """S5, the Celery runtime with real workers (``celery_bench.py``, ours only: neither
    peer's runner drives a Celery deployment), printed after the main table."""
    print("\nS5: the Celery runtime end to end (ours only; peers: n/a, see below)", flush=True)
    proc = subprocess.run(
        [str(OURS_PYTHON), str(HERE / "celery_bench.py"), "--workers", "2"],
        capture_output=True,
        text=True,
    )
    print(proc.stdout.rstrip())
    if proc.returncode != 0:
        print(f"S5 failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    print(
        "S5 peers n/a: DBOS has no Celery runtime; pyworkflow 0.4.0's Celery runtime is not "
        "driven by its runner (benchmarks/peers/README.md)."
    )
    return {"exit": proc.returncode, "output": proc.stdout}


if __name__ == "__main__":
    main()
