"""Redis backend behaviour beyond the shared contract: Lua atomicity, key prefixes,
index upkeep, URL parsing, retries and reconnection."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pyworkflow.core.exceptions import (
    ConfigurationError,
    HistoryCorruptedError,
    RunAlreadyExistsError,
    SequenceConflictError,
    StorageError,
)
from pyworkflow.storage.base import run_cursor
from pyworkflow.storage.config import storage_from_url
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.schemas import Event, EventType, GateRecord, RunStatus, RunUpdate
from pyworkflow.testing.conformance import at, make_events, make_run
from pyworkflow.testing.conformance_workers import make_worker
from tests.services import require_service
from tests.storage.backend_redis import delete_prefix, drop_connections, new_prefix, with_prefix

pytest.importorskip("redis", reason="pip install 'pyworkflow-engine[redis]'")

import redis.asyncio as aioredis  # noqa: E402

from pyworkflow.storage.redis import RedisStorageBackend, redact_url  # noqa: E402

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _only_when_redis_selected(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--backend", default=None) not in (None, "redis"):
        pytest.skip("--backend selects another storage backend")


@pytest.fixture
def redis_url() -> str:
    return require_service("redis")


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    name = new_prefix()
    yield name
    await delete_prefix(redis_url, name)


@pytest.fixture
async def backend(redis_url: str, prefix: str) -> AsyncIterator[RedisStorageBackend]:
    b = RedisStorageBackend(redis_url, prefix=prefix)
    yield b
    await b.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def member_of(raw: aioredis.Redis, backend: RedisStorageBackend, run_id: str) -> str:
    member = await raw.hget(backend._key("run", run_id), "_m")
    assert member is not None
    return str(member)


# -- Lua atomicity -------------------------------------------------------------------------


async def test_concurrent_appends_from_two_instances_have_one_winner(
    redis_url: str, prefix: str
) -> None:
    first = RedisStorageBackend(redis_url, prefix=prefix)
    second = RedisStorageBackend(redis_url, prefix=prefix)
    try:
        await first.create_run(make_run("r1", last_sequence=1), make_events("r1", 1, 1))
        for expected in range(1, 6):  # several rounds, each racing at the same sequence

            async def attempt(b: RedisStorageBackend, n: int, expected: int = expected) -> bool:
                event = Event(
                    run_id="r1",
                    type=EventType.LOG_INFO,
                    data={"writer": n},
                    sequence=expected + 1,
                    event_id=f"round{expected}-w{n}",
                )
                try:
                    await b.append_events(
                        "r1",
                        [event],
                        expected_last_sequence=expected,
                        update=RunUpdate({"error": f"w{n}"}),
                    )
                    return True
                except SequenceConflictError:
                    return False

            outcomes = await asyncio.gather(
                *(attempt(first if n % 2 else second, n) for n in range(40))
            )
            assert outcomes.count(True) == 1
            winner = outcomes.index(True)
            events = await second.get_events("r1")
            assert [e.sequence for e in events] == list(range(1, expected + 2))
            assert events[-1].data == {"writer": winner}
            run = await first.get_run("r1")
            assert run is not None
            assert (run.last_sequence, run.error) == (expected + 1, f"w{winner}")
    finally:
        await first.close()
        await second.close()


async def test_concurrent_claims_from_two_instances_never_share_a_run(
    redis_url: str, prefix: str
) -> None:
    first = RedisStorageBackend(redis_url, prefix=prefix)
    second = RedisStorageBackend(redis_url, prefix=prefix)
    try:
        for i in range(150):
            await first.create_run(make_run(f"d{i:03}", status=RunStatus.SUSPENDED, wake_at=at(i)))
        batches = await asyncio.gather(
            *(
                (first if n % 2 else second).claim_due_runs(at(1000), f"c{n}", at(2000), limit=7)
                for n in range(30)
            )
        )
        claimed = [run_id for batch in batches for run_id in batch]
        assert len(claimed) == len(set(claimed)) == 150
        for n, batch in enumerate(batches):
            assert batch == sorted(batch)  # wake order, which is id order here
            for run_id in batch:
                run = await first.get_run(run_id)
                assert run is not None and run.lease_owner == f"c{n}"
    finally:
        await first.close()
        await second.close()


# -- key prefixes -----------------------------------------------------------------------


async def test_prefixes_isolate_runs_in_one_database(redis_url: str) -> None:
    names = [new_prefix(), new_prefix()]
    a, b = (RedisStorageBackend(redis_url, prefix=name) for name in names)
    try:
        for backend, flavour in ((a, "a"), (b, "b")):
            await backend.create_run(
                make_run(
                    "same-id",
                    workflow_name=flavour,
                    idempotency_key="same-key",
                    tags=["t"],
                    status=RunStatus.SUSPENDED,
                    wake_at=at(1),
                )
            )
            await backend.create_run(make_run(f"only-{flavour}", lease_owner="w"))
        for backend, flavour in ((a, "a"), (b, "b")):
            run = await backend.get_run("same-id")
            assert run is not None and run.workflow_name == flavour
            by_key = await backend.get_run_by_idempotency_key("same-key")
            assert by_key is not None and by_key.workflow_name == flavour
            assert {r.run_id for r in await backend.list_runs()} == {"same-id", f"only-{flavour}"}
            assert [r.run_id for r in await backend.list_runs(tag="t")] == ["same-id"]
            assert await backend.list_due_runs(at(10)) == ["same-id"]
            assert [r.run_id for r in await backend.list_stale_runs(at(10))] == [f"only-{flavour}"]
        assert await a.get_run("only-b") is None
        # A lease taken under one prefix does not exist under the other.
        assert await a.claim_due_runs(at(10), "wa", at(100)) == ["same-id"]
        assert await b.claim_due_runs(at(10), "wb", at(100)) == ["same-id"]
        raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            for name in names:
                keys = [k async for k in raw.scan_iter(match=f"{{{name}}}:*")]
                assert keys and all(k.startswith(f"{{{name}}}:") for k in keys)
        finally:
            await raw.aclose()
    finally:
        for backend, name in zip((a, b), names, strict=True):
            await backend.close()
            await delete_prefix(redis_url, name)


# -- index upkeep ------------------------------------------------------------------------


async def test_indexes_follow_status_changes(
    backend: RedisStorageBackend, raw: aioredis.Redis
) -> None:
    k = backend._key
    await backend.create_run(make_run("r1", last_sequence=1), make_events("r1", 1, 1))
    member = await member_of(raw, backend, "r1")

    async def status_sets() -> set[str]:
        found = set()
        for status in RunStatus:
            if await raw.zscore(k("idx", "status", status.value), member) is not None:
                found.add(status.value)
        return found

    async def where() -> tuple[set[str], bool, bool]:
        in_wake = await raw.zscore(k("wake"), "r1") is not None
        in_active = await raw.zscore(k("active"), "r1") is not None
        return await status_sets(), in_wake, in_active

    assert await where() == ({"running"}, False, True)
    assert await backend.acquire_lease("r1", "w1", at(60), at(0))
    expires = await raw.hget(k("run", "r1"), "lease_expires_at")
    assert expires == str((at(60) - EPOCH) // timedelta(microseconds=1))
    assert await raw.zscore(k("active"), "r1") == float(expires)

    await backend.append_events(
        "r1",
        make_events("r1", 2, 1),
        expected_last_sequence=1,
        update=RunUpdate(
            {"status": RunStatus.SUSPENDED, "wake_at": at(300), "lease_owner": None,
             "lease_expires_at": None}
        ),
    )  # fmt: skip
    assert await where() == ({"suspended"}, True, False)
    assert await backend.list_due_runs(at(300)) == ["r1"]
    assert await backend.next_wake_time() == at(300)
    assert [r.run_id for r in await backend.list_runs(status=RunStatus.SUSPENDED)] == ["r1"]
    assert await backend.list_runs(status=RunStatus.RUNNING) == []

    await backend.append_events(
        "r1",
        make_events("r1", 3, 1),
        expected_last_sequence=2,
        update=RunUpdate({"status": RunStatus.RUNNING, "wake_at": None}),
    )
    assert await where() == ({"running"}, False, True)
    assert [r.run_id for r in await backend.list_stale_runs(at(0))] == ["r1"]

    await backend.append_events(
        "r1",
        make_events("r1", 4, 1),
        expected_last_sequence=3,
        update=RunUpdate({"status": RunStatus.COMPLETED, "completed_at": at(400)}),
    )
    assert await where() == ({"completed"}, False, False)
    assert await backend.list_due_runs(at(10_000)) == []
    assert await backend.next_wake_time() is None
    assert await backend.list_stale_runs(at(10_000)) == []
    assert [r.run_id for r in await backend.list_runs(status=RunStatus.COMPLETED)] == ["r1"]
    # Emptied sets are gone, not left behind as empty keys.
    assert not await raw.exists(k("idx", "status", "running"), k("idx", "status", "suspended"))
    assert not await raw.exists(k("wake"), k("active"))


async def test_suspended_at_creation_and_lease_release_keep_indexes(
    backend: RedisStorageBackend, raw: aioredis.Redis
) -> None:
    k = backend._key
    await backend.create_run(make_run("s", status=RunStatus.SUSPENDED, wake_at=at(5)))
    await backend.create_run(make_run("p", status=RunStatus.PENDING))
    assert await raw.zrange(k("wake"), 0, -1) == ["s"]
    assert await raw.zrange(k("active"), 0, -1, withscores=True) == [("p", float("-inf"))]
    assert await backend.acquire_lease("p", "w", at(50), at(0))
    assert [r.run_id for r in await backend.list_stale_runs(at(50))] == []  # expires at 50
    assert [r.run_id for r in await backend.list_stale_runs(at(51))] == ["p"]
    await backend.renew_leases(["p"], "w", at(90))
    assert [r.run_id for r in await backend.list_stale_runs(at(51))] == []
    await backend.release_lease("p", "w")
    assert await raw.zscore(k("active"), "p") == float("-inf")
    assert [r.run_id for r in await backend.list_stale_runs(at(0))] == ["p"]


async def test_multi_filter_queries_match_the_reference_backend(
    backend: RedisStorageBackend,
) -> None:
    rng = random.Random(7)
    memory = InMemoryStorageBackend()
    statuses = [RunStatus.RUNNING, RunStatus.SUSPENDED, RunStatus.COMPLETED, RunStatus.FAILED]
    for i in range(400):
        run = make_run(
            f"run-{rng.randrange(10**6):06}-{i}",
            created_at=at(rng.randrange(60)),  # many ties: ordering falls back to run_id
            status=rng.choice(statuses),
            workflow_name=rng.choice(["order", "refund", "ship"]),
            tags=rng.sample(["a", "b", "c", "ü"], rng.randrange(3)),
            parent_run_id=rng.choice([None, None, "p1", "p2"]),
        )
        await memory.create_run(run.copy())
        await backend.create_run(run)
        if rng.random() < 0.3 and run.status in (RunStatus.RUNNING, RunStatus.SUSPENDED):
            for storage in (memory, backend):
                await storage.request_cancellation(run.run_id, None, at(100))

    filters: list[dict[str, Any]] = [
        {},
        {"status": RunStatus.COMPLETED},
        {"tag": "ü"},
        {"status": RunStatus.RUNNING, "workflow_name": "refund"},
        {"tag": "a", "parent_run_id": "p1"},
        {"status": RunStatus.FAILED, "workflow_name": "ship", "tag": "b", "parent_run_id": "p2"},
        {"workflow_name": "order", "created_after": at(10), "created_before": at(30)},
        {"tag": "c", "status": RunStatus.SUSPENDED, "created_after": at(20)},
        {"tag": "missing", "status": RunStatus.RUNNING},
        {"status": RunStatus.SUSPENDED, "cancel_requested": True},
        {"status": RunStatus.SUSPENDED, "cancel_requested": False},
        {"cancel_requested": True},
        {"cancel_requested": False, "workflow_name": "ship"},
        {"cancel_requested": True, "tag": "a", "created_after": at(15)},
        {"cancel_requested": True, "status": RunStatus.COMPLETED},
    ]
    for query in filters:
        for limit, offset in ((1000, 0), (7, 0), (5, 3), (50, 20)):
            got = await backend.list_runs(limit=limit, offset=offset, **query)
            want = await memory.list_runs(limit=limit, offset=offset, **query)
            assert [r.run_id for r in got] == [r.run_id for r in want], (query, limit, offset)
        # Walk every page with the cursor: the same sequence as one big page.
        pages: list[str] = []
        cursor = None
        while True:
            page = await backend.list_runs(limit=9, cursor=cursor, **query)
            pages += [r.run_id for r in page]
            if len(page) < 9:
                break
            cursor = run_cursor(page[-1])
        assert pages == [r.run_id for r in await memory.list_runs(limit=1000, **query)], query


async def test_cancel_sets_follow_requests_and_status_changes(
    backend: RedisStorageBackend, raw: aioredis.Redis
) -> None:
    k = backend._key
    await backend.create_run(make_run("r1", status=RunStatus.SUSPENDED))
    member = await member_of(raw, backend, "r1")

    async def cancel_sets() -> set[str]:
        keys = [k("idx", "cancel"), *(k("idx", "cancel", s.value) for s in RunStatus)]
        return {key for key in keys if await raw.zscore(key, member) is not None}

    assert await cancel_sets() == set()
    assert await backend.request_cancellation("r1", "stop", at(1))
    assert await cancel_sets() == {k("idx", "cancel"), k("idx", "cancel", "suspended")}
    await backend.append_events(
        "r1", [], expected_last_sequence=0, update=RunUpdate({"status": RunStatus.RUNNING})
    )
    assert await cancel_sets() == {k("idx", "cancel"), k("idx", "cancel", "running")}
    await backend.append_events(
        "r1",
        [],
        expected_last_sequence=0,
        update=RunUpdate({"status": RunStatus.CANCELLED, "cancel_requested_at": None}),
    )
    assert await cancel_sets() == set()
    # Emptied sets are gone, not left behind as empty keys.
    assert not await raw.exists(k("idx", "cancel"), k("idx", "cancel", "running"))


async def test_requests_made_before_the_cancel_index_are_found_after_connect(
    redis_url: str, prefix: str, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyworkflow.storage.redis import runs

    old = RedisStorageBackend(redis_url, prefix=prefix)
    for i in range(12):
        status = RunStatus.SUSPENDED if i % 3 else RunStatus.RUNNING
        await old.create_run(make_run(f"r{i:02}", status=status, created_at=at(i)))
        if i % 2 == 0:
            await old.request_cancellation(f"r{i:02}", None, at(20))
    await old.close()
    # What a release without the index left: the requests, but no sets and no marker.
    await raw.delete(old._key("meta"), *(await raw.keys(old._key("idx", "cancel") + "*")))

    monkeypatch.setattr(runs, "BACKFILL_BATCH", 5)  # several walk steps
    upgraded = RedisStorageBackend(redis_url, prefix=prefix)
    try:
        await upgraded.connect()
        assert await raw.hget(upgraded._key("meta"), "cancel_index") == "1"
        asked = await upgraded.list_runs(status=RunStatus.SUSPENDED, cancel_requested=True)
        assert [r.run_id for r in asked] == ["r10", "r08", "r04", "r02"]
        everyone = await upgraded.list_runs(cancel_requested=True)
        assert [r.run_id for r in everyone] == ["r10", "r08", "r06", "r04", "r02", "r00"]
    finally:
        await upgraded.close()


async def test_cancel_entries_left_stale_by_an_older_writer_are_skipped(
    backend: RedisStorageBackend, raw: aioredis.Redis
) -> None:
    await backend.create_run(make_run("r1", status=RunStatus.SUSPENDED, created_at=at(1)))
    await backend.create_run(make_run("r2", status=RunStatus.SUSPENDED, created_at=at(2)))
    for run_id in ("r1", "r2"):
        await backend.request_cancellation(run_id, None, at(5))
    # A release without the cancel sets woke r2: its hash moved, the cancel sets did not.
    await raw.hset(backend._key("run", "r2"), "status", "running")
    asked = await backend.list_runs(status=RunStatus.SUSPENDED, cancel_requested=True)
    assert [r.run_id for r in asked] == ["r1"]


# -- the worker registry ---------------------------------------------------------------------


async def test_a_beat_keeps_one_hash_and_one_id_entry_per_worker(
    backend: RedisStorageBackend, raw: aioredis.Redis, prefix: str
) -> None:
    await backend.save_worker(make_worker("w1", runs=["r1"]))
    await backend.save_worker(make_worker("w1", runs=[], last_beat=at(7)))
    assert sorted(await raw.keys(f"{{{prefix}}}:*")) == [
        backend._key("widx", "all"),
        backend._key("worker", "w1"),
    ]
    stored = await raw.hgetall(backend._key("worker", "w1"))
    assert set(stored) == {"last_beat", "data"}
    assert int(stored["last_beat"]) == (at(7) - EPOCH) // timedelta(microseconds=1)
    assert await backend.delete_worker("w1") is True
    assert await raw.keys(f"{{{prefix}}}:*") == []


async def test_deleting_runs_leaves_no_key_or_index_entry(
    backend: RedisStorageBackend, raw: aioredis.Redis, prefix: str
) -> None:
    from pyworkflow.testing.conformance_hooks import make_hook

    await backend.connect()  # writes {p}:meta (the cancel-index marker), which stays
    before = set(await raw.keys(f"{{{prefix}}}:*"))
    for run_id, status in (("a", RunStatus.COMPLETED), ("b", RunStatus.CANCELLED)):
        run = make_run(
            run_id,
            status=RunStatus.RUNNING,
            tags=["eu", "vip"],
            idempotency_key=f"key-{run_id}",
            parent_run_id="p",
            cancel_requested_at=at(1),
            last_sequence=2,
        )
        await backend.create_run(run, make_events(run_id, 1, 2))
        await backend.save_hook(make_hook(f"h-{run_id}", run_id=run_id))
        # Terminal runs take no signal: send while it runs, then finish it.
        await backend.send_signal(run_id, "go", "1", signal_id="s", now=at(2))
        assert await raw.exists(backend._key("signals", run_id), backend._key("sigids", run_id))
        await backend.append_events(
            run_id, [], expected_last_sequence=2, update=RunUpdate({"status": status})
        )
    assert await backend.delete_runs(["a", "b"]) == 2
    assert set(await raw.keys(f"{{{prefix}}}:*")) == before


async def test_a_signal_wakes_a_suspended_run_through_the_wake_index(
    backend: RedisStorageBackend, raw: aioredis.Redis
) -> None:
    await backend.create_run(make_run("r1", status=RunStatus.SUSPENDED, wake_at=at(3600)))
    await backend.send_signal("r1", "go", "null", signal_id="s", now=at(10))
    assert await raw.zscore(backend._key("wake"), "r1") == at(10).timestamp() * 1e6
    assert await backend.next_wake_time() == at(10)
    assert await backend.claim_due_runs(at(10), "w", at(70)) == ["r1"]


async def test_a_damaged_worker_record_is_read_as_holding_no_runs(
    backend: RedisStorageBackend, raw: aioredis.Redis
) -> None:
    await backend.save_worker(make_worker("w1", runs=["r1"]))
    await raw.hset(backend._key("worker", "w1"), "data", "\x80\x04not json")
    [stored] = await backend.list_workers()
    assert (stored.worker_id, stored.runs, stored.last_beat) == ("w1", [], at(0))


async def test_workers_list_with_a_decoding_client(redis_url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    backend = RedisStorageBackend(redis_url, prefix=prefix, client=client)
    try:
        await backend.save_worker(make_worker("w\u00e9", runs=["r1"]))
        await backend.save_worker(make_worker("w2"))
        listed = await backend.list_workers()
        assert [(w.worker_id, w.runs) for w in listed] == [("w2", []), ("w\u00e9", ["r1"])]
    finally:
        await client.aclose()


# -- sizes -------------------------------------------------------------------------------


async def test_many_events_in_one_write(backend: RedisStorageBackend) -> None:
    # More values than one Lua unpack() can take: the scripts push in chunks.
    await backend.create_run(make_run("big", last_sequence=2500), make_events("big", 1, 2500))
    await backend.append_events("big", make_events("big", 2501, 3000), expected_last_sequence=2500)
    events = await backend.get_events("big", after_sequence=2490)
    assert [e.sequence for e in events] == list(range(2491, 5501))
    run = await backend.get_run("big")
    assert run is not None and run.last_sequence == 5500


async def test_renew_many_leases(backend: RedisStorageBackend) -> None:
    ids = [f"r{i}" for i in range(1200)]
    for run_id in ids:
        await backend.create_run(make_run(run_id, lease_owner="w", lease_expires_at=at(1)))
    await backend.renew_leases([*ids, "ghost"], "w", at(99))
    assert await backend.list_stale_runs(at(50), limit=5000) == []
    run = await backend.get_run(ids[-1])
    assert run is not None and run.lease_expires_at == at(99)


async def test_inconsistent_sequences_are_rejected(backend: RedisStorageBackend) -> None:
    with pytest.raises(ValueError, match="consecutive"):
        await backend.create_run(make_run("r1", last_sequence=2), make_events("r1", 2, 2))
    with pytest.raises(ValueError, match="last_sequence"):
        await backend.create_run(make_run("r1", last_sequence=5), make_events("r1", 1, 2))
    await backend.create_run(make_run("r1", last_sequence=1), make_events("r1", 1, 1))
    with pytest.raises(ValueError, match="consecutive"):
        await backend.append_events("r1", make_events("r1", 3, 1), expected_last_sequence=1)
    assert len(await backend.get_events("r1")) == 1


# -- damaged event items ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("7", "stored event is a JSON number, not an object"),
        ('{"s": 2, "i": "e2", "t": "step.completed", "d": {}}', "timestamp is missing"),
        ('{"s": 2, "i": "e2", "t": "step.completed", "ts": 1, "d": "{}x"}', "event data is not"),
        ('{"s": 5, "i": "e2", "t": "step.completed", "ts": 1, "d": {}}', "the event stored"),
    ],
)
async def test_damaged_event_items_are_named_by_position(
    backend: RedisStorageBackend, raw: aioredis.Redis, item: str, reason: str
) -> None:
    await backend.create_run(make_run("r1", last_sequence=3), make_events("r1", 1, 3))
    await raw.lset(backend._key("events", "r1"), 1, item)
    for after in (0, 1):
        with pytest.raises(HistoryCorruptedError) as info:
            await backend.get_events("r1", after_sequence=after)
        assert (info.value.sequence, info.value.reason[: len(reason)]) == (2, reason)
    assert [e.sequence for e in await backend.get_events("r1", after_sequence=2)] == [3]


# -- retries: an ambiguous write replayed must not report a false conflict -------------------


async def test_replayed_append_is_recognised_as_already_applied(
    backend: RedisStorageBackend,
) -> None:
    await backend.create_run(make_run("r1", last_sequence=1), make_events("r1", 1, 1))
    events = make_events("r1", 2, 2)
    update = RunUpdate({"status": RunStatus.SUSPENDED, "wake_at": at(9)})
    await backend._append("r1", events, 1, update, "token-1")
    # The same write again, as redis-py's retry would send it after a lost reply.
    await backend._append("r1", events, 1, update, "token-1")
    assert [e.sequence for e in await backend.get_events("r1")] == [1, 2, 3]
    # Another writer with the same stale expectation still conflicts.
    with pytest.raises(SequenceConflictError):
        await backend._append("r1", make_events("r1", 2, 2), 1, None, "token-2")
    # And once somebody appended after it, the old write's replay conflicts too.
    await backend.append_events("r1", make_events("r1", 4, 1), expected_last_sequence=3)
    with pytest.raises(SequenceConflictError):
        await backend._append("r1", events, 1, update, "token-1")


async def test_replayed_create_is_recognised_as_already_applied(
    backend: RedisStorageBackend,
) -> None:
    run = make_run("r1", last_sequence=1)
    await backend._create(run, make_events("r1", 1, 1), "token-1")
    assert await backend._create(run, make_events("r1", 1, 1), "token-1") == run
    with pytest.raises(RunAlreadyExistsError):
        await backend._create(run, make_events("r1", 1, 1), "token-2")
    assert len(await backend.get_events("r1")) == 1


async def test_replayed_gate_save_is_recognised_as_already_applied(
    backend: RedisStorageBackend,
) -> None:
    assert await backend._save_gate(GateRecord("g", '{"n":1}'), None, "token-1")
    # The same insert again, as redis-py's retry would send it after a lost reply.
    assert await backend._save_gate(GateRecord("g", '{"n":1}'), None, "token-1")
    assert not await backend._save_gate(GateRecord("g", '{"n":2}'), None, "token-2")
    assert await backend._save_gate(GateRecord("g", '{"n":3}'), 1, "token-3")
    assert await backend._save_gate(GateRecord("g", '{"n":3}'), 1, "token-3")
    assert not await backend._save_gate(GateRecord("g", '{"n":4}'), 1, "token-4")
    stored = await backend.get_gate("g")
    assert stored is not None and stored.version == 2 and stored.data == '{"n":3}'


# -- flow-control gates ----------------------------------------------------------------------


async def test_a_gate_is_one_hash_under_the_prefix_named_by_its_key(
    backend: RedisStorageBackend, raw: aioredis.Redis, prefix: str
) -> None:
    key = "concurrency:{other}:é"  # braces in a key leave the prefix's hash tag in charge
    assert await backend.save_gate(GateRecord(key, "[1]", updated_at=at(7)), expected_version=None)
    assert await raw.keys(f"{{{prefix}}}:*") == [f"{{{prefix}}}:gate:{key}"]
    stored = await raw.hgetall(backend._key("gate", key))
    assert set(stored) == {"key", "data", "version", "updated_at", "_w"}
    assert (stored["data"], stored["version"]) == ("[1]", "1")
    assert int(stored["updated_at"]) == (at(7) - EPOCH) // timedelta(microseconds=1)


# -- connections -----------------------------------------------------------------------------


async def test_killed_connections_do_not_break_the_next_call(
    backend: RedisStorageBackend,
) -> None:
    await backend.create_run(make_run("r1", last_sequence=1), make_events("r1", 1, 1))
    # Open several pooled connections, then have the server kill them all.
    await asyncio.gather(*(backend.get_run("r1") for _ in range(8)))
    assert await drop_connections(backend) >= 1
    assert (await backend.get_run("r1")) is not None
    await backend.append_events("r1", make_events("r1", 2, 1), expected_last_sequence=1)
    assert await drop_connections(backend) >= 1
    results = await asyncio.gather(*(backend.get_events("r1") for _ in range(8)))
    assert all(len(r) == 2 for r in results)
    assert await backend.acquire_lease("r1", "w", at(60), at(0))


async def test_appends_survive_connections_killed_mid_flight(
    backend: RedisStorageBackend,
) -> None:
    # Killing connections while scripts run makes some replies get lost after Redis
    # applied the write; the retry must then be recognised (write token), not reported
    # as a SequenceConflictError, and nothing may be written twice.
    runs, steps = 10, 100
    for r in range(runs):
        await backend.create_run(make_run(f"r{r}", last_sequence=1), make_events(f"r{r}", 1, 1))
    done = asyncio.Event()

    async def killer() -> None:
        while not done.is_set():
            await drop_connections(backend)
            await asyncio.sleep(0.02)

    async def writer(r: int) -> None:
        for i in range(steps):
            await backend.append_events(
                f"r{r}",
                make_events(f"r{r}", i + 2, 1),
                expected_last_sequence=i + 1,
                update=RunUpdate({"error": f"step {i}"}),
            )

    chaos = asyncio.create_task(killer())
    try:
        await asyncio.gather(*(writer(r) for r in range(runs)))
    finally:
        done.set()
        await chaos
    for r in range(runs):
        events = await backend.get_events(f"r{r}")
        assert [e.sequence for e in events] == list(range(1, steps + 2))
        run = await backend.get_run(f"r{r}")
        assert run is not None and run.last_sequence == steps + 1


async def test_connections_carry_the_backend_name(
    backend: RedisStorageBackend, raw: aioredis.Redis
) -> None:
    await backend.connect()
    names = [c.get("name") for c in await raw.client_list(_type="normal")]
    assert backend.client_name in names


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(port: int, tmp_path: Path, password: str) -> subprocess.Popen[bytes]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server binary not installed")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--requirepass", password, "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("private redis-server did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[tuple[int, str, list[subprocess.Popen[bytes]]]]:
    port, password = _free_port(), "s3cret-pw"
    procs = [_start_server(port, tmp_path, password)]
    yield port, password, procs
    for proc in procs:
        _stop(proc)


async def test_server_down_raises_storage_error_then_recovers(
    private_server: tuple[int, str, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    port, password, procs = private_server
    url = f"redis://:{password}@127.0.0.1:{port}/0?prefix=outage&socket_connect_timeout=1"
    backend = storage_from_url(url)
    assert isinstance(backend, RedisStorageBackend)
    assert password not in repr(backend)
    try:
        await backend.create_run(make_run("r1"))
        _stop(procs[0])
        started = time.monotonic()
        with pytest.raises(StorageError) as info:
            await backend.get_run("r1")
        assert time.monotonic() - started < 30  # bounded retries, no hang
        assert password not in str(info.value)
        # The server comes back (empty: it keeps nothing on disk); the same backend
        # object reconnects without being told.
        procs.append(_start_server(port, tmp_path, password))
        assert await backend.get_run("r1") is None
        await backend.create_run(make_run("r2"))
        assert await backend.get_run("r2") is not None
    finally:
        await backend.close()


async def test_wrong_password_is_a_storage_error_without_the_password(
    private_server: tuple[int, str, list[subprocess.Popen[bytes]]],
) -> None:
    port, _, _ = private_server
    backend = RedisStorageBackend(f"redis://:not-the-one@127.0.0.1:{port}/0")
    try:
        started = time.monotonic()
        with pytest.raises(StorageError) as info:
            await backend.connect()
        assert time.monotonic() - started < 1.0  # bad credentials are not retried
        assert "not-the-one" not in str(info.value)
        assert "***" in str(info.value)
    finally:
        await backend.close()


async def test_caller_supplied_client_is_used_and_left_open(redis_url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    backend = RedisStorageBackend(prefix=prefix, client=client)
    try:
        await backend.create_run(
            make_run("r1", last_sequence=1, tags=["x"]), make_events("r1", 1, 1)
        )
        run = await backend.get_run("r1")
        assert run is not None and run.tags == ["x"]
        assert [r.run_id for r in await backend.list_runs(tag="x")] == ["r1"]
        assert len(await backend.get_events("r1")) == 1
        await backend.close()
        assert await client.ping()  # still open: the caller owns it
    finally:
        await client.aclose()


def test_backend_survives_successive_event_loops(redis_url: str) -> None:
    name = new_prefix()
    backend = RedisStorageBackend(redis_url, prefix=name)

    async def first() -> None:
        await backend.create_run(make_run("r1"))
        await backend.close()

    async def second() -> None:
        try:
            assert await backend.get_run("r1") is not None
        finally:
            await backend.close()
            await delete_prefix(redis_url, name)

    asyncio.run(first())
    asyncio.run(second())


# -- URLs --------------------------------------------------------------------------------


def test_from_url_reads_prefix_db_and_options() -> None:
    backend = RedisStorageBackend.from_url(
        "redis://cache.internal:6380/3?prefix=billing&socket_timeout=2.5"
    )
    assert backend.prefix == "billing"
    assert backend._key("run", "x") == "{billing}:run:x"
    client, _ = _client_outside_loop(backend)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.internal", 6380, 3)
    assert kwargs["socket_timeout"] == 2.5
    assert kwargs["client_name"] == backend.client_name


def test_from_url_defaults_and_tls() -> None:
    plain = RedisStorageBackend.from_url("redis://localhost")
    assert plain.prefix == "pyworkflow"
    tls = RedisStorageBackend.from_url("rediss://user:pw@redis.example.com:6390/1?prefix=p")
    client, _ = _client_outside_loop(tls)
    pool = client.connection_pool
    assert pool.connection_class.__name__ == "SSLConnection"
    assert pool.connection_kwargs["username"] == "user"
    assert pool.connection_kwargs["password"] == "pw"


def test_storage_from_url_builds_the_redis_backend() -> None:
    backend = storage_from_url("redis://127.0.0.1:6379/0?prefix=via-config")
    assert isinstance(backend, RedisStorageBackend)
    assert backend.prefix == "via-config"


def _client_outside_loop(backend: RedisStorageBackend) -> tuple[Any, Any]:
    async def get() -> tuple[Any, Any]:
        return backend._client()

    return asyncio.run(get())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://localhost:6379", "scheme"),
        ("redis://localhost:notaport", "invalid Redis URL"),
        ("redis://localhost/notadb", "invalid Redis URL"),
        ("redis://localhost?colour=blue", "colour"),
        ("redis://localhost?prefix=", "non-empty"),
        ("redis://localhost?prefix={x}", "braces"),
        ("redis://localhost?socket_timeout=soon", "invalid Redis URL"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisStorageBackend.from_url(url)


def test_passwords_never_appear_in_errors_or_repr() -> None:
    url = "redis://admin:hunter2@db.internal:6379/0?prefix=p"
    backend = RedisStorageBackend.from_url(url)
    assert "hunter2" not in repr(backend) and "hunter2" not in backend.url
    assert "admin:***@db.internal" in backend.url
    with pytest.raises(ConfigurationError) as info:
        RedisStorageBackend.from_url("redis://admin:hunter2@db.internal:6379/0?bogus=1")
    assert "hunter2" not in str(info.value)
    assert redact_url("redis://:hunter2@h/0") == "redis://:***@h/0"
    assert redact_url("redis://h/0") == "redis://h/0"


@pytest.mark.parametrize(
    "url",
    [
        # An unencoded '/', '?', '#' or '@' in the password ends the host part early:
        # urlsplit then reads pieces of the password as port, db, options or fragment.
        "redis://:hunter/2two@db.internal:6379/0",
        "redis://admin:hunter?2two@db.internal/0",
        "redis://:hunter#2two@db.internal:6379/0",
        "redis://:1234#2two@db.internal",
        "redis://:1234?client_name=2two@db.internal",
        "redis://admin:hunter@2two/x@db.internal/0",
        "rediss://admin:hunter/2two@db.internal/0",
        "unix://:hunter/2two@/run/redis.sock",
    ],
)
def test_passwords_with_unencoded_delimiters_never_appear(url: str) -> None:
    with pytest.raises(ConfigurationError, match="percent-encode") as info:
        RedisStorageBackend.from_url(url)
    message = str(info.value)
    assert "2two" not in message and "hunter" not in message and "1234" not in message
    assert "***@" in message
    redacted = redact_url(url)
    assert "2two" not in redacted and "hunter" not in redacted and "1234" not in redacted


def test_password_query_option_is_masked() -> None:
    for url in ("redis://h/0?password=hunter2", "redis://h/0?db=1&Pass%77ord=hunter2"):
        with pytest.raises(ConfigurationError) as info:
            RedisStorageBackend.from_url(url)
        assert "hunter2" not in str(info.value) and "=***" in str(info.value)
    assert redact_url("redis://u:pw@h/0?password=x&db=1") == "redis://u:***@h/0?password=***&db=1"


def test_at_sign_in_a_unix_socket_path_is_kept() -> None:
    backend = RedisStorageBackend.from_url("unix:///run/app@1/redis.sock?db=2&prefix=p")
    assert backend.prefix == "p" and "/run/app@1/redis.sock?db=2" in backend.url


def test_prefix_keyword_and_url_prefix_must_agree() -> None:
    assert RedisStorageBackend("redis://h?prefix=a", prefix="a").prefix == "a"
    assert RedisStorageBackend("redis://h", prefix="b").prefix == "b"
    with pytest.raises(ConfigurationError, match="twice"):
        RedisStorageBackend("redis://h?prefix=a", prefix="b")


def test_test_helper_url_round_trips(redis_url: str) -> None:
    url = with_prefix(redis_url, "abc")
    backend = storage_from_url(url)
    assert isinstance(backend, RedisStorageBackend) and backend.prefix == "abc"
