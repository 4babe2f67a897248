"""Prometheus metrics counted from a run's life (real runs: SQLite on disk, the local
runtime): each outcome once however often the workflow replays, durations of live
attempts, timer lateness; on by default in a process that has prometheus_client, off
with ``metrics_enabled``; settings checked. Scrapes of real worker and scheduler
processes are in ``tests/celery/test_metrics.py``, the dashboard's ``/metrics`` in
``tests/server/test_metrics_route.py``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY, CollectorRegistry

import pyworkflow
from pyworkflow import (
    ConfigurationError,
    FatalError,
    RetryableError,
    cancel_workflow,
    continue_as_new,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.observability.metrics import disable_metrics, enable_metrics, installed
from tests.scrape import Scrape

_calls: Counter[str] = Counter()


@step(name="mx_flaky", max_retries=2, retry_delay=0.2)
async def flaky(key: str) -> str:
    _calls[key] += 1
    if _calls[key] == 1:
        raise RetryableError("the first call times out")
    await asyncio.sleep(0.05)
    return key.upper()


@step(name="mx_charge", max_retries=0)
async def charge(amount: int) -> int:
    if amount < 0:
        raise FatalError("card declined")
    return amount


@workflow(name="mx_drip")
async def drip(key: str) -> str:
    first = await flaky(key)
    await sleep(0.2)
    await charge(1)
    return first


@workflow(name="mx_doomed")
async def doomed() -> None:
    await charge(-1)


@workflow(name="mx_napper")
async def napper() -> None:
    await sleep("1h")


@workflow(name="mx_counter")
async def counter(n: int) -> int:
    await charge(n)
    if n < 2:
        continue_as_new(n + 1)
    return n


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """pyworkflow's metrics in a registry of this test's own; the default ones after."""
    own = CollectorRegistry()
    enable_metrics(own)
    yield own
    enable_metrics()


def _scrape(registry: CollectorRegistry) -> Scrape:
    from prometheus_client import generate_latest

    return Scrape(generate_latest(registry).decode())


async def test_each_outcome_is_counted_once_across_replays(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    pyworkflow.configure(storage=f"sqlite:///{tmp_path}/wf.db", timer_poll_interval=0.05)
    drips = [await start(drip, f"k{i}") for i in range(3)]
    doomed_id = await start(doomed)
    napping = await start(napper)
    await start(counter, 0)
    for run_id in drips:
        assert (await wait_for_run(run_id, timeout=20)).status == "completed"
    assert (await wait_for_run(doomed_id, timeout=10)).status == "failed"
    await cancel_workflow(napping, "no longer needed", wait=True, timeout=10)
    for _ in range(200):
        if _scrape(registry).value("pyworkflow_runs_finished_total", workflow="mx_counter") == 3:
            break
        await asyncio.sleep(0.05)

    got = _scrape(registry)
    started, finished = "pyworkflow_runs_started_total", "pyworkflow_runs_finished_total"
    assert got.value(started, workflow="mx_drip") == 3
    assert got.value(started, workflow="mx_counter") == 3  # the first run and two continuations
    assert got.value(finished, workflow="mx_drip", status="completed") == 3
    assert got.value(finished, workflow="mx_doomed", status="failed") == 1
    assert got.value(finished, workflow="mx_napper", status="cancelled") == 1
    assert got.value(finished, workflow="mx_counter", status="continued_as_new") == 2
    assert got.value(finished, workflow="mx_counter", status="completed") == 1
    # Each drip replays twice (after its retry delay and its sleep): no step counted again.
    steps = "pyworkflow_steps_total"
    assert got.value(steps, workflow="mx_drip", step="mx_flaky", status="completed") == 3
    assert got.value(steps, workflow="mx_drip", step="mx_charge", status="completed") == 3
    assert got.value(steps, workflow="mx_doomed", step="mx_charge", status="failed") == 1
    assert got.value("pyworkflow_step_retries_total", step="mx_flaky") == 3
    duration = "pyworkflow_step_duration_seconds"
    assert got.value(f"{duration}_count", step="mx_flaky", status="failed") == 3
    assert got.value(f"{duration}_count", step="mx_flaky", status="completed") == 3
    assert got.value(f"{duration}_sum", step="mx_flaky", status="completed") >= 3 * 0.05
    # A retry delay and a sleep per drip, each woken by its due time; the cancelled
    # napper was woken by its cancellation, not a timer.
    lateness = "pyworkflow_timer_lateness_seconds"
    assert got.value(f"{lateness}_count", workflow="mx_drip") == 6
    assert 0 <= got.value(f"{lateness}_sum", workflow="mx_drip") < 6 * 5
    assert got.value(f"{lateness}_count", workflow="mx_napper") == 0
    assert got.value("pyworkflow_runs_recovered_total") == 0  # (counted in the crash test)
    assert got.labels(finished, "workflow") == {"mx_drip", "mx_doomed", "mx_napper", "mx_counter"}


async def test_disabled_metrics_count_nothing_and_leave_the_registry(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    pyworkflow.configure(storage=f"sqlite:///{tmp_path}/wf.db")
    disable_metrics()
    assert installed() is None
    assert "pyworkflow_runs_started" not in _scrape(registry).text
    run_id = await start(counter, 2)
    assert (await wait_for_run(run_id, timeout=10)).status == "completed"
    assert installed() is None  # not set up again by the run
    assert "pyworkflow_" not in _scrape(registry).text


def _fresh_process(tmp_path: Path, **env: str) -> dict[str, float]:
    """A new process, as a user's script: runs a workflow, prints its default registry."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, json
            from prometheus_client import REGISTRY
            from pyworkflow import start, step, wait_for_run, workflow

            @step()
            async def greet(name): return f"hello {name}"

            @workflow()
            async def hello(name): return await greet(name)

            async def main():
                await wait_for_run(await start(hello, "ada"), timeout=20)
                print(json.dumps({
                    s.name: s.value for f in REGISTRY.collect() for s in f.samples
                    if s.name.endswith("_total") and s.name.startswith("pyworkflow_")
                }))

            asyncio.run(main())
            """
        )
    )
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_metrics_are_on_by_default_and_off_with_the_setting(tmp_path: Path) -> None:
    assert _fresh_process(tmp_path) == {
        "pyworkflow_runs_started_total": 1.0,
        "pyworkflow_runs_finished_total": 1.0,
        "pyworkflow_steps_total": 1.0,
    }
    assert _fresh_process(tmp_path, PYWORKFLOW_METRICS_ENABLED="false") == {}


def test_the_metrics_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in (0, 70000, "9100", True):
        with pytest.raises(ConfigurationError, match="metrics_port"):
            pyworkflow.configure(metrics_port=bad)
    with pytest.raises(ConfigurationError, match="metrics_enabled"):
        pyworkflow.configure(metrics_enabled="no")
    monkeypatch.setenv("PYWORKFLOW_METRICS_PORT", "9464")
    pyworkflow.reset_config()
    assert pyworkflow.get_config().metrics_port == 9464
    monkeypatch.setenv("PYWORKFLOW_METRICS_PORT", "http")
    pyworkflow.reset_config()
    with pytest.raises(ConfigurationError, match="PYWORKFLOW_METRICS_PORT"):
        pyworkflow.get_config()


def test_the_cli_refuses_a_bad_metrics_port() -> None:
    from pyworkflow.cli import main

    for command in ("worker", "scheduler"):
        answer = CliRunner().invoke(main, [command, "--metrics-port", "0"])
        assert answer.exit_code == 2
        assert "--metrics-port" in answer.output


def test_the_default_registry_is_used_unless_told_otherwise() -> None:
    metrics = enable_metrics()
    assert metrics.registry is REGISTRY
    assert enable_metrics() is metrics  # idempotent: the same collectors
