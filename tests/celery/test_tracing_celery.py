"""Traces across Celery processes (real workers, Redis, SQLite): one trace from the
starter's span through each execution of the run on a worker to its dispatched steps,
which run in other tasks (another pool process, or the same one later) and carry the
dispatching execution's context in their message headers. Worker processes export their
spans to files (``tests/celery/tracing_setup.py``), read back here."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from pyworkflow import start
from tests.celery.cluster import Cluster, wait_all_terminal
from tests.celery.flows import pipeline, transient_flow

pytestmark = pytest.mark.timeout(180)

starter = TracerProvider().get_tracer("the application")


def _spans(spans_dir: Path) -> list[dict[str, Any]]:
    found = []
    for path in spans_dir.glob("spans-*.jsonl"):
        pid = int(path.stem.removeprefix("spans-"))
        for line in path.read_text().splitlines():
            if line.endswith("}"):  # a line being written is skipped until complete
                found.append({**json.loads(line), "pid": pid})
    return found


async def _wait_for_spans(
    spans_dir: Path, cluster: Cluster, done: Any, limit: float = 30
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + limit
    while True:
        spans = _spans(spans_dir)
        if done(spans):
            return spans
        assert time.monotonic() < deadline, f"{spans}\n{cluster.logs()}"
        await asyncio.sleep(0.1)


def _hex(number: int, digits: int) -> str:
    return f"0x{number:0{digits}x}"


async def test_one_trace_spans_the_starter_the_workers_a_sleep_and_the_steps(
    make_cluster, tmp_path: Path
) -> None:
    spans_dir = tmp_path / "spans"
    spans_dir.mkdir()
    cluster = await make_cluster(
        PYWORKFLOW_MODULES="tests.celery.flows,tests.celery.tracing_setup",
        TRACE_SPANS_DIR=str(spans_dir),
    )
    cluster.start_worker("w1")
    cluster.start_scheduler()
    with starter.start_as_current_span("POST /orders") as request:
        run_id = await start(pipeline, 1, nap="1s")
        transient_id = await start(transient_flow, "traced", durable=False)
    [run] = await wait_all_terminal(cluster.storage, [run_id], 60, cluster)
    assert run.result == 16

    def of(spans: list[dict[str, Any]], run: str) -> list[dict[str, Any]]:
        return [s for s in spans if s["attributes"].get("pyworkflow.run_id") == run]

    def finished(spans: list[dict[str, Any]]) -> bool:
        outcomes = [s["attributes"].get("pyworkflow.outcome") for s in of(spans, run_id)]
        return "completed" in outcomes and len(of(spans, transient_id)) == 3

    spans = await _wait_for_spans(spans_dir, cluster, finished)
    context = request.get_span_context()
    trace_id, request_id = _hex(context.trace_id, 32), _hex(context.span_id, 16)
    assert {s["context"]["trace_id"] for s in spans} == {trace_id}
    assert all(s["pid"] != os.getpid() for s in spans)  # all exported by worker processes

    durable = sorted(of(spans, run_id), key=lambda s: s["start_time"])
    attempts = [s for s in durable if s["name"] == "workflow pipeline"]
    steps = [s for s in durable if s["name"].startswith("step ")]
    # Every execution, woken by a step task or the sleep's message, is the request's child.
    assert len(attempts) >= 3
    assert {s["parent_id"] for s in attempts} == {request_id}
    by_id = {s["context"]["span_id"]: s for s in attempts}
    # The dispatched steps (a step task each) are children of the execution that sent
    # them; the force_local step of the one it ran in. Replayed steps have no span.
    assert [s["name"] for s in steps] == ["step add", "step add", "step inline_square"]
    parents = [by_id[s["parent_id"]]["attributes"]["pyworkflow.outcome"] for s in steps]
    assert parents == ["dispatched", "dispatched", "completed"]
    assert [s["attributes"]["pyworkflow.step_id"] for s in steps] == [
        "step:add#1",
        "step:add#2",
        "step:inline_square#1",
    ]
    sleeping = [a for a in attempts if a["attributes"]["pyworkflow.outcome"] == "suspended"]
    assert [a["attributes"]["pyworkflow.suspend_reason"] for a in sleeping] == [
        "sleep sleep:sleep#1"
    ]

    # The transient run: no stored context, the message's headers carry the request's.
    transient = sorted(of(spans, transient_id), key=lambda s: s["start_time"])
    assert [s["name"] for s in transient] == [
        "workflow transient_flow",
        "step add",
        "step note_transient",
    ]
    assert transient[0]["parent_id"] == request_id
    assert {s["parent_id"] for s in transient[1:]} == {transient[0]["context"]["span_id"]}
