"""OpenTelemetry traces of real runs (SQLite on disk, the local runtime), read from the
SDK's in-memory exporter: one ``workflow`` span per execution of a run, one ``step``
span per live step attempt (none for replayed steps), every execution of a run in the
trace its starter was in, whichever task or process wakes it; runs created with no
trace, or stored before runs had one, or with a damaged one; and no OpenTelemetry at
all without the extra (a subprocess with the package hidden).

The Celery case (a step on a worker process) is ``tests/celery/test_tracing_celery.py``.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider, StatusCode

import pyworkflow
from pyworkflow import (
    FatalError,
    RetryableError,
    continue_as_new,
    get_workflow_run,
    sleep,
    start,
    start_child_workflow,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.observability import tracing

_provider = TracerProvider()
_exporter = InMemorySpanExporter()
_provider.add_span_processor(SimpleSpanProcessor(_exporter))
caller = _provider.get_tracer("the application")


@pytest.fixture(autouse=True)
def spans(tmp_path: Path) -> Iterator[InMemorySpanExporter]:
    """pyworkflow's spans go to an in-memory exporter for this test (not the global
    provider, which a process sets once)."""
    pyworkflow.configure(storage=f"sqlite:///{tmp_path}/wf.db", timer_poll_interval=0.05)
    _exporter.clear()
    tracing.use_tracer_provider(_provider)
    yield _exporter
    tracing.use_tracer_provider(None)


def named(spans: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    """Finished spans whose name starts with ``prefix``, in the order they started."""
    found = [s for s in spans.get_finished_spans() if s.name.startswith(prefix)]
    return sorted(found, key=lambda s: s.start_time or 0)


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: Any) -> int:
    """The id of a finished span or of one the test holds open."""
    return int(span.get_span_context().span_id)


def trace_id(span: Any) -> int:
    return int(span.get_span_context().trace_id)


def attr(span: ReadableSpan, key: str) -> Any:
    assert span.attributes is not None
    return span.attributes.get(key)


_calls: Counter[str] = Counter()


@step(name="tr_reserve")
async def reserve(order: str) -> str:
    return f"R-{order}"


@step(name="tr_charge", max_retries=2, retry_delay=0.3)
async def charge(order: str) -> str:
    _calls[order] += 1
    if _calls[order] == 1:
        raise RetryableError("gateway timeout")
    return f"C-{order}"


@step(name="tr_ship")
async def ship(order: str) -> str:
    return f"S-{order}"


@workflow(name="tr_checkout")
async def checkout(order: str) -> list[str]:
    """A step, a step failing once (its retry waits durably), a sleep, a last step: the
    run executes three times, replaying what is recorded each time."""
    reserved = await reserve(order)
    charged = await charge(order)
    await sleep(0.3)
    return [reserved, charged, await ship(order)]


async def test_a_run_is_one_trace_across_a_retry_and_a_sleep(
    spans: InMemorySpanExporter,
) -> None:
    with caller.start_as_current_span("POST /orders") as request:
        run_id = await start(checkout, "o1")
    run = await wait_for_run(run_id, timeout=20)
    assert run.status == "completed"

    starter = span_id(request)
    attempts = named(spans, "workflow ")
    steps = named(spans, "step ")
    everything = spans.get_finished_spans()
    # One trace: the request's, though executions 2 and 3 were woken by the runtime's
    # timer task (a context of its own): each is a child of the stored context.
    assert {trace_id(s) for s in everything} == {request.get_span_context().trace_id}
    assert [s.name for s in attempts] == ["workflow tr_checkout"] * 3
    assert [parent_of(s) for s in attempts] == [starter] * 3
    assert all(attr(s, "pyworkflow.run_id") == run_id for s in attempts)
    assert [attr(s, "pyworkflow.outcome") for s in attempts] == [
        "suspended",
        "suspended",
        "completed",
    ]
    reasons = [attr(s, "pyworkflow.suspend_reason") for s in attempts[:2]]
    assert reasons == ["retry of step:tr_charge#1", "sleep sleep:sleep#1"]
    assert [[e.name for e in s.events] for s in attempts] == [
        ["workflow.suspended"],
        ["workflow.resumed", "workflow.suspended"],
        ["workflow.resumed"],
    ]

    # Live attempts only: tr_reserve ran once (replayed twice), tr_charge twice.
    said = [(s.name, attr(s, "pyworkflow.attempt"), parent_of(s)) for s in steps]
    first, second, third = (span_id(s) for s in attempts)
    assert said == [
        ("step tr_reserve", 1, first),
        ("step tr_charge", 1, first),
        ("step tr_charge", 2, second),
        ("step tr_ship", 1, third),
    ]
    failed = steps[1]
    assert failed.status.status_code is StatusCode.ERROR
    assert "gateway timeout" in (failed.status.description or "")
    assert [e.name for e in failed.events] == ["exception"]
    assert attr(failed, "pyworkflow.step_id") == "step:tr_charge#1"
    assert attr(failed, "pyworkflow.workflow") == "tr_checkout"
    assert all(s.status.status_code is StatusCode.UNSET for s in [*attempts, *steps[2:]])
    # What the run stored: the request's span.
    stored = json.loads(run.trace_context or "{}")
    assert stored["traceparent"].split("-")[2] == f"{starter:016x}"


@workflow(name="tr_napper")
async def napper(order: str) -> str:
    await sleep(0.2)
    return await ship(order)


async def test_a_run_started_outside_any_trace_gets_a_root_of_its_own(
    spans: InMemorySpanExporter,
) -> None:
    """A schedule's tick or a script has no span: the run's ``start`` span is the root of
    one trace that all its executions share."""
    run_id = await start(napper, "o2")
    assert (await wait_for_run(run_id, timeout=20)).status == "completed"

    (root,) = named(spans, "start ")
    attempts = named(spans, "workflow ")
    assert root.name == "start tr_napper" and root.parent is None
    assert attr(root, "pyworkflow.run_id") == run_id
    assert [parent_of(s) for s in attempts] == [span_id(root)] * 2
    assert {trace_id(s) for s in spans.get_finished_spans()} == {trace_id(root)}


@workflow(name="tr_child")
async def child(order: str) -> str:
    await sleep(0.1)
    return await ship(order)


@workflow(name="tr_parent")
async def parent(order: str) -> str:
    return str(await start_child_workflow(child, order))


@workflow(name="tr_countdown")
async def countdown(n: int) -> int:
    await reserve(str(n))
    if n > 0:
        continue_as_new(n - 1)
    return n


async def test_child_runs_and_continuations_join_the_trace_of_the_execution_that_made_them(
    spans: InMemorySpanExporter,
) -> None:
    with caller.start_as_current_span("batch") as batch:
        parent_id = await start(parent, "o3")
        chain_head = await start(countdown, 1)
    assert (await wait_for_run(parent_id, timeout=20)).status == "completed"
    head = await wait_for_run(chain_head, timeout=20)
    assert head.status == "continued_as_new" and head.continued_to_run_id is not None
    assert (await wait_for_run(head.continued_to_run_id, timeout=20)).status == "completed"

    attempts = named(spans, "workflow ")
    by_run: dict[str, list[ReadableSpan]] = {}
    for s in attempts:
        by_run.setdefault(str(attr(s, "pyworkflow.run_id")), []).append(s)
    parent_attempts = by_run.pop(parent_id)
    chain = [by_run.pop(chain_head)]
    children = [spans_ for spans_ in by_run.values() if spans_[0].name == "workflow tr_child"]
    chain += [spans_ for spans_ in by_run.values() if spans_[0].name == "workflow tr_countdown"]
    (child_attempts,) = children
    # The child was created by the parent's first execution: each of its executions is
    # a child of that span; the parent's own executions are children of the batch.
    assert [parent_of(s) for s in parent_attempts] == [span_id(batch)] * 2
    assert [parent_of(s) for s in child_attempts] == [span_id(parent_attempts[0])] * 2
    # The continuation is a child of the execution that continued.
    assert len(chain) == 2
    assert parent_of(chain[1][0]) == span_id(chain[0][0])
    assert attr(chain[0][0], "pyworkflow.outcome") == "continued_as_new"
    assert {trace_id(s) for s in spans.get_finished_spans()} == {batch.get_span_context().trace_id}


@step(name="tr_decline", max_retries=3)
async def decline() -> None:
    raise FatalError("card declined")


@workflow(name="tr_doomed")
async def doomed() -> None:
    await decline()


async def test_a_failed_run_and_its_failed_step_are_error_spans(
    spans: InMemorySpanExporter,
) -> None:
    run_id = await start(doomed)
    assert (await wait_for_run(run_id, timeout=20)).status == "failed"

    (attempt,) = named(spans, "workflow ")
    (failed_step,) = named(spans, "step ")  # a FatalError is never retried
    for span in (attempt, failed_step):
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "FatalError: card declined"
        assert [e.name for e in span.events if e.name == "exception"] == ["exception"]
    assert attr(attempt, "pyworkflow.outcome") == "failed"


@workflow(name="tr_two_naps")
async def two_naps(order: str) -> str:
    await sleep(0.2)
    shipped = await ship(order)
    await sleep(0.2)
    return shipped


async def test_a_run_stored_without_a_trace_context_gets_a_new_root_per_execution(
    spans: InMemorySpanExporter,
) -> None:
    """As a run stored before this release: nothing to continue, so each execution after
    the upgrade is a trace of its own."""
    tracing.use_tracer_provider(NoOpTracerProvider())  # its creation records no context
    run_id = await start(two_naps, "o4")
    run = await get_workflow_run(run_id)
    assert run is not None and run.trace_context is None
    tracing.use_tracer_provider(_provider)
    assert (await wait_for_run(run_id, timeout=20)).status == "completed"

    attempts = named(spans, "workflow ")
    (shipped,) = named(spans, "step ")
    assert len(attempts) == 2  # the first execution happened with no provider
    assert [s.parent for s in attempts] == [None, None]
    assert trace_id(attempts[0]) != trace_id(attempts[1])
    assert parent_of(shipped) == span_id(attempts[0])


async def test_a_damaged_stored_trace_context_is_ignored(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    """Storage is not trusted: a stored context that is not a well-formed W3C one (here
    written over the row while the run sleeps) starts a new trace; the run completes."""
    run_id = await start(napper, "o5")
    with sqlite3.connect(tmp_path / "wf.db") as db:
        db.execute(
            "UPDATE runs SET trace_context = ? WHERE run_id = ?",
            ('{"traceparent": "00-zz-not-hex-01", "tracestate": "\\u0000"}', run_id),
        )
    assert (await wait_for_run(run_id, timeout=20)).status == "completed"
    woken = named(spans, "workflow ")[-1]
    assert woken.parent is None
    assert attr(woken, "pyworkflow.outcome") == "completed"


def test_only_well_formed_trace_headers_are_used() -> None:
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert json.loads(tracing.trace_context_of(good, "congo=t61rcWkgMzE") or "") == {
        "traceparent": good,
        "tracestate": "congo=t61rcWkgMzE",
    }
    # A bad tracestate is dropped alone; a bad traceparent drops everything.
    assert json.loads(tracing.trace_context_of(good, "x" * 600) or "") == {"traceparent": good}
    assert json.loads(tracing.trace_context_of(good, ["a=b"]) or "") == {"traceparent": good}
    for bad in (
        None,
        42,
        ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span id
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
        good + "-extra",
        good + "\n",
        "x" * 10_000,
    ):
        assert tracing.trace_context_of(bad, "a=b") is None
    assert tracing.headers('{"traceparent": "junk"}') == {}
    assert tracing.headers("not json") == {}
    assert tracing.headers(json.dumps({"traceparent": good})) == {"traceparent": good}


async def test_a_transient_run_is_traced_under_its_caller(spans: InMemorySpanExporter) -> None:
    with caller.start_as_current_span("quick") as quick:
        run_id = await start(checkout, "o6", durable=False)
    run = await get_workflow_run(run_id)
    assert run is not None and run.status == "completed"

    (attempt,) = named(spans, "workflow ")
    steps = named(spans, "step ")
    assert parent_of(attempt) == span_id(quick)
    assert attr(attempt, "pyworkflow.outcome") == "completed"
    # No log, nothing replayed: the retry waits in memory, within the one execution.
    assert [(s.name, parent_of(s)) for s in steps] == [
        ("step tr_reserve", span_id(attempt)),
        ("step tr_charge", span_id(attempt)),
        ("step tr_charge", span_id(attempt)),
        ("step tr_ship", span_id(attempt)),
    ]


NO_OTEL = textwrap.dedent(
    """
    import asyncio, importlib.abc, json, sys

    class Missing(importlib.abc.MetaPathFinder):
        '''As if the otel extra were not installed; counts the lookups.'''
        lookups = 0

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "opentelemetry":
                Missing.lookups += 1
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    if sys.argv[1] == "hidden":
        sys.meta_path.insert(0, Missing())

    import pyworkflow
    from pyworkflow import sleep, start, step, wait_for_run, workflow

    imported_by_import = any(m.startswith("opentelemetry") for m in sys.modules)

    @step(name="plain")
    async def plain(i: int) -> int:
        return i

    @workflow(name="plain_flow")
    async def plain_flow() -> int:
        await plain(1)
        await sleep(0.1)
        return await plain(2)

    async def main() -> list[str]:
        pyworkflow.configure(storage="sqlite:///" + sys.argv[2], timer_poll_interval=0.05)
        ids = [await start(plain_flow) for _ in range(5)]
        ids.append(await start(plain_flow, durable=False))
        return [str((await wait_for_run(i, timeout=20)).status) for i in ids[:5]]

    statuses = asyncio.run(main())
    print(json.dumps({
        "statuses": statuses,
        "imported_by_import": imported_by_import,
        "imported": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
        "lookups": Missing.lookups,
    }))
    """
)


@pytest.mark.parametrize("otel", ["hidden", "installed"])
def test_without_the_extra_nothing_imports_opentelemetry(tmp_path: Path, otel: str) -> None:
    """``import pyworkflow`` never imports OpenTelemetry. Without the package, runs
    (durable, with a sleep, and transient) work, and it was looked up once in all."""
    out = subprocess.run(
        [sys.executable, "-c", NO_OTEL, otel, str(tmp_path / "wf.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["statuses"] == ["completed"] * 5
    assert result["imported_by_import"] is False
    if otel == "hidden":
        assert result["imported"] == []
        assert result["lookups"] == 1
    else:  # installed: the first run uses the API (no SDK configured: no-op spans)
        assert "opentelemetry.trace" in result["imported"]
