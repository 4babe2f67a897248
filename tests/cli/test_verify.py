"""``pyworkflow verify`` and ``pyworkflow runs export``, as a user meets them: a project
directory with a workflow module, runs stored by the old code (sleeping mid-run), the
module edited, and the installed script run from that directory (no PYTHONPATH)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.project_support import project_dir, script, storage_urls

ORDERS = """
from pyworkflow import patched, sleep, step, workflow

@step()
async def reserve(order_id: str) -> str:
    return f"reserved {order_id}"

@step()
async def charge(order_id: str) -> str:
    return f"charged {order_id}"

@step()
async def check_fraud(order_id: str) -> bool:
    return True

@step()
async def ship(order_id: str) -> str:
    return f"shipped {order_id}"

@step()
async def notify(order_id: str) -> None:
    return None

@workflow()
async def order(order_id: str) -> str:
    await reserve(order_id)
    await charge(order_id)
    await sleep("1h")
    return await ship(order_id)
"""

SEED = """
import asyncio, sys
from pyworkflow import start
from orders import order

async def main():
    for i in range(int(sys.argv[1])):
        print(await start(order, f"o{i}"))

asyncio.run(main())
"""

BODY = """    await reserve(order_id)
    await charge(order_id)
    await sleep("1h")
    return await ship(order_id)
"""


@pytest.fixture(params=["sqlite", "postgres"])
def storage(request: pytest.FixtureRequest, project: Path) -> Iterator[str]:
    yield from storage_urls(request.param, project)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from project_dir(tmp_path, monkeypatch, "orders", ORDERS)


def _seed(project: Path, storage: str, runs: int = 3) -> list[str]:
    """Runs of the old code, each sleeping after its first two steps."""
    (project / "seed.py").write_text(SEED)
    done = subprocess.run(
        [sys.executable, "seed.py", str(runs)],
        cwd=project, env=_env(storage), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _env(storage: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env.pop("PYTHONPATH", None)
    return {**env, "PYWORKFLOW_STORAGE": storage}


def _deploy(project: Path, body: str) -> None:
    """Edit the workflow's body, as a change to be deployed."""
    text = (project / "orders.py").read_text()
    (project / "orders.py").write_text(text.replace(BODY, body))


def _verify(project: Path, storage: str, *args: str) -> subprocess.CompletedProcess[str]:
    return script(project, storage, "-m", "orders", "verify", *args)


def _verify_json(project: Path, storage: str, *args: str) -> tuple[int, dict]:
    done = script(project, storage, "-m", "orders", "-o", "json", "verify", *args)
    return done.returncode, json.loads(done.stdout)


def test_unchanged_code_replays_every_run(project: Path, storage: str) -> None:
    _seed(project, storage)
    done = _verify(project, storage)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 run(s) verified: every run replays" in done.stdout


def test_a_swapped_step_order_fails_with_the_first_divergence(project: Path, storage: str) -> None:
    run_ids = _seed(project, storage)
    _deploy(project, BODY.replace("    await reserve(order_id)\n", "").replace(
        "    await charge(order_id)\n", "    await charge(order_id)\n    await reserve(order_id)\n"
    ))  # fmt: skip
    code, report = _verify_json(project, storage)
    assert code == 1
    assert not report["ok"]
    assert sorted(r["run_id"] for r in report["runs"]) == sorted(run_ids)
    first = report["runs"][0]
    assert (first["position"], first["recorded"], first["requested"]) == (
        0,
        "step:reserve#1",
        "step:charge#1",
    )
    assert first["sequence"] == 2  # the event that started the recorded operation
    assert report["workflows"] == {"order": {"runs": 3, "failed": 3}}
    table = _verify(project, storage)
    assert table.returncode == 1
    assert "3 run(s) do not replay" in table.stdout


def test_a_removed_step_fails(project: Path, storage: str) -> None:
    _seed(project, storage, runs=1)
    _deploy(project, BODY.replace("    await charge(order_id)\n", ""))
    code, report = _verify_json(project, storage)
    assert code == 1
    (run,) = report["runs"]
    assert (run["position"], run["recorded"], run["requested"]) == (
        1,
        "step:charge#1",
        "sleep:sleep#1",
    )


def test_a_changed_sleep_fails_only_when_strict(project: Path, storage: str) -> None:
    _seed(project, storage, runs=1)
    _deploy(project, BODY.replace('sleep("1h")', 'sleep("2h")'))
    assert _verify(project, storage).returncode == 0
    code, report = _verify_json(project, storage, "--strict")
    assert code == 1
    (run,) = report["runs"]
    assert run["recorded"] == "sleep:sleep#1"
    assert "slept 3600s, the code now sleeps 7200s" in run["problem"]


