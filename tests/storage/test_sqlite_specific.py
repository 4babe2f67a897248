"""SQLite backend behaviour beyond the shared contract: pragmas, schema, event loops."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import fields
from pathlib import Path

import pytest

from pyworkflow.core.exceptions import ConfigurationError, StorageError
from pyworkflow.storage.config import storage_from_url
from pyworkflow.storage.schemas import RunStatus, RunUpdate, WorkflowRun
from pyworkflow.storage.sqlite import MIGRATIONS, RUN_COLUMNS, SQLiteStorageBackend
from pyworkflow.testing.conformance import at, make_events, make_run


@pytest.fixture(autouse=True)
def _only_when_sqlite_selected(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--backend", default=None) not in (None, "sqlite"):
        pytest.skip("--backend selects another storage backend")


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def wal_frames(path: Path) -> int:
    """Frames in the WAL since it last started over (a checkpoint reports them)."""
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


async def pragma(backend: SQLiteStorageBackend, name: str) -> object:
    db = await backend._conn()  # the backend's own connection: pragmas are per connection
    rows = list(await db.execute_fetchall(f"PRAGMA {name}"))
    return rows[0][0]


async def test_wal_mode_and_normal_sync_by_default(tmp_path: Path) -> None:
    backend = SQLiteStorageBackend(tmp_path / "wf.db")
    await backend.connect()
    try:
        assert await pragma(backend, "journal_mode") == "wal"
        assert await pragma(backend, "synchronous") == 1  # NORMAL
        assert await pragma(backend, "busy_timeout") == 10_000
    finally:
        await backend.close()
    assert query(tmp_path / "wf.db", "PRAGMA journal_mode") == [("wal",)]


async def test_synchronous_full_via_url(tmp_path: Path) -> None:
    backend = storage_from_url(f"sqlite:///{tmp_path}/wf.db?synchronous=FULL")
    assert isinstance(backend, SQLiteStorageBackend)
    try:
        assert await pragma(backend, "synchronous") == 2  # FULL
    finally:
        await backend.close()


@pytest.mark.parametrize("value", ["OFF", "fast", ""])
def test_invalid_synchronous_is_rejected(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigurationError, match="synchronous"):
        SQLiteStorageBackend(tmp_path / "wf.db", synchronous=value)
    with pytest.raises(ConfigurationError, match="synchronous"):
        storage_from_url(f"sqlite:///{tmp_path}/wf.db?synchronous={value}")
    assert not (tmp_path / "wf.db").exists()


async def test_parent_directory_is_created_lazily(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "wf.db"
    backend = SQLiteStorageBackend(path)
    assert not path.parent.exists()  # constructing never touches the disk
    try:
        assert await backend.get_run("x") is None
        assert path.exists()
    finally:
        await backend.close()


async def test_schema_version_is_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "wf.db"
    backend = SQLiteStorageBackend(path)
    await backend.connect()
    await backend.close()
    assert len(MIGRATIONS) == 9  # the last: the gates table (flow control)
    assert query(path, "SELECT version FROM schema_version") == [(len(MIGRATIONS),)]
    tables = {r[0] for r in query(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    wanted = {"runs", "events", "schema_version", "schedules", "workers", "signals", "gates"}
    assert wanted <= tables
    indexes = {r[0] for r in query(path, "SELECT name FROM sqlite_master WHERE type='index'")}
    assert {
        "runs_idempotency_key",
        "runs_status_wake_at",
        "runs_workflow_name_created_at",
        "runs_created_at",
        "runs_cancel_status_created_at",
        "workers_last_beat",
    } <= indexes


async def test_reconnect_to_migrated_file_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "wf.db"
    first = SQLiteStorageBackend(path)
    await first.create_run(make_run("r1", last_sequence=1), make_events("r1", 1, 1))
    await first.close()
    for _ in range(2):
        again = SQLiteStorageBackend(path)
        try:
            stored = await again.get_run("r1")
            assert stored is not None and stored.run_id == "r1"
            assert [e.sequence for e in await again.get_events("r1")] == [1]
        finally:
            await again.close()
    assert query(path, "SELECT version FROM schema_version") == [(len(MIGRATIONS),)]


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wf.db"
    backend = SQLiteStorageBackend(path)
    await backend.connect()
    await backend.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = 99")
    newer = SQLiteStorageBackend(path)
    with pytest.raises(StorageError, match="newer"):
        await newer.connect()
    await newer.close()


def test_columns_cover_every_workflow_run_field() -> None:
    # A new WorkflowRun field needs a new migration: this fails until one is written.
    assert set(RUN_COLUMNS) == {f.name for f in fields(WorkflowRun)}


def test_one_backend_across_successive_event_loops(tmp_path: Path) -> None:
    backend = SQLiteStorageBackend(tmp_path / "wf.db")

    async def first_loop() -> None:
        await backend.create_run(make_run("r1", last_sequence=1), make_events("r1", 1, 1))
        # Contended lock use binds an asyncio.Lock to this loop.
        results = await asyncio.gather(
            *(backend.acquire_lease("r1", f"w{i}", at(60), at(0)) for i in range(5))
        )
        assert results.count(True) == 1

    async def second_loop() -> None:
        update = RunUpdate({"status": RunStatus.SUSPENDED, "wake_at": at(5)})
        await asyncio.gather(
            backend.append_events(
                "r1", make_events("r1", 2, 1), expected_last_sequence=1, update=update
            ),
            backend.get_run("r1"),
            backend.list_due_runs(at(10)),
        )
        assert [e.sequence for e in await backend.get_events("r1")] == [1, 2]
        await backend.close()

    asyncio.run(first_loop())
    asyncio.run(second_loop())


async def test_in_memory_database() -> None:
    for url in ("sqlite://", "sqlite:///:memory:"):
        backend = storage_from_url(url)
        assert isinstance(backend, SQLiteStorageBackend)
        assert not backend.capabilities & {"persistent", "cross_process"}
        assert backend.capabilities >= {"schedules", "hooks", "cancellation"}
        await backend.create_run(make_run("r1"))
        assert await backend.get_run("r1") is not None
        await backend.close()


async def test_driver_errors_surface_as_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "wf.db"
    backend = SQLiteStorageBackend(path)
    await backend.connect()
    try:
        # Events with a duplicate sequence break the events primary key.
        events = make_events("r1", 1, 1) + make_events("r1", 1, 1)
        with pytest.raises(StorageError):
            await backend.create_run(make_run("r1", last_sequence=1), events)
        assert await backend.get_run("r1") is None  # the transaction rolled back
    finally:
        await backend.close()


async def test_lock_contention_between_connections_waits(tmp_path: Path) -> None:
    path = tmp_path / "wf.db"
    backend = SQLiteStorageBackend(path)
    await backend.create_run(make_run("r1"))
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the write lock...
        task = asyncio.create_task(backend.acquire_lease("r1", "w1", at(60), at(0)))
        await asyncio.sleep(0.2)
        assert not task.done()  # ...so ours waits (busy_timeout) instead of failing
        other.execute("COMMIT")
        assert await task
    finally:
        other.close()
        await backend.close()


async def test_cancelled_write_leaves_no_open_transaction(tmp_path: Path) -> None:
    """A write runs whole on the driver thread, so cancelling its caller cannot cut it in
    half: it lands completely (or not at all), no transaction stays open, and the next
    write fences on the stored sequence (the engine reconciles cancelled writes this way)."""
    path = tmp_path / "wf.db"
    backend = SQLiteStorageBackend(path)
    await backend.create_run(make_run("r1"))
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        task = asyncio.create_task(
            backend.append_events("r1", make_events("r1", 1, 1), expected_last_sequence=0)
        )
        await asyncio.sleep(0.2)  # our BEGIN IMMEDIATE is now waiting for the lock
        task.cancel()
        await asyncio.sleep(0)
        other.execute("COMMIT")  # the waiting write gets the lock and finishes
        with pytest.raises(asyncio.CancelledError):
            await task
        events = await backend.get_events("r1")
        run = await backend.get_run("r1")
        assert run is not None and [e.sequence for e in events] in ([], [1])
        assert run.last_sequence == len(events)  # events and projection moved together
        await backend.append_events(
            "r1",
            make_events("r1", run.last_sequence + 1, 1),
            expected_last_sequence=run.last_sequence,
        )
        other.execute("BEGIN IMMEDIATE")  # and no lock is left behind
        other.execute("COMMIT")
    finally:
        other.close()
        await backend.close()


async def test_failed_event_insert_rolls_back_the_run_update(tmp_path: Path) -> None:
    backend = SQLiteStorageBackend(tmp_path / "wf.db")
    try:
        await backend.create_run(make_run("r1", last_sequence=1), make_events("r1", 1, 1))
        before = await backend.get_run("r1")
        duplicate = make_events("r1", 2, 1) + make_events("r1", 2, 1)
        with pytest.raises(StorageError):
            await backend.append_events(
                "r1",
                duplicate,
                expected_last_sequence=1,
                update=RunUpdate({"status": RunStatus.FAILED}),
            )
        assert await backend.get_run("r1") == before
        assert [e.sequence for e in await backend.get_events("r1")] == [1]
    finally:
        await backend.close()


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_concurrent_appends_share_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synchronous: str
) -> None:
    """Group commit: 40 runs appending at once are committed in far fewer transactions
    (in strict mode, fewer fsyncs), each append still fenced on its own: a stale one
    fails alone and leaves the others committed."""
    import pyworkflow.storage.sqlite as sqlite_module

    batches: list[int] = []
    real = sqlite_module._batch_in_thread

    def counting(raw: sqlite3.Connection, fns: list[object]) -> object:
        batches.append(len(fns))
        return real(raw, fns)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_module, "_batch_in_thread", counting)
    backend = SQLiteStorageBackend(tmp_path / "wf.db", synchronous=synchronous)
    for i in range(40):
        await backend.create_run(make_run(f"r{i}", last_sequence=0))
    batches.clear()

    async def append(i: int, expected: int) -> None:
        await backend.append_events(
            f"r{i}", make_events(f"r{i}", 1, 2), expected_last_sequence=expected
        )

    results = await asyncio.gather(
        *(append(i, 0 if i != 7 else 5) for i in range(40)), return_exceptions=True
    )
    assert [type(r).__name__ for r in results if r is not None] == ["SequenceConflictError"]
    assert sum(batches) == 40 and len(batches) < 10
    for i in range(40):
        expected = 0 if i == 7 else 2
        assert (await backend.get_run(f"r{i}")).last_sequence == expected  # type: ignore[union-attr]
    await backend.close()


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_writes_wait_for_another_writer_in_both_modes(
    tmp_path: Path, synchronous: str
) -> None:
    """Writes normally run on the event loop's thread without waiting for locks; when
    another connection holds the write lock they move to the driver thread and wait
    there, while the event loop keeps serving other coroutines."""
    path = tmp_path / "wf.db"
    backend = SQLiteStorageBackend(path, synchronous=synchronous)
    await backend.create_run(make_run("r1"))
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        task = asyncio.create_task(
            backend.append_events("r1", make_events("r1", 1, 2), expected_last_sequence=0)
        )
        ticks = 0
        for _ in range(20):  # the loop is not blocked while the write waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not task.done()
        assert await backend.get_run("r1") is not None  # reads still run (WAL)
        other.execute("COMMIT")
        await task
        assert [e.sequence for e in await backend.get_events("r1")] == [1, 2]
    finally:
        other.close()
        await backend.close()


async def test_wal_starts_over_after_a_background_checkpoint(tmp_path: Path) -> None:
    """Checkpoints run on a background thread. Frames committed while one runs are not
    copied back by it, and SQLite only starts the WAL over once every frame is, so the
    commit after a pass copies the rest; the WAL then starts over instead of growing
    with every commit. Every commit stays readable from another connection."""
    path = tmp_path / "wf.db"
    backend = SQLiteStorageBackend(path)
    checkpointer = backend._checkpointer
    checkpointer.every = 10**9  # no automatic pass: this test triggers one
    await backend.create_run(make_run("r1"))

    async def append(seq: int) -> None:
        await backend.append_events("r1", make_events("r1", seq, 1), expected_last_sequence=seq - 1)

    for seq in range(1, 201):
        await append(seq)
    # A reader's snapshot keeps the pass from copying the frames committed after it,
    # as commits made during a pass on a busy database would.
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM events").fetchall()
    for seq in range(201, 206):
        await append(seq)
    checkpointer.every = 1
    await append(206)  # reaches the threshold: a background pass starts
    for _ in range(500):
        if checkpointer._copied:
            break
        await asyncio.sleep(0.01)
    assert checkpointer._copied
    reader.execute("COMMIT")
    reader.close()
    checkpointer.every = 10**9
    await append(207)  # copies what the pass could not
    await append(208)  # ...so the WAL starts over here
    assert wal_frames(path) < 10  # not every frame since the first commit
    await backend.close()
    assert query(path, "SELECT COUNT(*) FROM events WHERE run_id = 'r1'") == [(208,)]


async def test_background_checkpointer_stops_on_close(tmp_path: Path) -> None:
    backend = SQLiteStorageBackend(tmp_path / "wf.db")
    backend._checkpointer.every = 1
    await backend.create_run(make_run("r1"))
    await backend.append_events("r1", make_events("r1", 1, 1), expected_last_sequence=0)
    thread = backend._checkpointer._thread
    assert thread is not None and thread.is_alive()
    await backend.close()
    assert not thread.is_alive()


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_cancelled_batch_leader_still_commits_the_others(
    tmp_path: Path, synchronous: str
) -> None:
    """The first write of a group-commit batch commits the whole batch one loop
    iteration later. Cancelling that caller meanwhile must not strand the writes that
    joined its batch: they still commit and their callers get answers."""
    backend = SQLiteStorageBackend(tmp_path / "wf.db", synchronous=synchronous)
    for i in range(5):
        await backend.create_run(make_run(f"r{i}", last_sequence=0))

    async def append(i: int) -> None:
        await backend.append_events(f"r{i}", make_events(f"r{i}", 1, 1), expected_last_sequence=0)

    tasks = [asyncio.create_task(append(i)) for i in range(5)]
    await asyncio.sleep(0)  # every task has queued its write; the first leads the batch
    tasks[0].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == [None] * 4
    for i in range(1, 5):
        assert (await backend.get_run(f"r{i}")).last_sequence == 1  # type: ignore[union-attr]
    # The cancelled caller's own write either landed whole or not at all.
    first = await backend.get_run("r0")
    assert first is not None and first.last_sequence == len(await backend.get_events("r0"))
    await backend.close()


async def test_in_memory_database_group_commits_on_the_driver_thread() -> None:
    """A private in-memory database lives only in the driver's connection, so batches
    of concurrent writes commit there (each in its own savepoint) instead of inline."""
    backend = SQLiteStorageBackend(":memory:")
    for i in range(20):
        await backend.create_run(make_run(f"r{i}", last_sequence=0))

    async def append(i: int) -> None:
        await backend.append_events(f"r{i}", make_events(f"r{i}", 1, 2), expected_last_sequence=0)

    await asyncio.gather(*(append(i) for i in range(20)))
    for i in range(20):
        assert [e.sequence for e in await backend.get_events(f"r{i}")] == [1, 2]
    await backend.close()
