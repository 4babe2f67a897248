"""Every query the contract makes hot is an index lookup on every SQL backend.

For SQLite, PostgreSQL and MySQL/MariaDB: fill a store with 20,000 runs (skewed like a
real one: most runs completed, a tenth suspended with timers, 50 workflow names, 100
tags, a tenth of runs with a parent, three in a hundred asked to cancel), let the server
gather statistics, then ask the planner (``EXPLAIN``) for the plan of the exact statement
text and parameters the shared builders in :mod:`pyworkflow.storage._sql` produce. A plan
passes when it reads through an index and never scans a whole table (nor, for list
queries, sorts one): the cost of these queries then grows with log(n) plus the page size,
not with the store. Queries another index would also serve (reading far more rows) must
name their own (:data:`OWN_INDEX`).

The scans of the scheduler's and the local runtime's recovery passes (:func:`scan_queries`:
running and pending runs page by page, received hooks, the worker registry, due
schedules) are checked the same way, over hooks, schedules and worker records seeded
beside the runs: every page of every scan is an index seek (or, for the worker registry,
a walk of its primary key), so no pass reads a whole table however many runs there are.

The run id prefix filter (the dashboard's search box) has two good plans, and the
planner must pick the right one: a selective prefix reads its few ids from the primary
key and sorts just those (:data:`SELECTIVE_PREFIX`); a prefix most ids share walks the
``created_at`` order and filters, with no sort (:data:`BROAD_PREFIX`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from pyworkflow.engine.recovery import PAGE_SIZE
from pyworkflow.engine.workers import PAGE_SIZE as WORKER_PAGE
from pyworkflow.storage._sql import READ, TX, Conn, SQLStorageBackend, Statements
from pyworkflow.storage._sql_gates import GateStatements
from pyworkflow.storage._sql_hooks import HookStatements
from pyworkflow.storage._sql_schedules import ScheduleStatements
from pyworkflow.storage._sql_signals import SignalStatements
from pyworkflow.storage._sql_workers import WorkerStatements
from pyworkflow.storage.base import RunQuery, hook_cursor, run_cursor
from pyworkflow.storage.schemas import (
    Event,
    EventType,
    GateRecord,
    HookRecord,
    HookStatus,
    RunStatus,
    ScheduleRecord,
    ScheduleStatus,
    SignalRecord,
    WorkerRecord,
    WorkflowRun,
)
from pyworkflow.testing.conformance import at
from tests.storage import backend_mysql, backend_postgres, backend_sqlite

RUNS = 20_000
NOW = at(RUNS)


def seed_runs() -> list[WorkflowRun]:
    runs = []
    for i in range(RUNS):
        kind = i % 10
        status = (
            RunStatus.SUSPENDED
            if kind == 0
            else RunStatus.RUNNING
            if kind >= 8
            else RunStatus.COMPLETED
        )
        runs.append(
            WorkflowRun(
                run_id=f"run-{i:07}",
                workflow_name=f"wf-{i % 50}",
                status=status,
                created_at=at(i),
                updated_at=at(i),
                idempotency_key=f"key-{i}",
                tags=[f"tag-{i % 100}"],
                parent_run_id=f"parent-{i % 500}" if kind == 3 else None,
                # Timers spread over the past and the future of NOW.
                wake_at=at((i * 7919) % (2 * RUNS)) if status == RunStatus.SUSPENDED else None,
                # Every tenth suspended run and a few others were asked to cancel.
                cancel_requested_at=at(i) if i % 100 in (0, 9, 21) else None,
            )
        )
    return runs


# Queries that must read one particular index, not merely some index: the status index
# would also do for these, reading every suspended (or running) run.
OWN_INDEX = {
    "suspended, cancel requested": "runs_cancel_status_created_at",
    "cursor page suspended, cancel requested": "runs_cancel_status_created_at",
    "scan: running, cancel requested": "runs_cancel_status_created_at",
    "scan: cursor page running, cancel requested": "runs_cancel_status_created_at",
    # The (run_id, signal_id) index would do too, and sort the run's inbox.
    "read a run's signals": ("signals_pkey", "PRIMARY", "PRIMARY KEY"),
    "a run's last signal": ("signals_pkey", "PRIMARY", "PRIMARY KEY"),
}


# 100 of the 20,000 ids; and a prefix every id has.
SELECTIVE_PREFIX = "run-00042"
BROAD_PREFIX = "run-"
PRIMARY_KEYS = ("runs_pkey", "run_tags_pkey", "PRIMARY", "sqlite_autoindex_runs_1")


def filter_queries() -> dict[str, tuple[RunQuery, tuple[str, ...] | None, str]]:
    """``name -> (query, the indexes one of which it must read, the plan it may take)``:
    the dashboard's filter combinations whose best plan depends on the data. A selective
    prefix seeks its ids in the primary key and sorts them; a broad one walks the
    ``created_at`` order (the planner must not sort every run)."""
    deep = run_cursor(WorkflowRun(run_id="run-0004250", workflow_name="x", created_at=at(4250)))
    sel, broad, pk = SELECTIVE_PREFIX, BROAD_PREFIX, PRIMARY_KEYS
    failed = RunStatus.FAILED
    return {
        # PostgreSQL intersects two indexes and sorts; the others walk one and filter.
        "list by status and workflow_name": (
            RunQuery(status=failed, workflow_name="wf-7"),
            None,
            SORTED,
        ),
        "prefix": (RunQuery(run_id_prefix=sel), pk, SORTED),
        "prefix, a whole id": (RunQuery(run_id_prefix="run-0004242"), pk, SORTED),
        "prefix by status": (RunQuery(run_id_prefix=sel, status=failed), None, SORTED),
        "prefix by workflow": (RunQuery(run_id_prefix=sel, workflow_name="wf-7"), None, SORTED),
        "prefix by tag": (RunQuery(run_id_prefix=sel, tag="tag-42"), None, SORTED),
        "cursor page by prefix": (RunQuery(run_id_prefix=sel, cursor=deep), pk, SORTED),
        "broad prefix": (RunQuery(run_id_prefix=broad), None, WALK),
        "broad prefix by status": (
            RunQuery(run_id_prefix=broad, status=RunStatus.RUNNING),
            None,
            WALK,
        ),
        "cursor page by broad prefix": (RunQuery(run_id_prefix=broad, cursor=deep), None, WALK),
    }


def hot_queries(sql: Statements) -> dict[str, tuple[str, list[Any]]]:
    """``name -> (statement, params)`` exactly as the backend would run them."""
    dt = sql.dialect.dt_to_db
    signals, gates = SignalStatements(sql), GateStatements(sql)
    mid = run_cursor(WorkflowRun(run_id="run-0010000", workflow_name="x", created_at=at(10_000)))
    deep = run_cursor(WorkflowRun(run_id="run-0000500", workflow_name="x", created_at=at(500)))
    queries = {
        "list by status": sql.query(RunQuery(status=RunStatus.RUNNING)),
        "list by workflow_name": sql.query(RunQuery(workflow_name="wf-7")),
        "list by tag": sql.query(RunQuery(tag="tag-42")),
        "list by parent_run_id": sql.query(RunQuery(parent_run_id="parent-33")),
        "list created range": sql.query(
            RunQuery(created_after=at(5_000), created_before=at(5_400))
        ),
        "cursor page": sql.query(RunQuery(cursor=mid)),
        "cursor page, deep": sql.query(RunQuery(cursor=deep)),
        "cursor page by status": sql.query(RunQuery(status=RunStatus.COMPLETED, cursor=deep)),
        "cursor page by tag": sql.query(RunQuery(tag="tag-42", cursor=deep)),
        "cursor page by workflow_name": sql.query(RunQuery(workflow_name="wf-7", cursor=mid)),
        "suspended, cancel requested": sql.query(
            RunQuery(status=RunStatus.SUSPENDED, cancel_requested=True)
        ),
        "cursor page suspended, cancel requested": sql.query(
            RunQuery(status=RunStatus.SUSPENDED, cancel_requested=True, cursor=mid)
        ),
        "idempotency key lookup": (sql.get_run_by_key, ["key-4242"]),
        "list due runs": (sql.list_due, ["suspended", dt(NOW), 100]),
        "next wake time": (sql.next_wake, ["suspended"]),
        "read a run's events": (sql.get_events, ["run-0004242", 0]),
        # A run's inbox, read after what the run has taken; what a send reads under the
        # run's lock (a repeated id, the sequence to follow).
        "read a run's signals": (signals.list, ["run-0004242", 100, 1000]),
        "a signal by its id": (signals.get_locked, ["run-0004242", "signal-150"]),
        "a run's last signal": (signals.last_sequence, ["run-0004242"]),
        # Every flow-controlled step reads its gate, then compare-and-sets it.
        "a gate by its key": (gates.get, ["concurrency:wf-42:4242"]),
        "a gate's compare-and-set": (
            gates.update,
            list(gates.update_params(gate("concurrency:wf-42:4242"), 3, 2)),
        ),
    }
    due = ["suspended", dt(NOW), "claimer", dt(NOW), 100]
    if sql.dialect.update_returning:
        queries["due-run claim"] = (sql.claim_returning, ["claimer", dt(at(RUNS + 60)), *due])
    else:
        queries["due-run claim"] = (sql.claim_select, due)
    return queries


def scan_queries(sql: Statements) -> dict[str, tuple[str, list[Any], str]]:
    """``name -> (statement, params, plan)`` of every query the scheduler's and the local
    runtime's recovery passes make (:mod:`pyworkflow.engine.recovery`,
    :mod:`pyworkflow.engine.workers`, :class:`pyworkflow.celery.scheduler.TimerSweeper`,
    the schedule service), page by page as they make them. The due-run claim, the next
    wake-up time and the cancel-requested scan of suspended runs are in
    :func:`hot_queries`."""
    dt = sql.dialect.dt_to_db
    deep = run_cursor(WorkflowRun(run_id="run-0000508", workflow_name="x", created_at=at(508)))
    hooks, schedules, workers = (
        HookStatements(sql),
        ScheduleStatements(sql),
        WorkerStatements(sql),
    )
    page = PAGE_SIZE
    hook_at = hook_cursor(
        HookRecord(token_hash=f"{4_000:064x}", run_id="", hook_id="", name="", created_at=at(4_000))
    )

    def runs(**query: Any) -> tuple[str, list[Any], str]:
        return (*sql.query(RunQuery(limit=page, **query)), SEEK)

    running, pending = RunStatus.RUNNING, RunStatus.PENDING
    return {
        # runs_to_recover and awaiting_delivery: every running and pending run, by pages.
        "scan: running, first page": runs(status=running),
        "scan: running, cursor page": runs(status=running, cursor=deep),
        "scan: pending, first page": runs(status=pending),
        "scan: pending, cursor page": runs(status=pending, cursor=deep),
        # The local runtime hands cancellations to runs executing in it.
        "scan: running, cancel requested": runs(status=running, cancel_requested=True),
        "scan: cursor page running, cancel requested": runs(
            status=running, cancel_requested=True, cursor=deep
        ),
        # payload_signalled_runs: hooks whose payload arrived, then each one's run.
        "scan: received hooks": (hooks.list(False, True), ["received", page, 0], SEEK),
        "scan: received hooks, cursor page": (
            hooks.list(False, True, True),
            ["received", *hooks.cursor_params(hook_at), page, 0],
            SEEK,
        ),
        "scan: a hook's run": (sql.get_run, ["run-0004242"], SEEK),
        # The worker registry, in worker_id order from a cursor (walks the primary key).
        "scan: worker registry": (workers.list, [WORKER_PAGE], WALK),
        "scan: worker registry, cursor page": (
            workers.list_after,
            ["worker-host:0000500", WORKER_PAGE],
            WALK,
        ),
        # Due schedules, earliest first.
        "scan: due schedules": (schedules.due, ["active", dt(NOW), 100], SEEK),
    }


# Rows of the tables the scans read besides runs: enough that a planner prefers an index.
HOOKS, SCHEDULES, WORKERS = 20_000, 5_000, 5_000
# Signals: one for every run, and a long inbox for one of them.
SIGNAL_RUNS, LONG_INBOX = 20_000, 200
GATES = 5_000


def gate(key: str) -> GateRecord:
    return GateRecord(key=key, data='{"holders":[]}', updated_at=NOW)


def seed_others(sql: Statements) -> dict[str, tuple[str, list[tuple[Any, ...]]]]:
    """``table -> (insert statement, rows)``: a hook for every run (most disposed or
    received long ago, a tenth pending), schedules (most active, due over the past and
    future of NOW), worker records, signals (one per run, a long inbox for one) and
    flow-control gates."""
    hooks, schedules, workers, signals, gates = (
        HookStatements(sql),
        ScheduleStatements(sql),
        WorkerStatements(sql),
        SignalStatements(sql),
        GateStatements(sql),
    )
    statuses = [HookStatus.DISPOSED] * 6 + [HookStatus.RECEIVED] * 3 + [HookStatus.PENDING]
    hook_rows = [
        hooks.hook_row(
            HookRecord(
                token_hash=f"{i:064x}",
                run_id=f"run-{i:07}",
                hook_id="hook:approval#1",
                name="approval",
                status=statuses[i % 10],
                created_at=at(i),
                received_at=at(i + 1) if statuses[i % 10] == HookStatus.RECEIVED else None,
            )
        )
        for i in range(HOOKS)
    ]
    schedule_rows = [
        schedules.schedule_row(
            ScheduleRecord(
                schedule_id=f"sched-{i:05}",
                workflow_name=f"wf-{i % 50}",
                status=ScheduleStatus.PAUSED if i % 10 == 0 else ScheduleStatus.ACTIVE,
                next_run_time=at((i * 7919) % (2 * RUNS)),
                created_at=at(i),
                updated_at=at(i),
            ),
            1,
        )
        for i in range(SCHEDULES)
    ]
    worker_rows = [
        workers.upsert_params(WorkerRecord(worker_id=f"worker-host:{i:07}", last_beat=at(i)))[:3]
        for i in range(WORKERS)
    ]
    inboxes = [(f"run-{i:07}", 1) for i in range(SIGNAL_RUNS) if i != 4242]
    inboxes += [("run-0004242", n) for n in range(1, LONG_INBOX + 1)]
    signal_rows = [
        signals.signal_row(
            SignalRecord(
                run_id=run_id,
                sequence=n,
                name="add",
                payload="{}",
                signal_id=f"signal-{n}",
                sent_at=at(n),
            )
        )
        for run_id, n in inboxes
    ]
    plain_upsert = sql.convert(
        f"INSERT INTO {workers.workers} (worker_id, last_beat, data) VALUES (?, ?, ?)"
    )
    return {
        "hooks": (hooks.insert, hook_rows),
        "schedules": (schedules.insert, schedule_rows),
        "workers": (plain_upsert, worker_rows),
        "signals": (signals.insert, signal_rows),
        "gates": (
            gates.insert,
            [gates.insert_params(gate(f"concurrency:wf-{i % 50}:{i}"), 1) for i in range(GATES)],
        ),
    }


async def fill(backend: SQLStorageBackend) -> None:
    sql = backend.sql
    runs = seed_runs()

    async def insert(conn: Conn) -> None:
        await conn.executemany(sql.insert_run, [sql.run_row(r) for r in runs])
        tags = [row for r in runs for row in sql.create_plan(r, ()).tag_rows]
        await conn.executemany(sql.insert_tag, tags)
        # One event per run, and a long history for one of them.
        events = [
            Event(run_id=r.run_id, type=EventType.WORKFLOW_STARTED, sequence=1, timestamp=NOW)
            for r in runs
        ]
        events += [
            Event(run_id="run-0004242", type=EventType.LOG_INFO, sequence=n, timestamp=NOW)
            for n in range(2, 200)
        ]
        rows = [row for e in events for row in sql.event_rows(e.run_id, [e])]
        await conn.executemany(sql.insert_event, rows)
        for statement, table_rows in seed_others(sql).values():
            await conn.executemany(statement, table_rows)

    await backend._call(TX, insert)


# -- plan checks per server -------------------------------------------------------------------


# What a plan may do: SEEK an index range in the wanted order (the default); seek and
# SORT the rows the range gave; or WALK an index in the wanted order from its end,
# filtering, and stop at the page's end (no sort, but a scan of the index when nothing
# matches).
SEEK, SORTED, WALK = "seek", "sorted", "walk"


def index_problems(plan: str, index: str | tuple[str, ...] | None) -> list[str]:
    if index is None:
        return []
    names = (index,) if isinstance(index, str) else index
    return [] if any(name in plan for name in names) else [f"does not use {index}"]


WITHOUT_ROWID_SCANS = frozenset({"SCAN workers"})


async def sqlite_problems(
    backend: SQLStorageBackend,
    sql: str,
    params: list[Any],
    index: str | tuple[str, ...] | None,
    plan: str = SEEK,
) -> list[str]:
    async def explain(conn: Conn) -> Any:
        await conn.execute("ANALYZE", ())
        return await conn.fetch(f"EXPLAIN QUERY PLAN {sql}", params)

    steps = [str(row[3]) for row in await backend._call(READ, explain)]
    if plan == WALK:
        # A WITHOUT ROWID table is stored as its primary-key b-tree: its key walk reads
        # "SCAN workers" (no sort step follows, which the check below makes sure of).
        steps = [f"{s} USING PRIMARY KEY" if s in WITHOUT_ROWID_SCANS else s for s in steps]
    problems = [
        f"full scan: {s}"
        for s in steps
        if s.startswith("SCAN ") and not (plan == WALK and (" INDEX " in s or " KEY" in s))
    ]
    problems += [f"sort: {s}" for s in steps if "TEMP B-TREE" in s and plan != SORTED]
    if not any("INDEX" in s or "PRIMARY KEY" in s for s in steps):
        problems.append(f"no index in {steps}")
    return problems + index_problems(" ".join(steps), index)


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [node]
    for child in node.get("Plans", ()):
        nodes += _plan_nodes(child)
    return nodes


async def postgres_problems(
    backend: SQLStorageBackend,
    sql: str,
    params: list[Any],
    index: str | tuple[str, ...] | None,
    plan: str = SEEK,
) -> list[str]:
    async def explain(conn: Conn) -> Any:
        await conn.execute(f"ANALYZE {backend.sql.runs}", ())
        await conn.execute(f"ANALYZE {backend.sql.tags}", ())
        await conn.execute(f"ANALYZE {backend.sql.events}", ())
        for table in ("hooks", "schedules", "workers", "signals", "gates"):
            await conn.execute(f"ANALYZE {backend.sql.prefix}{table}", ())
        return await conn.fetch(f"EXPLAIN (FORMAT JSON) {sql}", params)

    rows = await backend._call(READ, explain)
    plan = rows[0][0]
    nodes = _plan_nodes((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
    types = [n["Node Type"] for n in nodes]
    problems = [
        f"full scan of {n.get('Relation Name')}" for n in nodes if n["Node Type"] == "Seq Scan"
    ]
    if "Sort" in types and plan == WALK:  # it sorts small index ranges otherwise
        problems.append("sorts")
    if not any(t in ("Index Scan", "Index Only Scan", "Bitmap Index Scan") for t in types):
        problems.append(f"no index in {types}")
    return problems + index_problems(" ".join(str(n.get("Index Name")) for n in nodes), index)


async def mysql_problems(
    backend: SQLStorageBackend,
    sql: str,
    params: list[Any],
    index: str | tuple[str, ...] | None,
    plan: str = SEEK,
) -> list[str]:
    async def explain(conn: Conn) -> Any:
        tables = "runs, run_tags, events, hooks, schedules, workers, signals, gates"
        await conn.fetch(f"ANALYZE TABLE {tables}", ())
        return await conn.fetch(f"EXPLAIN {sql}", params)

    problems, keys = [], []
    for row in await backend._call(READ, explain):
        table, access, key, extra = row[2], row[3], row[5], str(row[9] or "")
        keys.append(str(key))
        if access == "ALL" or key is None or (access == "index" and plan != WALK):
            problems.append(f"{table}: full scan (type={access}, key={key})")
        if ("filesort" in extra or "temporary" in extra) and plan != SORTED:
            problems.append(f"{table}: sorts ({extra})")
    return problems + index_problems(" ".join(keys), index)


CHECKS: dict[str, tuple[Any, Callable[..., Any]]] = {
    "sqlite": (backend_sqlite, sqlite_problems),
    "postgres": (backend_postgres, postgres_problems),
    "mysql": (backend_mysql, mysql_problems),
}


@pytest.mark.parametrize("name", list(CHECKS))
async def test_hot_queries_use_indexes(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if request.config.getoption("--backend", default=None) not in (None, name):
        pytest.skip("--backend selects another storage backend")
    module, problems_of = CHECKS[name]
    async with module.open_backend(tmp_path) as (backend, _):
        try:
            await fill(backend)
            report = {
                query: await problems_of(backend, sql, params, OWN_INDEX.get(query))
                for query, (sql, params) in hot_queries(backend.sql).items()
            }
            for query, (sql, params, plan) in scan_queries(backend.sql).items():
                report[query] = await problems_of(backend, sql, params, OWN_INDEX.get(query), plan)
            for query, (run_query, indexes, plan) in filter_queries().items():
                # The statement query_runs would run (SQLite probes a prefix first).
                sql, params = await backend._call(
                    READ, partial(backend._query_statement, run_query)
                )
                report[query] = await problems_of(backend, sql, params, indexes, plan)
        finally:
            await backend.close()
    failing = {query: problems for query, problems in report.items() if problems}
    assert not failing, f"{name}: plans without an index:\n" + "\n".join(
        f"  {query}: {'; '.join(problems)}" for query, problems in failing.items()
    )
    assert len(report) == 32 + len(scan_queries(Statements(backend.sql.dialect)))


def test_statement_text_is_parameterized() -> None:
    # Values travel only as bound parameters: the statements hold no literals, and their
    # placeholders match the parameters one for one.
    for name in CHECKS:
        module = _dialect_module(name)
        dialect = {"sqlite": "SQLITE", "postgres": "POSTGRES", "mysql": "MYSQL"}[name]
        sql = Statements(getattr(module, dialect))
        statements = dict(hot_queries(sql))
        statements.update((q, (text, params)) for q, (text, params, _) in scan_queries(sql).items())
        padded = Statements(replace(sql.dialect, prefix_like=True, prefix_probe=10))
        for variant in (sql, padded):
            for query, (run_query, _, _) in filter_queries().items():
                statements[f"{query} ({variant.dialect})"] = variant.query(run_query)
                statements[f"{query}, walked"] = variant.query(run_query, walk=True)
            probe = variant.prefix_probe(SELECTIVE_PREFIX)
            if probe is not None:
                statements[f"prefix probe ({variant.dialect})"] = probe
        for query, (text, params) in statements.items():
            assert "'" not in text, (name, query)
            marks = {
                "qmark": text.count("?"),
                "numeric": len(set(re.findall(r"\$\d+", text))),
                "format": text.count("%s"),
            }[sql.dialect.paramstyle]
            assert marks == len(params), (name, query, text)


def _dialect_module(name: str) -> Any:
    if name == "sqlite":
        from pyworkflow.storage import sqlite

        return sqlite
    if name == "postgres":
        pytest.importorskip("asyncpg")
        from pyworkflow.storage import postgres

        return postgres
    pytest.importorskip("aiomysql")
    from pyworkflow.storage import mysql

    return mysql