def test_a_step_appended_at_the_end_replays(project: Path, storage: str) -> None:
    _seed(project, storage, runs=2)
    _deploy(project, BODY.replace(
        "    return await ship(order_id)\n",
        "    shipped = await ship(order_id)\n    await notify(order_id)\n    return shipped\n",
    ))  # fmt: skip
    done = _verify(project, storage, "--strict")
    assert done.returncode == 0, done.stdout
    assert "2 run(s) verified: every run replays" in done.stdout


def test_a_patched_change_replays_and_reports_the_runs_on_the_old_path(
    project: Path, storage: str
) -> None:
    _seed(project, storage, runs=2)
    _deploy(project, BODY.replace(
        "    await charge(order_id)\n",
        '    if patched("fraud-check"):\n        await check_fraud(order_id)\n'
        "    await charge(order_id)\n",
    ))  # fmt: skip
    code, report = _verify_json(project, storage)
    assert code == 0, report
    assert report["old_patch_paths"] == {"fraud-check": 2}
    # A run started by the new code takes the new path and replays too.
    new_run = _seed(project, storage, runs=1)[0]
    code, report = _verify_json(project, storage, "--run", new_run)
    assert code == 0 and report["old_patch_paths"] == {}
    events = script(project, storage, "-o", "json", "runs", "events", new_run)
    kinds = [e["type"] for e in json.loads(events.stdout)["events"]]
    assert kinds.count("patch.applied") == 1
    assert kinds.index("patch.applied") < kinds.index("step.started", 2)


def test_filters_pick_the_runs(project: Path, storage: str) -> None:
    run_ids = _seed(project, storage, runs=3)
    _, report = _verify_json(project, storage, "--run", run_ids[1])
    assert [r["run_id"] for r in report["runs"]] == [run_ids[1]]
    _, report = _verify_json(project, storage, "--sample", "2")
    assert len(report["runs"]) == 2 and {r["run_id"] for r in report["runs"]} < set(run_ids)
    _, report = _verify_json(project, storage, "--workflow", "other")
    assert report["runs"] == [] and report["ok"]
    _, report = _verify_json(project, storage, "--status", "completed")
    assert report["runs"] == []
    missing = _verify(project, storage, "--run", "run_nope")
    assert missing.returncode == 1
    assert "no run 'run_nope'" in missing.stderr


def test_verify_writes_nothing(project: Path) -> None:
    """Byte for byte: the SQLite database file and its write-ahead log (the committed
    transactions a writer left there, not yet copied into the file) are unchanged by a
    verify that replays every run and by one that finds divergences. (A read-only
    open may create an empty WAL where none was: the same content, none. The ``-shm``
    file is SQLite's shared-memory index, where every reader notes what it reads; it
    holds no data and is not compared.)"""
    storage = f"sqlite:///{project}/wf.db"
    _seed(project, storage, runs=3)

    def files() -> dict[str, bytes]:
        wal = project / "wf.db-wal"
        return {
            "db": hashlib.sha256((project / "wf.db").read_bytes()).digest(),
            "wal": hashlib.sha256(wal.read_bytes() if wal.exists() else b"").digest(),
        }

    before = files()
    assert _verify(project, storage).returncode == 0
    assert files() == before
    _deploy(project, BODY.replace("    await charge(order_id)\n", ""))
    assert _verify(project, storage, "--strict").returncode == 1
    assert files() == before


def test_an_exported_history_replays_in_a_test(project: Path, storage: str) -> None:
    """``runs export`` writes a history file; ``assert_replays`` replays it against the
    code (here in a script, as a user's test would) and fails once the code diverges."""
    (run_id,) = _seed(project, storage, runs=1)
    exported = script(project, storage, "runs", "export", run_id)
    assert exported.returncode == 0, exported.stderr
    (project / "history.json").write_text(exported.stdout)
    document = json.loads(exported.stdout)
    assert document["format"] == "pyworkflow.history" and document["version"] == 1
    assert document["run"]["run_id"] == run_id
    assert [e["sequence"] for e in document["events"]] == list(
        range(1, len(document["events"]) + 1)
    )
    check = project / "check.py"
    check.write_text(
        "import orders\n"
        "from pyworkflow.testing import assert_replays\n"
        "try:\n"
        "    assert_replays('history.json')\n"
        "    print('REPLAYS')\n"
        "except AssertionError as exc:\n"
        "    print('FAILS', exc)\n"
    )

    def run_check() -> str:
        done = subprocess.run(
            [sys.executable, "check.py"], cwd=project, env=_env("memory://"),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run_check().strip() == "REPLAYS"  # no storage needed: the file is the history
    _deploy(project, BODY.replace("    await reserve(order_id)\n", ""))
    out = run_check()
    assert out.startswith("FAILS") and "history.json" in out and "step:reserve#1" in out
