"""Prometheus metrics of a Celery deployment, scraped over HTTP from real processes: a
worker started with the seed's command and the ``metrics_port`` setting serves the sum of
what its pool processes counted (prometheus_client's multiprocess mode), and
``pyworkflow scheduler --metrics-port`` serves the overdue backlog."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from functools import partial

import pytest

from pyworkflow import start
from pyworkflow.storage.schemas import RunStatus
from tests.celery.cluster import wait_all_terminal
from tests.celery.flows import fan_out, pipeline, retrying, sleeper
from tests.private_servers import free_port
from tests.scrape import scrape, scrape_until

pytestmark = pytest.mark.timeout(180)


async def test_a_worker_serves_the_sum_of_its_pool_processes(make_cluster) -> None:
    port = free_port()
    cluster = await make_cluster(PYWORKFLOW_METRICS_PORT=str(port), SLOW_STEP_SECONDS="0.3")
    cluster.start_worker("m1", 2)  # celery -A pyworkflow.celery.app worker (the seed's)
    run_ids = [await start(pipeline, i, "1s") for i in range(4)]
    run_ids += [await start(retrying, 1), await start(fan_out, 4)]
    await wait_all_terminal(cluster.storage, run_ids, 90, cluster)
    step_pids = {line[3] for line in cluster.ledger_lines()}
    assert len(step_pids) == 2, "both pool processes ran steps: the scrape must add them up"

    url = f"http://127.0.0.1:{port}/metrics"
    finished = "pyworkflow_runs_finished_total"
    got = await asyncio.to_thread(
        scrape_until,
        url,
        lambda s: s.value(finished, workflow="pipeline", status="completed") >= 4,
        what="4 completed pipelines",
    )
    assert got.value(finished, workflow="pipeline", status="completed") == 4
    assert got.value(finished, workflow="retrying", status="completed") == 1
    assert got.value(finished, workflow="fan_out", status="completed") == 1
    assert got.value(finished, status="failed") == 0
    # Each recorded step outcome counted once, however many times the workflow replayed.
    steps = "pyworkflow_steps_total"
    assert got.value(steps, workflow="pipeline", step="add", status="completed") == 8
    assert got.value(steps, workflow="pipeline", step="inline_square", status="completed") == 4
    assert got.value(steps, workflow="fan_out", step="slow_double", status="completed") == 4
    assert got.value(steps, workflow="retrying", step="flaky", status="completed") == 1
    assert got.value(steps, status="failed") == 0
    assert got.value("pyworkflow_step_retries_total", workflow="retrying", step="flaky") == 1
    # Durations of live attempts: the failed first attempt of flaky is one of them.
    duration = "pyworkflow_step_duration_seconds"
    assert got.value(f"{duration}_count", step="flaky", status="failed") == 1
    assert got.value(f"{duration}_count", step="flaky", status="completed") == 1
    assert got.value(f"{duration}_count", step="slow_double") == 4
    assert got.value(f"{duration}_sum", step="slow_double") >= 4 * 0.3
    # Woken by their due time: the four 1 s sleeps and flaky's retry delay.
    lateness = "pyworkflow_timer_lateness_seconds"
    assert got.value(f"{lateness}_count", workflow="pipeline") == 4
    assert got.value(f"{lateness}_count", workflow="retrying") == 1
    assert got.value(f"{lateness}_sum", workflow="pipeline") < 4 * 10
    # Every task's message wait: each start, and each dispatched step.
    lag = "pyworkflow_queue_lag_seconds_count"
    assert got.value(lag, kind="workflow", name="pipeline") >= 4
    assert got.value(lag, kind="step", name="add") == 8
    assert got.value(lag, kind="step", name="slow_double") == 4


async def test_the_scheduler_reports_the_overdue_backlog(make_cluster) -> None:
    port = free_port()
    cluster = await make_cluster()
    cluster.start_worker("w1", 1)
    cluster.start_scheduler("--metrics-port", str(port))
    url = f"http://127.0.0.1:{port}/metrics"
    run_ids = [await start(sleeper, 2) for _ in range(3)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runs = [await cluster.storage.get_run(r) for r in run_ids]
        if all(r is not None and r.status is RunStatus.SUSPENDED for r in runs):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"runs not all sleeping:\n{cluster.logs()}")
    cluster.kill_worker("w1")  # nobody left to take them when they come due

    backlog = await asyncio.to_thread(
        scrape_until,
        url,
        lambda s: s.value("pyworkflow_due_runs", workflow="sleeper") == 3,
        what="3 overdue sleeper runs",
    )
    assert backlog.value("pyworkflow_due_runs") == 3

    cluster.start_worker("w2", 1)
    await wait_all_terminal(cluster.storage, run_ids, 60, cluster)
    drained = await asyncio.to_thread(
        scrape_until,
        url,
        lambda s: (
            "pyworkflow_due_runs" in s.text
            and s.value("pyworkflow_due_runs", workflow="sleeper") == 0
        ),
        what="the backlog drained",
    )
    assert drained.value("pyworkflow_due_runs") == 0
    assert scrape(url).value("pyworkflow_due_runs", workflow="sleeper") == 0


async def test_pyworkflow_worker_serves_metrics_on_its_port(make_cluster, tmp_path) -> None:
    """``pyworkflow worker --metrics-port`` (the CLI, not the setting); a second worker
    asked for the same port exits at start saying why."""
    port = free_port()
    cluster = await make_cluster()
    cmd = [sys.executable, "-m", "pyworkflow.cli", "worker", "--concurrency", "1"]
    log = (tmp_path / "worker-cli.log").open("ab")
    proc = await asyncio.to_thread(
        partial(
            subprocess.Popen,
            [*cmd, "--metrics-port", str(port), "--hostname", "cli@%h"],
            cwd=tmp_path, env=cluster.env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    )  # fmt: skip
    cluster.workers["cli"] = proc  # stopped with the cluster
    run_id = await start(pipeline, 5, "0s")
    await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    got = await asyncio.to_thread(
        scrape_until,
        f"http://127.0.0.1:{port}/metrics",
        lambda s: s.value("pyworkflow_runs_finished_total", workflow="pipeline") == 1,
        what="the pipeline's completion",
    )
    assert got.value("pyworkflow_steps_total", workflow="pipeline") == 3

    second = await asyncio.to_thread(
        partial(
            subprocess.run,
            [*cmd, "--metrics-port", str(port), "--hostname", "dup@%h"],
            cwd=tmp_path, env=cluster.env(), capture_output=True, text=True, timeout=60,
        )
    )  # fmt: skip
    assert second.returncode != 0
    assert f"cannot serve metrics on port {port}" in second.stdout + second.stderr
