"""The execution API: start runs, resume them, read their state.

``start`` is awaitable in async code and may also be called from plain synchronous code
(as the seed README does): it then runs on a private event loop and, with the local
runtime, returns once the run has completed or suspended.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from pyworkflow.core.config import get_config, get_storage, resolve_storage
from pyworkflow.core.exceptions import WorkflowNotFoundError
from pyworkflow.core.workflow import definition_of
from pyworkflow.engine.runs import RunRequest
from pyworkflow.runtime import get_runtime
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import Event, WorkflowRun

T = TypeVar("T")

_sync_loop = threading.local()


def _private_loop() -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop | None = getattr(_sync_loop, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _sync_loop.loop = loop
    return loop


def run_sync(coro: Coroutine[Any, Any, T], *, runtime_name: str = "local") -> T:
    """Run ``coro`` to completion on this thread's private loop, then stop the runtime's
    background services on it (nothing keeps running once the caller has its answer)."""
    loop = _private_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(get_runtime(runtime_name).shutdown())


def _in_async_context() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def start(
    workflow: Any,
    *args: Any,
    runtime: str | None = None,
    durable: bool | None = None,
    storage: StorageBackend | str | None = None,
    idempotency_key: str | None = None,
    run_id: str | None = None,
    tags: list[str] | None = None,
    **kwargs: Any,
) -> Any:
    """Start a run of ``workflow`` (a ``@workflow`` function or its registered name).

    Returns the run id: ``await start(...)`` in async code; a plain ``start(...)`` call
    in synchronous code returns the id directly (the return annotation is ``Any``
    because of that dual use; in async code the value is an awaitable of ``str``).

    Args:
        runtime: ``"local"`` (default from config) or another registered runtime.
        durable: ``False`` runs without an event log; default from the workflow, then config.
        storage: backend or URL for this run (default: the configured storage).
        idempotency_key: a second start with the same key returns the first run's id.
        run_id: explicit id (must be unused, else ``RunAlreadyExistsError``).
        tags: up to 3 strings (default: the workflow's tags).

    Raises:
        WorkflowNotFoundError: ``workflow`` is an unknown name.
        SerializationError: an argument cannot be stored (nothing is written).
    """
    coro = _start(workflow, args, kwargs, runtime, durable, storage, idempotency_key, run_id, tags)
    if _in_async_context():
        return coro
    return run_sync(coro, runtime_name=runtime or get_config().default_runtime)


async def _start(
    workflow: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    runtime: str | None,
    durable: bool | None,
    storage: StorageBackend | str | None,
    idempotency_key: str | None,
    run_id: str | None,
    tags: list[str] | None,
) -> str:
    from pyworkflow.core.workflow import _validate_tags

    definition = definition_of(workflow)
    cfg = get_config()
    request = RunRequest(
        definition=definition,
        args=args,
        kwargs=kwargs,
        run_id=run_id,
        idempotency_key=idempotency_key,
        tags=list(_validate_tags(tags, f"start({definition.name!r})"))
        if tags is not None
        else None,
    )
    chosen = get_runtime(runtime or cfg.default_runtime)
    is_durable = durable if durable is not None else definition.durable
    if is_durable is None:
        is_durable = cfg.default_durable
    if not is_durable:
        return await chosen.start_transient(request)
    return await chosen.start(request, _storage(storage))


def _storage(storage: StorageBackend | str | None) -> StorageBackend:
    return get_storage() if storage is None else resolve_storage(storage)


async def resume(
    run_id: str, *, storage: StorageBackend | str | None = None, runtime: str | None = None
) -> None:
    """Continue a stored run now (replaying its history).

    A terminal run is left alone; a sleep whose time has not come stays asleep.

    Raises:
        WorkflowNotFoundError: no such run, or its workflow is not registered here.
        WorkflowAlreadyRunningError: another process holds the run's lease.
    """
    backend = _storage(storage)
    await backend.connect()
    if await backend.get_run(run_id) is None:
        raise WorkflowNotFoundError(f"no run with id {run_id!r}")
    await get_runtime(runtime or get_config().default_runtime).resume(run_id, backend)


async def get_workflow_run(
    run_id: str, *, storage: StorageBackend | str | None = None
) -> WorkflowRun | None:
    """The stored run (or a transient run this process executed), or ``None``."""
    transient = get_runtime("local").get_transient_run(run_id)
    if transient is not None:
        return transient
    backend = _storage(storage)
    await backend.connect()
    return await backend.get_run(run_id)


async def get_workflow_run_by_idempotency_key(
    key: str, *, storage: StorageBackend | str | None = None
) -> WorkflowRun | None:
    """The run started with idempotency key ``key``, or ``None``."""
    backend = _storage(storage)
    await backend.connect()
    return await backend.get_run_by_idempotency_key(key)


async def get_workflow_events(
    run_id: str, *, storage: StorageBackend | str | None = None
) -> list[Event]:
    """The run's event log in sequence order (empty for unknown or transient runs)."""
    backend = _storage(storage)
    await backend.connect()
    return await backend.get_events(run_id)


async def get_workflow_chain(
    run_id: str, *, storage: StorageBackend | str | None = None
) -> list[WorkflowRun]:
    """Every run of the ``continue_as_new`` chain ``run_id`` belongs to, oldest first.

    Raises:
        WorkflowNotFoundError: no such run.
    """
    backend = _storage(storage)
    await backend.connect()
    run = await backend.get_run(run_id)
    if run is None:
        raise WorkflowNotFoundError(f"no run with id {run_id!r}")
    chain = [run]
    while chain[0].continued_from_run_id:
        previous = await backend.get_run(chain[0].continued_from_run_id)
        if previous is None:
            break
        chain.insert(0, previous)
    while chain[-1].continued_to_run_id:
        following = await backend.get_run(chain[-1].continued_to_run_id)
        if following is None:
            break
        chain.append(following)
    return chain


async def wait_for_run(
    run_id: str,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - part of the public API
    poll_interval: float = 0.05,
    storage: StorageBackend | str | None = None,
) -> WorkflowRun:
    """Wait until the run is terminal (the local runtime keeps resuming it meanwhile).

    Raises:
        WorkflowNotFoundError: no such run.
        TimeoutError: ``timeout`` seconds passed first.
    """

    backend = _storage(storage)
    await backend.connect()
    if get_config().default_runtime == "local":
        get_runtime("local").service(backend)  # type: ignore[attr-defined]  # timers on

    async def poll() -> WorkflowRun:
        while True:
            run = await get_workflow_run(run_id, storage=backend)
            if run is None:
                raise WorkflowNotFoundError(f"no run with id {run_id!r}")
            if run.status.is_terminal:
                return run
            await asyncio.sleep(poll_interval)

    async with asyncio.timeout(timeout):
        return await poll()
