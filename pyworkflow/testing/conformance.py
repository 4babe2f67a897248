"""The storage conformance suite: the :class:`StorageBackend` contract as tests.

Every backend, built-in or third-party, must pass it. Use it by subclassing::

    # tests/test_my_backend.py
    from pyworkflow.testing.conformance import StorageConformance

    class TestMyBackend(StorageConformance):
        pass

and providing, in that module or a ``conftest.py``:

* a ``storage`` fixture yielding a fresh, empty backend per test (closed afterwards);
* optionally a ``storage_url`` fixture returning a URL that
  :func:`~pyworkflow.storage.config.storage_from_url` resolves to the *same data* (or
  ``None``). It enables the persistence test (for backends with the ``"persistent"``
  capability) and the cross-process tests (``"cross_process"``), which rebuild the
  backend in a new instance or another process. Without it those tests are skipped;
* optionally a ``drop_connections`` fixture: an async callable (or ``None``) that makes
  the server drop every connection the ``storage`` backend holds (PostgreSQL's
  ``pg_terminate_backend``, MySQL's ``KILL``, Redis's ``CLIENT KILL``). It enables the
  reconnect test; without it that test is skipped.

Requires ``pytest`` and ``pytest-asyncio``. The tests only use the public contract, and
every assertion is on behaviour a caller can see.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pyworkflow.core.exceptions import (
    RunAlreadyExistsError,
    RunNotFoundError,
    SequenceConflictError,
)
from pyworkflow.storage.base import StorageBackend, run_cursor
from pyworkflow.storage.config import storage_from_url
from pyworkflow.storage.schemas import Event, EventType, RunStatus, RunUpdate, WorkflowRun

# A fixed clock with a non-zero microsecond part, so precision loss shows up.
T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_run(run_id: str, **overrides: Any) -> WorkflowRun:
    values: dict[str, Any] = {
        "run_id": run_id,
        "workflow_name": "order",
        "status": RunStatus.RUNNING,
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(overrides)
    return WorkflowRun(**values)


def make_events(
    run_id: str, first: int, count: int, type: EventType = EventType.STEP_COMPLETED
) -> list[Event]:
    return [
        Event(
            run_id=run_id,
            type=type,
            data={"n": seq},
            sequence=seq,
            timestamp=at(seq),
            event_id=f"{run_id}-e{seq}",
        )
        for seq in range(first, first + count)
    ]


async def create(storage: StorageBackend, run_id: str, events: int = 1, **kw: Any) -> WorkflowRun:
    """Store a run with ``events`` initial events (``last_sequence`` set to match)."""
    run = make_run(run_id, last_sequence=events, **kw)
    return await storage.create_run(run, make_events(run_id, 1, events, EventType.STEP_STARTED))


async def fetch(storage: StorageBackend, run_id: str) -> WorkflowRun:
    """The stored run, which must exist."""
    run = await storage.get_run(run_id)
    assert run is not None, f"run {run_id!r} missing"
    return run


async def append(
    storage: StorageBackend, run_id: str, after: int, count: int = 1, **update: Any
) -> None:
    """Append ``count`` events after sequence ``after``, with ``update`` as the RunUpdate."""
    await storage.append_events(
        run_id,
        make_events(run_id, after + 1, count),
        expected_last_sequence=after,
        update=RunUpdate(update) if update else None,
    )


def assert_utc(value: datetime | None) -> None:
    assert value is not None
    assert value.utcoffset() == timedelta(0)


async def lease_of(storage: StorageBackend, run_id: str) -> tuple[str | None, datetime | None]:
    run = await fetch(storage, run_id)
    return run.lease_owner, run.lease_expires_at


def optional_fixture(request: pytest.FixtureRequest, name: str) -> Any:
    """The value of fixture ``name``, or ``None`` when no such fixture is defined."""
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        return None


def storage_url_or_skip(
    storage: StorageBackend, request: pytest.FixtureRequest, capability: str
) -> str:
    """The ``storage_url`` fixture's value; skips without it or without ``capability``."""
    if capability not in storage.capabilities:
        pytest.skip(f"backend lacks the {capability!r} capability")
    try:
        url = request.getfixturevalue("storage_url")
    except pytest.FixtureLookupError:
        url = None
    if not url:
        pytest.skip("no storage_url fixture: cannot rebuild this backend elsewhere")
    return str(url)


