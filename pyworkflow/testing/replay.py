"""Replaying histories in tests and deploy checks (the API behind ``pyworkflow verify``).

* :func:`verify_histories`: replay stored runs (all unfinished ones by default) against
  the code imported now; nothing runs, nothing is written.
* :func:`replay_history` / :func:`assert_replays`: replay exported history files
  (``pyworkflow runs export RUN_ID > tests/histories/order.json``), so a test suite keeps
  golden histories of its own workflows and fails when a change would break them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from pyworkflow.core.config import get_storage, resolve_storage
from pyworkflow.engine.history_file import load_history
from pyworkflow.engine.verify import (
    UNFINISHED,
    RunVerdict,
    VerifyReport,
    replay_run,
    runs_to_verify,
    verify_runs,
)
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import RunStatus

T = TypeVar("T")


async def verify_histories(
    storage: StorageBackend | str | None = None,
    *,
    statuses: Iterable[RunStatus | str] = UNFINISHED,
    workflow: str | None = None,
    since: datetime | None = None,
    sample: int | None = None,
    run_ids: Sequence[str] = (),
    strict: bool = False,
) -> VerifyReport:
    """Replay stored runs against the workflow code registered in this process.

    Args:
        storage: a backend, a storage URL, or ``None`` for the configured storage.
        statuses: which runs (default: pending, running, suspended: the ones a deploy
            can still break).
        workflow: only runs of this workflow.
        since: only runs created at or after this time.
        sample: at most this many runs, picked at random.
        run_ids: exactly these runs (the other filters are ignored).
        strict: also report a recorded sleep whose duration the code changed.

    Raises:
        LookupError: one of ``run_ids`` is not stored.
    """
    configured = get_storage() if storage is None else resolve_storage(storage)
    backend = configured.read_only()  # nothing is written (SQLite: not even a checkpoint)
    await backend.connect()
    try:
        runs = await runs_to_verify(
            backend,
            statuses=[RunStatus(s) for s in statuses],
            workflow=workflow,
            since=since,
            run_ids=run_ids,
            sample=sample,
        )
        return await verify_runs(backend, runs, strict=strict)
    finally:
        if backend is not configured:
            await backend.close()


async def replay_history(
    source: str | Path | dict[str, Any], *, strict: bool = False
) -> RunVerdict:
    """Replay one exported history file (a path, its JSON text or the parsed document)
    against the code imported now.

    Raises:
        SerializationError: ``source`` is not a pyworkflow history file.
    """
    run, events = load_history(source)
    return await replay_run(run, events, strict=strict)


def assert_replays(*sources: str | Path, strict: bool = False) -> None:
    """Fail (``AssertionError``) unless every history file replays against the code
    imported now; the message names each file and its first divergence. Callable from
    synchronous and ``async`` tests alike."""

    async def replay_all() -> list[tuple[str | Path, RunVerdict]]:
        return [(source, await replay_history(source, strict=strict)) for source in sources]

    failures = [
        f"{source}: run {verdict.run_id} ({verdict.workflow_name}): {verdict.problem}"
        for source, verdict in _run(replay_all())
        if not verdict.ok
    ]
    assert not failures, "histories that no longer replay:\n" + "\n".join(failures)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called from a running loop (an async test): replay on a loop of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
