"""One workflow, three built-in storage backends: ``memory://``, ``file:///<dir>`` and
``sqlite:///<dir>/x.db``.

Storage is chosen per call with ``start(..., storage=...)``, which takes a backend
object or a URL. ``pyworkflow.storage.storage_from_url(url)`` builds the backend a URL
names; the classes can also be built directly (``FileStorageBackend(base_path)``,
``SQLiteStorageBackend(db_path)``, ``InMemoryStorageBackend()``).

Each run includes a short durable sleep, so the local runtime suspends and wakes it on
whichever backend it lives in. For the persistent backends (file, SQLite) the script
then opens a *fresh* backend object on the same location and reads the run back; the
in-memory backend keeps runs only inside the object that holds them, so that one must
be passed around (a second ``memory://`` URL is a new, empty store).

This example is about backends, so it ignores ``$PYWORKFLOW_EXAMPLE_DB`` and works in a
temporary directory.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from pyworkflow import (
    EventType,
    get_runtime,
    get_workflow_events,
    get_workflow_run,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.storage import (
    FileStorageBackend,
    InMemoryStorageBackend,
    SQLiteStorageBackend,
    StorageBackend,
    storage_from_url,
)


@step()
async def add(a: int, b: int) -> int:
    return a + b


@workflow(name="ex07_add_then_double")
async def add_then_double(a: int, b: int) -> int:
    total = await add(a, b)
    await sleep("0.2s")
    return total * 2


def list_dir(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


async def run_on(label: str, backend: StorageBackend) -> str:
    run_id = await start(add_then_double, 2, 3, storage=backend)
    suspended = await get_workflow_run(run_id, storage=backend)
    assert suspended is not None and suspended.status == "suspended"
    run = await wait_for_run(run_id, timeout=30, storage=backend)
    events = await get_workflow_events(run_id, storage=backend)
    print(
        f"{label:<8} {type(backend).__name__:<24} {run_id}: status={run.status.value} "
        f"result={run.result} events={len(events)}"
    )
    assert run.status == "completed" and run.result == 10
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[-1].type == EventType.WORKFLOW_COMPLETED
    return run_id


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file_url = f"file://{Path(tmp, 'files').as_posix()}"  # file:///tmp/...
        sqlite_url = f"sqlite:///{Path(tmp, 'x.db').as_posix()}"  # sqlite:////tmp/...
        print(f"URLs: memory://  {file_url}  {sqlite_url}\n")

        memory = storage_from_url("memory://")
        files = storage_from_url(file_url)
        sqlite = storage_from_url(sqlite_url)
        assert isinstance(memory, InMemoryStorageBackend)
        assert isinstance(files, FileStorageBackend)
        assert isinstance(sqlite, SQLiteStorageBackend)

        await run_on("memory", memory)
        file_run = await run_on("file", files)
        sqlite_run = await run_on("sqlite", sqlite)

        # A URL string works too (for the persistent backends: each use of the URL
        # reaches the same data).
        url_run = await start(add_then_double, 20, 1, storage=sqlite_url)
        run = await wait_for_run(url_run, timeout=30, storage=sqlite_url)
        print(f"start(..., storage={sqlite_url!r}) -> {url_run}: result={run.result}")
        assert run.result == 42

        # Fresh objects built from the classes see what was stored before.
        again_files = FileStorageBackend(Path(tmp, "files"))
        again_sqlite = SQLiteStorageBackend(Path(tmp, "x.db"))
        for label, backend, run_id in (
            ("file", again_files, file_run),
            ("sqlite", again_sqlite, sqlite_run),
        ):
            stored = await get_workflow_run(run_id, storage=backend)
            events = await get_workflow_events(run_id, storage=backend)
            assert stored is not None and stored.result == 10 and events
            print(f"re-opened {label}: {run_id} is {stored.status.value}, {len(events)} events")
        print(f"file backend layout: {list_dir(Path(tmp, 'files'))}")

        # A different memory:// backend is a different (empty) store.
        assert await get_workflow_run(file_run, storage="memory://") is None

        # Stop this loop's timers before the temporary directory goes away.
        await get_runtime("local").shutdown()
        for backend in (memory, files, sqlite, again_files, again_sqlite):
            await backend.close()

    print("\nOK: the same workflow ran to completion on memory, file and SQLite storage")


if __name__ == "__main__":
    asyncio.run(main())