# Run in a child process: build the backend from its URL, connect, say "ready", wait for
# "go" on stdin (so both children race), do one operation, print its outcome as JSON:
# whether the lease was acquired or the append accepted, or the id create_run returned.
CHILD_SCRIPT = r"""
import asyncio, json, sys
from datetime import UTC, datetime, timedelta

from pyworkflow.core.exceptions import SequenceConflictError
from pyworkflow.storage.config import storage_from_url
from pyworkflow.storage.schemas import Event, EventType, WorkflowRun


async def main() -> None:
    url, op, run_id, expected, owner = sys.argv[1:6]
    storage = storage_from_url(url)
    await storage.connect()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    now = datetime.now(UTC)
    if op == "lease":
        ok = await storage.acquire_lease(run_id, owner, now + timedelta(minutes=5), now)
    elif op == "create":  # run_id is the shared idempotency key; the outcome the stored id
        run = WorkflowRun(run_id=f"run-{owner}", workflow_name="race", idempotency_key=run_id)
        ok = (await storage.create_run(run)).run_id
    else:
        seq = int(expected) + 1
        event = Event(run_id=run_id, type=EventType.LOG_INFO, data={"owner": owner}, sequence=seq)
        try:
            await storage.append_events(run_id, [event], expected_last_sequence=int(expected))
            ok = True
        except SequenceConflictError:
            ok = False
    await storage.close()
    print(json.dumps({"ok": ok}), flush=True)


asyncio.run(main())
"""


async def race_in_processes(url: str, op: str, run_id: str, expected: int = 0) -> list[Any]:
    """Run ``op`` in two child processes released at the same moment; their outcomes."""
    pipe = asyncio.subprocess.PIPE
    argv = (sys.executable, "-c", CHILD_SCRIPT, url, op, run_id, str(expected))
    procs = [
        await asyncio.create_subprocess_exec(
            *argv, f"proc-{i}", stdin=pipe, stdout=pipe, stderr=pipe
        )
        for i in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if line.strip() != b"ready":
                _, err = await proc.communicate()
                raise AssertionError(f"child failed to start: {err.decode(errors='replace')}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
        outcomes = []
        for proc in procs:
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode(errors="replace")
            outcomes.append(json.loads(out.splitlines()[-1])["ok"])
        return outcomes
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


class StorageConformance:
    """Behaviour every :class:`StorageBackend` must show. Subclass as ``Test...``."""

    # -- runs ---------------------------------------------------------------------------

    async def test_create_and_get_round_trips_every_field(self, storage: StorageBackend) -> None:
        run = WorkflowRun(
            run_id="run-full",
            workflow_name="billing.charge",
            status=RunStatus.SUSPENDED,
            created_at=at(0),
            updated_at=at(1.5),
            started_at=at(2),
            completed_at=at(3),
            input_payload='{"args":[1,"ü"],"kwargs":{"k":null}}',
            result_payload='{"total": 12.5}',
            error="ValueError: nope",
            idempotency_key="charge-42",
            max_duration="1h",
            deadline_at=at(3600),
            context_payload='{"user":"ada"}',
            tags=["billing", "vip", "ünï"],
            recovery_attempts=2,
            max_recovery_attempts=7,
            recover_on_worker_loss=False,
            parent_run_id="run-parent",
            nesting_depth=1,
            continued_from_run_id="run-prev",
            continued_to_run_id="run-next",
            wake_at=datetime(2031, 1, 2, 3, 4, 5, 999999, tzinfo=UTC),
            lease_owner="worker-1",
            lease_expires_at=at(60),
            last_sequence=0,
            queue="billing.eu",
            trace_context=(
                '{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",'
                '"tracestate":"congo=t61rcWkgMzE"}'
            ),
        )
        returned = await storage.create_run(run)
        assert returned == run
        stored = await storage.get_run("run-full")
        assert stored == run
        assert stored is not None
        assert isinstance(stored.status, RunStatus)
        assert stored.recover_on_worker_loss is False
        for f in fields(WorkflowRun):
            value = getattr(stored, f.name)
            if isinstance(value, datetime):
                assert_utc(value)
        # Defaults round-trip too (None fields, empty tags).
        await storage.create_run(make_run("run-min"))
        assert await storage.get_run("run-min") == make_run("run-min")

    async def test_get_missing_run_returns_none(self, storage: StorageBackend) -> None:
        assert await storage.get_run("nope") is None

    async def test_get_runs_reads_many_at_once(self, storage: StorageBackend) -> None:
        for i in range(3):
            run = make_run(f"run-many-{i}")
            run.queue = "billing" if i else None
            await storage.create_run(run)
        found = await storage.get_runs(["run-many-2", "nope", "run-many-0", "run-many-2"])
        assert sorted((r.run_id, r.queue) for r in found) == [
            ("run-many-0", None),
            ("run-many-2", "billing"),
        ]
        assert await storage.get_runs([]) == []
        many = await storage.get_runs([f"x{i}" for i in range(1200)] + ["run-many-1"])
        assert [r.run_id for r in many] == ["run-many-1"]  # past one IN list's length
        assert await storage.get_run_by_idempotency_key("nope") is None

    async def test_returned_runs_are_copies(self, storage: StorageBackend) -> None:
        await create(storage, "r1", tags=["a"])
        first = await fetch(storage, "r1")
        first.tags.append("mutated")
        first.status = RunStatus.FAILED
        again = await fetch(storage, "r1")
        assert again.tags == ["a"] and again.status == RunStatus.RUNNING

    async def test_create_with_taken_run_id_raises(self, storage: StorageBackend) -> None:
        await create(storage, "r1")
        with pytest.raises(RunAlreadyExistsError):
            await storage.create_run(make_run("r1", workflow_name="other"))
        stored = await fetch(storage, "r1")
        assert stored.workflow_name == "order"

    async def test_create_stores_initial_events(self, storage: StorageBackend) -> None:
        await create(storage, "r1", events=3)
        events = await storage.get_events("r1")
        assert [e.sequence for e in events] == [1, 2, 3]
        assert events == make_events("r1", 1, 3, EventType.STEP_STARTED)

    async def test_idempotency_key_returns_existing_run(self, storage: StorageBackend) -> None:
        first = await create(storage, "r1", idempotency_key="k")
        second = make_run("r2", idempotency_key="k", last_sequence=2)
        returned = await storage.create_run(second, make_events("r2", 1, 2))
        assert returned.run_id == "r1"
        assert returned == first
        assert await storage.get_run("r2") is None
        assert await storage.get_events("r2") == []
        assert [e.sequence for e in await storage.get_events("r1")] == [1]
        assert [r.run_id for r in await storage.list_runs()] == ["r1"]
        by_key = await storage.get_run_by_idempotency_key("k")
        assert by_key is not None and by_key.run_id == "r1"

    async def test_concurrent_creates_with_one_key_store_one_run(
        self, storage: StorageBackend
    ) -> None:
        runs = [make_run(f"r{i}", idempotency_key="same") for i in range(10)]
        results = await asyncio.gather(*(storage.create_run(r) for r in runs))
        winners = {r.run_id for r in results}
        assert len(winners) == 1
        stored = await storage.list_runs()
        assert [r.run_id for r in stored] == list(winners)

    async def test_list_runs_filters(self, storage: StorageBackend) -> None:
        await create(storage, "a", status=RunStatus.RUNNING, tags=["x", 'q"uote'])
        await create(storage, "b", status=RunStatus.COMPLETED, tags=["xy"])
        await create(storage, "c", status=RunStatus.COMPLETED, workflow_name="refund")
        await create(storage, "d", status=RunStatus.SUSPENDED, workflow_name="refund", tags=["x"])

        async def ids(**filters: Any) -> set[str]:
            return {r.run_id for r in await storage.list_runs(**filters)}

        assert await ids() == {"a", "b", "c", "d"}
        assert await ids(status=RunStatus.COMPLETED) == {"b", "c"}
        assert await ids(workflow_name="refund") == {"c", "d"}
        assert await ids(tag="x") == {"a", "d"}
        assert await ids(tag='q"uote') == {"a"}
        assert await ids(tag="missing") == set()
        assert await ids(status=RunStatus.COMPLETED, workflow_name="refund") == {"c"}
        assert await ids(status=RunStatus.SUSPENDED, workflow_name="refund", tag="x") == {"d"}

    async def test_list_runs_newest_first_with_pagination(self, storage: StorageBackend) -> None:
        # Creation times differ by microseconds and span years: ordering must be exact.
        created = [at(0), at(0.000001), at(0.000002), at(86400 * 400), at(-86400 * 400)]
        for i, when in enumerate(created):
            await create(storage, f"r{i}", created_at=when)
        expected = ["r3", "r2", "r1", "r0", "r4"]
        assert [r.run_id for r in await storage.list_runs()] == expected
        assert [r.run_id for r in await storage.list_runs(limit=2)] == expected[:2]
        assert [r.run_id for r in await storage.list_runs(limit=2, offset=2)] == expected[2:4]
        assert [r.run_id for r in await storage.list_runs(limit=2, offset=4)] == expected[4:]
        assert await storage.list_runs(offset=10) == []

    async def test_workflow_names_are_distinct_and_sorted(self, storage: StorageBackend) -> None:
        if await storage.workflow_names() is None:
            pytest.skip("this backend does not list workflow names (optional)")
        assert await storage.workflow_names() == []
        names = ["refund", "order", "Order", "order.v2", "zeta", "refund"]
        for i, name in enumerate(names):
            await create(storage, f"r{i}", workflow_name=name, created_at=at(-i))
        assert await storage.workflow_names() == ["Order", "order", "order.v2", "refund", "zeta"]
        assert await storage.workflow_names(limit=2) == ["Order", "order"]
        assert await storage.workflow_names(limit=0) == []

    # -- events ---------------------------------------------------------------------------

    async def test_append_then_read_gap_free(self, storage: StorageBackend) -> None:
        await create(storage, "r1")
        await append(storage, "r1", 1, 2)
        await append(storage, "r1", 3)
        events = await storage.get_events("r1")
        assert [e.sequence for e in events] == [1, 2, 3, 4]
        assert events[1:] == make_events("r1", 2, 3)
        run = await fetch(storage, "r1")
        assert run.last_sequence == 4

    async def test_stale_append_raises_and_writes_nothing(self, storage: StorageBackend) -> None:
        await create(storage, "r1")
        await storage.append_events("r1", make_events("r1", 2, 2), expected_last_sequence=1)
        before_run = await storage.get_run("r1")
        before_events = await storage.get_events("r1")
        update = RunUpdate({"status": RunStatus.FAILED, "error": "should not land"})
        with pytest.raises(SequenceConflictError):
            await storage.append_events(
                "r1", make_events("r1", 2, 1), expected_last_sequence=1, update=update
            )
        with pytest.raises(SequenceConflictError):  # ahead of the log is a conflict too
            await storage.append_events("r1", make_events("r1", 6, 1), expected_last_sequence=5)
        assert await storage.get_run("r1") == before_run
        assert await storage.get_events("r1") == before_events

    async def test_append_to_unknown_run_raises(self, storage: StorageBackend) -> None:
        with pytest.raises(RunNotFoundError):
            await append(storage, "ghost", 0)
        assert await storage.get_events("ghost") == []

    async def test_update_applies_with_events(self, storage: StorageBackend) -> None:
        await create(storage, "r1")
        await append(
            storage, "r1", 1, status=RunStatus.SUSPENDED, wake_at=at(300), updated_at=at(10)
        )
        run = await fetch(storage, "r1")
        assert (run.status, run.wake_at, run.updated_at) == (RunStatus.SUSPENDED, at(300), at(10))
        assert run.last_sequence == 2
        assert_utc(run.wake_at)

        await append(storage, "r1", 2, status=RunStatus.RUNNING, wake_at=None)  # None clears
        run = await fetch(storage, "r1")
        assert (run.status, run.wake_at) == (RunStatus.RUNNING, None)

        result = '{"ok": true}'
        await append(
            storage,
            "r1",
            3,
            2,
            status=RunStatus.COMPLETED,
            result_payload=result,
            completed_at=at(20),
            lease_owner=None,
            lease_expires_at=None,
        )
        run = await fetch(storage, "r1")
        assert (run.status, run.result_payload, run.completed_at) == (
            RunStatus.COMPLETED,
            result,
            at(20),
        )
        assert run.last_sequence == 5
        assert run.workflow_name == "order"  # untouched columns stay
        assert [e.sequence for e in await storage.get_events("r1")] == [1, 2, 3, 4, 5]

    async def test_update_without_events_is_fenced(self, storage: StorageBackend) -> None:
        await create(storage, "r1")
        update = RunUpdate({"error": "boom", "recovery_attempts": 1})
        await storage.append_events("r1", [], expected_last_sequence=1, update=update)
        run = await fetch(storage, "r1")
        assert (run.error, run.recovery_attempts, run.last_sequence) == ("boom", 1, 1)
        with pytest.raises(SequenceConflictError):
            await storage.append_events(
                "r1", [], expected_last_sequence=0, update=RunUpdate({"error": "late"})
            )
        run = await fetch(storage, "r1")
        assert run.error == "boom"
        with pytest.raises(RunNotFoundError):
            await storage.append_events("ghost", [], expected_last_sequence=0)

    async def test_get_events_after_sequence(self, storage: StorageBackend) -> None:
        await create(storage, "r1", events=5)
        assert [e.sequence for e in await storage.get_events("r1", after_sequence=3)] == [4, 5]
        assert await storage.get_events("r1", after_sequence=5) == []
        assert len(await storage.get_events("r1", after_sequence=0)) == 5

    async def test_event_data_round_trips(self, storage: StorageBackend) -> None:
        await create(storage, "r1")
        data: dict[str, Any] = {
            "nested": {"list": [1, 2.5, None, True, {"deep": ["x"]}], "empty": {}},
            "unicode": 'héllo ✓ 日本語 🚀 \u2028 line\nbreak "quoted" \\ back',
            "big": "x" * 1_000_000,
            "int": 2**53,
            "neg": -7,
        }
        (event,) = make_events("r1", 2, 1)
        event.data = data
        await storage.append_events("r1", [event], expected_last_sequence=1)
        (stored,) = await storage.get_events("r1", after_sequence=1)
        assert stored.data == data
        assert stored == event  # id, type, sequence and timestamp too
        assert_utc(stored.timestamp)
        assert isinstance(stored.type, EventType)

    # -- timers ---------------------------------------------------------------------------

    async def test_list_due_runs(self, storage: StorageBackend) -> None:
        now = at(100)
        await create(storage, "late", status=RunStatus.SUSPENDED, wake_at=at(50))
        await create(storage, "early", status=RunStatus.SUSPENDED, wake_at=at(10))
        await create(storage, "exact", status=RunStatus.SUSPENDED, wake_at=now)
        await create(storage, "future", status=RunStatus.SUSPENDED, wake_at=at(100.000001))
        await create(storage, "no-timer", status=RunStatus.SUSPENDED)
        await create(storage, "running", status=RunStatus.RUNNING, wake_at=at(1))
        await create(storage, "done", status=RunStatus.COMPLETED, wake_at=at(1))
        assert await storage.list_due_runs(now) == ["early", "late", "exact"]
        assert await storage.list_due_runs(now, limit=1) == ["early"]
        assert await storage.list_due_runs(at(0)) == []

    async def test_count_due_runs_per_workflow(self, storage: StorageBackend) -> None:
        now = at(100)
        for i, wake in enumerate((10, 20, 30)):
            await create(
                storage, f"o{i}", status=RunStatus.SUSPENDED, wake_at=at(wake), workflow_name="o"
            )
        await create(storage, "s1", status=RunStatus.SUSPENDED, wake_at=at(5), workflow_name="s")
        await create(storage, "future", status=RunStatus.SUSPENDED, wake_at=at(101))
        await create(storage, "no-timer", status=RunStatus.SUSPENDED, workflow_name="s")
        await create(storage, "running", status=RunStatus.RUNNING, wake_at=at(1))
        assert await storage.count_due_runs(now) == {"o": 3, "s": 1}
        # Only the earliest `limit` due runs are counted (a bounded query on a backlog).
        assert await storage.count_due_runs(now, limit=2) == {"s": 1, "o": 1}
        assert await storage.count_due_runs(at(0)) == {}

    async def test_next_wake_time(self, storage: StorageBackend) -> None:
        assert await storage.next_wake_time() is None
        await create(storage, "running", status=RunStatus.RUNNING, wake_at=at(1))
        await create(storage, "no-timer", status=RunStatus.SUSPENDED)
        assert await storage.next_wake_time() is None
        await create(storage, "b", status=RunStatus.SUSPENDED, wake_at=at(500))
        await create(storage, "a", status=RunStatus.SUSPENDED, wake_at=at(200))
        wake = await storage.next_wake_time()
        assert wake == at(200)
        assert_utc(wake)

    # -- leases ---------------------------------------------------------------------------

    async def test_list_stale_runs(self, storage: StorageBackend) -> None:
        now = at(100)
        await create(storage, "no-lease", status=RunStatus.RUNNING)
        await create(storage, "pending", status=RunStatus.PENDING)
        await create(storage, "expired", lease_owner="w", lease_expires_at=at(99))
        await create(storage, "live", lease_owner="w", lease_expires_at=at(101))
        await create(storage, "at-now", lease_owner="w", lease_expires_at=now)
        await create(storage, "suspended", status=RunStatus.SUSPENDED)
        for i, status in enumerate(
            [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.CONTINUED_AS_NEW]
        ):
            await create(storage, f"terminal-{i}", status=status)
        stale = await storage.list_stale_runs(now)
        assert {r.run_id for r in stale} == {"no-lease", "pending", "expired"}
        assert all(isinstance(r, WorkflowRun) for r in stale)
        assert len(await storage.list_stale_runs(now, limit=2)) == 2

    async def test_acquire_lease_rules(self, storage: StorageBackend) -> None:
        await create(storage, "r1")

        assert await storage.acquire_lease("r1", "w1", at(60), at(0))  # free
        assert await lease_of(storage, "r1") == ("w1", at(60))
        assert await storage.acquire_lease("r1", "w1", at(90), at(10))  # same owner
        assert await lease_of(storage, "r1") == ("w1", at(90))
        assert not await storage.acquire_lease("r1", "w2", at(120), at(20))  # held
        assert not await storage.acquire_lease("r1", "w2", at(120), at(20), steal_from="w9")
        assert await lease_of(storage, "r1") == ("w1", at(90))
        assert await storage.acquire_lease("r1", "w2", at(200), at(91))  # expired
        assert await lease_of(storage, "r1") == ("w2", at(200))
        assert await storage.acquire_lease("r1", "w3", at(300), at(100), steal_from="w2")
        assert await lease_of(storage, "r1") == ("w3", at(300))

        await create(storage, "done", status=RunStatus.COMPLETED)
        assert not await storage.acquire_lease("done", "w1", at(60), at(0))
        assert not await storage.acquire_lease("ghost", "w1", at(60), at(0))
        assert await storage.get_run("ghost") is None

    async def test_concurrent_acquire_has_one_winner(self, storage: StorageBackend) -> None:
        await create(storage, "r1")
        owners = [f"w{i}" for i in range(10)]
        results = await asyncio.gather(
            *(storage.acquire_lease("r1", o, at(60), at(0)) for o in owners)
        )
        assert results.count(True) == 1
        run = await fetch(storage, "r1")
        assert run.lease_owner == owners[results.index(True)]

    async def test_renew_leases_only_for_holder(self, storage: StorageBackend) -> None:
        await create(storage, "mine", lease_owner="w1", lease_expires_at=at(10))
        await create(storage, "theirs", lease_owner="w2", lease_expires_at=at(10))
        await create(storage, "free")
        await storage.renew_leases(["mine", "theirs", "free", "ghost"], "w1", at(99))
        assert await lease_of(storage, "mine") == ("w1", at(99))
        assert await lease_of(storage, "theirs") == ("w2", at(10))
        assert await lease_of(storage, "free") == (None, None)
        await storage.renew_leases([], "w1", at(200))  # nothing to do is fine

    async def test_release_lease_only_by_holder(self, storage: StorageBackend) -> None:
        await create(storage, "r1", lease_owner="w1", lease_expires_at=at(10))
        await storage.release_lease("r1", "w2")
        assert await lease_of(storage, "r1") == ("w1", at(10))
        await storage.release_lease("r1", "w1")
        assert await lease_of(storage, "r1") == (None, None)
        await storage.release_lease("ghost", "w1")  # unknown run: no error
        assert await storage.acquire_lease("r1", "w2", at(60), at(0))

    # -- lifecycle ------------------------------------------------------------------------

    async def test_connect_is_idempotent_and_close_allows_reuse(
        self, storage: StorageBackend
    ) -> None:
        await storage.connect()
        await storage.connect()
        await create(storage, "r1")
        await storage.close()
        await storage.close()
        run = await storage.get_run("r1")  # reconnects on demand
        if "persistent" in storage.capabilities:
            assert run is not None and run.run_id == "r1"

    async def test_data_survives_a_new_instance(
        self, storage: StorageBackend, request: pytest.FixtureRequest
    ) -> None:
        url = storage_url_or_skip(storage, request, "persistent")
        await create(storage, "r1", events=2, idempotency_key="k", tags=["t"])
        await append(storage, "r1", 2, status=RunStatus.SUSPENDED, wake_at=at(30))
        assert await storage.acquire_lease("r1", "w1", at(60), at(0))
        run, events = await storage.get_run("r1"), await storage.get_events("r1")
        await storage.close()

        reopened = storage_from_url(url)
        try:
            assert await reopened.get_run("r1") == run
            assert await reopened.get_events("r1") == events
            by_key = await reopened.get_run_by_idempotency_key("k")
            assert by_key is not None and by_key.run_id == "r1"
            assert await reopened.list_due_runs(at(60)) == ["r1"]
            await reopened.append_events("r1", make_events("r1", 4, 1), expected_last_sequence=3)
        finally:
            await reopened.close()

    async def test_lease_race_between_processes(
        self, storage: StorageBackend, request: pytest.FixtureRequest
    ) -> None:
        url = storage_url_or_skip(storage, request, "cross_process")
        await create(storage, "r1")
        outcomes = await race_in_processes(url, "lease", "r1")
        assert outcomes.count(True) == 1
        run = await fetch(storage, "r1")
        assert run.lease_owner == f"proc-{outcomes.index(True)}"

    async def test_idempotent_create_race_between_processes(
        self, storage: StorageBackend, request: pytest.FixtureRequest
    ) -> None:
        url = storage_url_or_skip(storage, request, "cross_process")
        outcomes = await race_in_processes(url, "create", "shared-key")
        assert outcomes[0] == outcomes[1]
        assert outcomes[0] in ("run-proc-0", "run-proc-1")
        assert [r.run_id for r in await storage.list_runs()] == [outcomes[0]]

    async def test_append_race_between_processes(
        self, storage: StorageBackend, request: pytest.FixtureRequest
    ) -> None:
        url = storage_url_or_skip(storage, request, "cross_process")
        await create(storage, "r1", events=2)
        outcomes = await race_in_processes(url, "append", "r1", expected=2)
        assert outcomes.count(True) == 1
        events = await storage.get_events("r1")
        assert [e.sequence for e in events] == [1, 2, 3]
        assert events[-1].data == {"owner": f"proc-{outcomes.index(True)}"}
        run = await fetch(storage, "r1")
        assert run.last_sequence == 3

    # -- queries added for large stores (cursor paging, parent/time filters, claims) ------

    async def test_list_runs_parent_and_time_range_filters(self, storage: StorageBackend) -> None:
        await storage.create_run(make_run("parent", created_at=at(0)))
        await storage.create_run(make_run("child-1", created_at=at(1), parent_run_id="parent"))
        await storage.create_run(make_run("child-2", created_at=at(2), parent_run_id="parent"))
        await storage.create_run(make_run("other", created_at=at(3), parent_run_id="x"))

        children = await storage.list_runs(parent_run_id="parent")
        assert [r.run_id for r in children] == ["child-2", "child-1"]
        window = await storage.list_runs(created_after=at(1), created_before=at(3))
        assert [r.run_id for r in window] == ["child-2", "child-1"]  # after inclusive

    async def test_get_children_lists_the_runs_a_parent_started(
        self, storage: StorageBackend
    ) -> None:
        await storage.create_run(make_run("parent", created_at=at(0)))
        for i in range(3):
            await storage.create_run(
                make_run(f"child-{i}", created_at=at(i + 1), parent_run_id="parent")
            )
        await storage.create_run(make_run("grandchild", created_at=at(5), parent_run_id="child-0"))
        await storage.create_run(make_run("stranger", created_at=at(6)))

        children = await storage.get_children("parent")
        assert [r.run_id for r in children] == ["child-2", "child-1", "child-0"]
        assert all(r.parent_run_id == "parent" for r in children)
        assert [r.run_id for r in await storage.get_children("child-0")] == ["grandchild"]
        assert await storage.get_children("stranger") == []
        assert await storage.get_children("no-such-run") == []
        first = await storage.get_children("parent", limit=2)
        assert [r.run_id for r in first] == ["child-2", "child-1"]
        rest = await storage.get_children("parent", limit=2, cursor=run_cursor(first[-1]))
        assert [r.run_id for r in rest] == ["child-0"]

    async def test_cursor_paging_is_stable_while_runs_are_added(
        self, storage: StorageBackend
    ) -> None:
        for i in range(7):
            await storage.create_run(make_run(f"run-{i}", created_at=at(i)))
        # Two runs share a timestamp: ties are ordered by run_id, and never lost.
        await storage.create_run(make_run("run-3b", created_at=at(3)))

        first = await storage.list_runs(limit=3)
        assert [r.run_id for r in first] == ["run-6", "run-5", "run-4"]
        await storage.create_run(make_run("newer", created_at=at(100)))  # arrives meanwhile
        second = await storage.list_runs(limit=3, cursor=run_cursor(first[-1]))
        assert [r.run_id for r in second] == ["run-3b", "run-3", "run-2"]
        third = await storage.list_runs(limit=3, cursor=run_cursor(second[-1]))
        assert [r.run_id for r in third] == ["run-1", "run-0"]

    async def test_cursor_combines_with_filters(self, storage: StorageBackend) -> None:
        for i in range(6):
            status = RunStatus.COMPLETED if i % 2 else RunStatus.FAILED
            await storage.create_run(make_run(f"r{i}", created_at=at(i), status=status))
        page = await storage.list_runs(status=RunStatus.COMPLETED, limit=2)
        assert [r.run_id for r in page] == ["r5", "r3"]
        rest = await storage.list_runs(
            status=RunStatus.COMPLETED, limit=2, cursor=run_cursor(page[-1])
        )
        assert [r.run_id for r in rest] == ["r1"]

    async def test_claim_due_runs_leases_each_due_run_once(self, storage: StorageBackend) -> None:
        for i in range(6):
            await storage.create_run(
                make_run(f"due-{i}", status=RunStatus.SUSPENDED, wake_at=at(i))
            )
        await storage.create_run(make_run("later", status=RunStatus.SUSPENDED, wake_at=at(99)))

        claims = await asyncio.gather(
            *(storage.claim_due_runs(at(10), f"claimer-{n}", at(70)) for n in range(4))
        )
        claimed = [run_id for batch in claims for run_id in batch]
        assert sorted(claimed) == [f"due-{i}" for i in range(6)]  # each once, none missing
        assert "later" not in claimed
        for batch in claims:
            assert batch == sorted(batch, key=lambda r: int(r.split("-")[1]))
        # Claimed runs are leased: a second round before expiry gets nothing.
        assert await storage.claim_due_runs(at(11), "late-claimer", at(70)) == []
        # After the leases expire they can be claimed again (the resumer died).
        again = await storage.claim_due_runs(at(80), "rescuer", at(140), limit=2)
        assert again == ["due-0", "due-1"]

    # -- tags, connection loss, concurrent instances --------------------------------------

    async def test_tag_filter_pages_and_combines_with_other_filters(
        self, storage: StorageBackend
    ) -> None:
        for i in range(6):
            tags = ["even", "even"] if i % 2 == 0 else ["odd"]  # a repeated tag counts once
            parent = "p" if i < 4 else None
            await storage.create_run(
                make_run(f"r{i}", created_at=at(i), tags=[*tags, "all"], parent_run_id=parent)
            )

        async def ids(**filters: Any) -> list[str]:
            return [r.run_id for r in await storage.list_runs(**filters)]

        assert (await fetch(storage, "r0")).tags == ["even", "even", "all"]
        page = await storage.list_runs(tag="all", limit=4)
        assert [r.run_id for r in page] == ["r5", "r4", "r3", "r2"]
        assert await ids(tag="all", limit=4, cursor=run_cursor(page[-1])) == ["r1", "r0"]
        assert await ids(tag="all", offset=5) == ["r0"]
        assert await ids(tag="even") == ["r4", "r2", "r0"]
        assert await ids(tag="even", created_after=at(1), created_before=at(4)) == ["r2"]
        assert await ids(tag="even", parent_run_id="p") == ["r2", "r0"]
        assert await ids(tag="odd", status=RunStatus.RUNNING, workflow_name="order") == [
            "r5",
            "r3",
            "r1",
        ]

    async def test_reconnects_after_the_server_drops_connections(
        self, storage: StorageBackend, request: pytest.FixtureRequest
    ) -> None:
        drop = optional_fixture(request, "drop_connections")
        if drop is None:
            pytest.skip("no drop_connections fixture: no server connections to drop")
        await create(storage, "r1")
        await create(storage, "r0", created_at=at(-1))

        await drop()  # each call below is the first on a dropped connection
        assert (await fetch(storage, "r1")).last_sequence == 1
        await drop()
        await append(storage, "r1", 1, status=RunStatus.SUSPENDED, wake_at=at(5))
        await drop()
        await storage.create_run(make_run("r2", idempotency_key="k2", created_at=at(1)))
        await drop()
        assert await storage.claim_due_runs(at(10), "w1", at(60)) == ["r1"]
        await drop()
        assert await storage.acquire_lease("r2", "w1", at(60), at(0))
        await drop()
        await storage.release_lease("r2", "w1")

        # Every write landed exactly once.
        assert [r.run_id for r in await storage.list_runs()] == ["r2", "r1", "r0"]
        assert [e.sequence for e in await storage.get_events("r1")] == [1, 2]
        assert await lease_of(storage, "r1") == ("w1", at(60))
        assert await lease_of(storage, "r2") == (None, None)

    async def test_two_instances_race_to_append(
        self, storage: StorageBackend, request: pytest.FixtureRequest
    ) -> None:
        url = storage_url_or_skip(storage, request, "cross_process")
        other = storage_from_url(url)  # a second instance: its own connections or pool
        try:
            await create(storage, "r1")
            backends = (storage, other)
            for expected in range(1, 11):
                outcomes = await asyncio.gather(
                    *(
                        backend.append_events(
                            "r1",
                            [
                                Event(
                                    run_id="r1",
                                    type=EventType.LOG_INFO,
                                    data={"writer": i},
                                    sequence=expected + 1,
                                    timestamp=at(expected),
                                    event_id=f"r1-{expected + 1}-by-{i}",
                                )
                            ],
                            expected_last_sequence=expected,
                            update=RunUpdate({"error": f"writer {i}"}),
                        )
                        for i, backend in enumerate(backends)
                    ),
                    return_exceptions=True,
                )
                assert outcomes.count(None) == 1, outcomes
                loser = next(o for o in outcomes if o is not None)
                assert isinstance(loser, SequenceConflictError), loser
                winner = outcomes.index(None)
                (stored,) = await other.get_events("r1", after_sequence=expected)
                assert stored.event_id == f"r1-{expected + 1}-by-{winner}"
                run = await fetch(storage, "r1")
                assert (run.last_sequence, run.error) == (expected + 1, f"writer {winner}")
            assert [e.sequence for e in await storage.get_events("r1")] == list(range(1, 12))
        finally:
            await other.close()


__all__ = ["StorageConformance", "make_events", "make_run"]
