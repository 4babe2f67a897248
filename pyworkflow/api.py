"""The execution API: start runs, resume them, read their state.

``start`` is awaitable in async code and may also be called from plain synchronous code
(as the seed README does): it then runs on a private event loop and, with the local
runtime, returns once the run has completed or suspended.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from pyworkflow.core.config import discover_workflows, get_config, get_storage, resolve_storage
from pyworkflow.core.exceptions import (
    ConfigurationError,
    HookAlreadyReceivedError,
    HookExpiredError,
    HookNotFoundError,
    HookPayloadError,
    InvalidTokenError,
    RunNotFoundError,
    SerializationError,
    WorkflowNotFoundError,
)
from pyworkflow.core.queues import validate_queue
from pyworkflow.core.registry import get_workflow, require_workflow
from pyworkflow.core.workflow import MAX_TAGS, WorkflowDefinition, definition_of
from pyworkflow.engine.context import deliver_cancel, hash_token
from pyworkflow.engine.runs import RunRequest
from pyworkflow.primitives.hook_tokens import derive_token
from pyworkflow.primitives.hooks import hook_model, schema_violations
from pyworkflow.primitives.signals import check_signal_name
from pyworkflow.runtime import Runtime, get_runtime
from pyworkflow.signals import encode_signal_payload, send_signal
from pyworkflow.storage import retention
from pyworkflow.storage.base import (
    CANCELLATION,
    FLOW_CONTROL,
    HOOKS,
    RETENTION,
    StorageBackend,
    require_capability,
)
from pyworkflow.storage.payloads import check_size, refuse_non_finite
from pyworkflow.storage.retention import PurgeResult as PurgeResult
from pyworkflow.storage.schemas import (
    Event,
    HookRecord,
    HookStatus,
    RunStatus,
    WorkflowRun,
    utcnow,
)
from pyworkflow.utils.clock import timer_now
from pyworkflow.utils.duration import DurationLike, duration_seconds, parse_duration

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
    signal: tuple[str, Any] | None = None,
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
        signal: ``(name, payload)``: signal-with-start. The run is stored with the signal
            already received (one write: no run without it); if ``idempotency_key``
            finds an existing run, the signal is sent to that run instead.

    Raises:
        WorkflowNotFoundError: ``workflow`` is an unknown name.
        SerializationError: an argument or the signal's payload cannot be stored
            (nothing is written).
    """
    coro = _start(
        workflow,
        args,
        kwargs,
        runtime,
        durable,
        storage,
        idempotency_key,
        run_id,
        tags,
        signal=signal,
    )
    return _awaitable_or_done(coro, runtime)


def _awaitable_or_done(coro: Coroutine[Any, Any, str], runtime: str | None) -> Any:
    """``coro`` itself in async code; its result, run on a private loop, otherwise."""
    if _in_async_context():
        return coro
    return run_sync(coro, runtime_name=runtime or get_config().default_runtime)


def start_by_name(
    workflow_name: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    runtime: str | None = None,
    durable: bool | None = None,
    storage: StorageBackend | str | None = None,
    idempotency_key: str | None = None,
    run_id: str | None = None,
    tags: list[str] | None = None,
    detached: bool = False,
    queue: str | None = None,
    signal: tuple[str, Any] | None = None,
) -> Any:
    """Start a run of the workflow called ``workflow_name``; returns its id (awaitable in
    async code, the id itself in synchronous code, like :func:`start`).

    The workflow's own arguments go only through ``args`` and ``kwargs``, so a workflow
    parameter called ``storage`` or ``runtime`` cannot clash with an option (the command
    line and admin tools start runs this way).

    Under the local runtime the workflow must be registered here (imported, or found in
    the configured ``modules``). Under a runtime that executes elsewhere (``celery``) a
    name this process does not know is enqueued as it is: the workers import the code.
    The run then gets the configured defaults for what the decorator would have set
    (``durable``, ``max_duration``, ``tags``, ``max_recovery_attempts``,
    ``recover_on_worker_loss``), since only the code knows them; import the module
    (``--module``) to start with the workflow's own options.

    ``queue`` routes this run's workflow messages to that broker queue under the Celery
    runtime (default: the decorator's ``queue``, else ``pyworkflow.workflows``); a
    process without the workflow's code must pass it for a workflow declared with one.
    (:func:`start` has no such option: its keyword arguments are the workflow's.)

    ``signal=(name, payload)`` starts the run with that signal received, as :func:`start`.

    ``detached=True`` returns as soon as the run is stored; under the local runtime it
    then executes in the background on the caller's event loop (a server answering a
    request must not wait for the workflow's first suspension).

    Raises:
        WorkflowNotFoundError: local runtime and no workflow of that name is registered.
        SerializationError: an argument cannot be stored (nothing is written).
        ValueError: ``queue`` is not a valid queue name (the message names it).
    """
    if not isinstance(workflow_name, str) or not workflow_name:
        raise TypeError("start_by_name() needs the workflow's name as a non-empty string")
    validate_queue(queue, f"start_by_name({workflow_name!r})")
    coro = _start(
        _ByName(workflow_name),
        tuple(args),
        dict(kwargs or {}),
        runtime,
        durable,
        storage,
        idempotency_key,
        run_id,
        tags,
        detached,
        queue,
        signal=signal,
    )
    return _awaitable_or_done(coro, runtime)


@dataclass(frozen=True, slots=True)
class _ByName:
    """A workflow named by ``start_by_name`` (resolved once the runtime is known)."""

    name: str


def _by_name(name: str, runtime: str) -> WorkflowDefinition:
    try:
        return require_workflow(name)
    except (WorkflowNotFoundError, ConfigurationError):
        if runtime == "local":
            raise  # the code runs here: without it there is nothing to run
        return WorkflowDefinition(name=name, func=_code_elsewhere)


async def _code_elsewhere(*args: Any, **kwargs: Any) -> Any:  # noqa: ARG001
    # Stands in for a workflow whose code only the workers have; never called here.
    raise WorkflowNotFoundError("this workflow's code is not imported in this process")


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
    detached: bool = False,
    queue: str | None = None,
    *,
    signal: tuple[str, Any] | None = None,
) -> str:
    from pyworkflow.core.workflow import _validate_tags

    cfg = get_config()
    if isinstance(workflow, _ByName):
        definition = _by_name(workflow.name, runtime or cfg.default_runtime)
    else:
        definition = definition_of(workflow)
    request = RunRequest(
        definition=definition,
        args=args,
        kwargs=kwargs,
        run_id=run_id,
        idempotency_key=idempotency_key,
        tags=list(_validate_tags(tags, f"start({definition.name!r})"))
        if tags is not None
        else None,
        queue=queue,
    )
    chosen = get_runtime(runtime or cfg.default_runtime)
    is_durable = durable if durable is not None else definition.durable
    if is_durable is None:
        is_durable = cfg.default_durable
    if not is_durable:
        if signal is not None:
            raise ValueError(f"start({definition.name!r}, signal=...): signals need a durable run")
        return await chosen.start_transient(request)  # (flow control needs storage: none)
    backend = _storage(storage)
    if definition.concurrency_limit is not None or definition.rate is not None:
        require_capability(backend, FLOW_CONTROL)  # before anything is stored
    if signal is not None:
        return await _start_with_signal(request, signal, chosen, backend, detached)
    if detached:
        return await chosen.start_detached(request, backend)
    return await chosen.start(request, backend)


async def _start_with_signal(
    request: RunRequest,
    signal: tuple[str, Any],
    chosen: Runtime,
    backend: StorageBackend,
    detached: bool,
) -> str:
    """Signal-with-start: the run is created with the signal in its ``workflow.started``;
    a run its idempotency key already names gets the signal sent instead."""
    if not isinstance(signal, tuple) or len(signal) != 2:
        raise TypeError("signal= takes a (name, payload) tuple")
    name, payload = signal
    check_signal_name(name)
    text = encode_signal_payload(name, payload, backend.payload_limit)
    run_id = request.run_id or f"run_{uuid.uuid4().hex}"
    request = replace(request, run_id=run_id, signals=[{"name": name, "payload": json.loads(text)}])
    starting = chosen.start_detached if detached else chosen.start
    started: str = await starting(request, backend)
    if started != run_id:  # the idempotency key's run: it gets the signal now
        await send_signal(started, name, payload, signal_id=f"start.{run_id}", storage=backend)
    return started


def _storage(storage: StorageBackend | str | None) -> StorageBackend:
    return get_storage() if storage is None else resolve_storage(storage)


async def resume(
    run_id: str, *, storage: StorageBackend | str | None = None, runtime: str | None = None
) -> None:
    """Continue a stored run now (replaying its history).

    A terminal run is left alone; a sleep whose time has not come stays asleep.

    Raises:
        RunNotFoundError: no such run (a ``WorkflowNotFoundError``).
        WorkflowNotFoundError: the run's workflow is not registered in this process.
        WorkflowAlreadyRunningError: another process holds the run's lease.
    """
    backend = _storage(storage)
    await backend.connect()
    if await backend.get_run(run_id) is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
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


async def cancel_workflow(
    run_id: str,
    reason: str | None = None,
    *,
    wait: bool = False,
    timeout: float | None = None,  # noqa: ASYNC109 - part of the public API
    storage: StorageBackend | str | None = None,
) -> bool:
    """Ask a run to cancel. The workflow sees ``CancellationError`` at its next durable
    operation, or at once if it is waiting (it is resumed to run its cleanup); the run
    ends ``cancelled`` if the error leaves the workflow.

    Returns ``False`` (and changes nothing) for a run that already ended. With ``wait``,
    returns once the run has ended (``TimeoutError`` after ``timeout`` seconds).

    Raises:
        RunNotFoundError: no such run (a ``WorkflowNotFoundError``).
        ConfigurationError: the storage cannot record cancellation requests.
    """
    backend = _storage(storage)
    require_capability(backend, CANCELLATION)
    await backend.connect()
    run = await backend.get_run(run_id)
    if run is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    if not await backend.request_cancellation(run_id, reason, utcnow()):
        return False
    if not deliver_cancel(run_id, reason):
        await get_runtime(get_config().default_runtime).wake(run_id, backend)
    if wait:
        await wait_for_run(run_id, timeout=timeout, storage=backend)
    return True


@dataclass(frozen=True, slots=True)
class ResumeResult:
    """What :func:`resume_hook` delivered to."""

    run_id: str
    hook_id: str
    status: HookStatus


async def resume_hook(
    token: str,
    payload: Any,
    *,
    storage: StorageBackend | str | None = None,
    wake_here: bool = True,
) -> ResumeResult:
    """Deliver ``payload`` to the hook with ``token`` and wake its run.

    Typed hooks validate the payload first: with the hook's Pydantic model where it is
    registered in this process (``define_hook``, after importing the configured workflow
    modules), else against the JSON Schema the hook stored when it was created (so a
    process without the workflow's code refuses what the workflow would). Payloads must
    be JSON values (or a model of the hook's type).

    Under the local runtime the run is then resumed on the caller's event loop if its
    workflow is registered here. ``wake_here=False`` is for callers that exit at once (the
    CLI): only the payload is stored, and a process serving runs resumes the run (its
    recovery pass). Other runtimes are told either way (Celery enqueues the run by name).

    Raises:
        InvalidTokenError: the token is malformed.
        HookNotFoundError: no hook has this token.
        HookAlreadyReceivedError: the hook already received its payload (single use).
        HookExpiredError: the hook's timeout passed, or its run ended (the hook was
            disposed).
        pydantic.ValidationError: the payload does not match the hook's model.
        HookPayloadError: the model is not here and the payload does not match the
            stored schema (``errors`` lists each violation's path and message).
        SerializationError: the payload is not JSON-serializable, or holds NaN or an
            infinity (not JSON); the message names where.
        PayloadTooLargeError: the payload's JSON is over the payload limit
            (``max_payload_bytes``, or the storage server's lower limit).
        ConfigurationError: the storage does not store hooks.

    A refused payload writes nothing: the hook stays open for a valid one.
    """
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise InvalidTokenError("malformed hook token")
    backend = _storage(storage)
    require_capability(backend, HOOKS)
    await backend.connect()
    record = await backend.get_hook(hash_token(token))
    hint = token[:8] + "..."
    if record is None:
        raise HookNotFoundError(f"no hook with token {hint}")
    return await _deliver(backend, record, payload, hint, wake_here)


async def resume_hook_by_key(
    key: str,
    payload: Any,
    *,
    storage: StorageBackend | str | None = None,
    wake_here: bool = True,
) -> ResumeResult:
    """Deliver ``payload`` to the hook whose key is ``key`` (``HookRecord.token_hash``,
    the id the HTTP API lists hooks by): for callers already authorised to act on any
    hook (the dashboard's admin), who hold no token. Validation, waking and errors are
    those of :func:`resume_hook`.

    Raises:
        HookNotFoundError: no hook has this key.
        ...: everything :func:`resume_hook` raises.
    """
    backend = _storage(storage)
    require_capability(backend, HOOKS)
    await backend.connect()
    record = await backend.get_hook(key) if _HOOK_KEY.fullmatch(key) else None
    if record is None:
        raise HookNotFoundError(f"no hook with key {key[:12]}...")
    hint = f"{record.hook_id} of run {record.run_id}"
    return await _deliver(backend, record, payload, hint, wake_here)


async def _deliver(
    backend: StorageBackend, record: HookRecord, payload: Any, hint: str, wake_here: bool
) -> ResumeResult:
    _check_open(record, hint)
    run = await backend.get_run(record.run_id)
    if run is None or run.status.is_terminal:
        raise HookExpiredError(f"hook {record.name!r} ({hint}): its run has ended")
    text = _encode_payload(record, payload)
    check_size(text, f"payload for hook {record.name!r} ({hint})", backend.payload_limit)
    if not await backend.update_hook(
        record.token_hash,
        expected=HookStatus.PENDING,
        status=HookStatus.RECEIVED,
        payload=text,
        received_at=utcnow(),
    ):
        latest = await backend.get_hook(record.token_hash)
        _check_open(latest or record, hint)
        raise HookAlreadyReceivedError(f"hook {record.name!r} ({hint}) already received a payload")
    runtime_name = get_config().default_runtime
    local = runtime_name == "local"
    if not local or (wake_here and get_workflow(run.workflow_name) is not None):
        await get_runtime(runtime_name).wake(record.run_id, backend)
    # else: a process serving runs picks the run up (its recovery pass resumes suspended
    # runs whose hook received a payload); this one has not the code, or will not stay.
    return ResumeResult(run_id=record.run_id, hook_id=record.hook_id, status=HookStatus.RECEIVED)


async def resume_run_hook(
    run_id: str,
    hook: str,
    payload: Any,
    *,
    storage: StorageBackend | str | None = None,
    wake_here: bool = True,
) -> ResumeResult:
    """Deliver ``payload`` to a hook named by its run and its hook id (``hook:approval#1``)
    or name (``approval``), without its token: for operators holding the deployment's
    secret key (``PYWORKFLOW_SECRET_KEY``, or the key file in the working directory).

    The token is derived from the hook's identity under that key, exactly as when the hook
    was created, then delivered as :func:`resume_hook` does (same validation, same errors).

    Raises:
        RunNotFoundError: no run has this id.
        HookNotFoundError: the run has no such hook.
        ValueError: ``hook`` is a name that several of the run's open hooks share.
        ConfigurationError: no secret key here, or not the key the hook was created under.
        ...: everything :func:`resume_hook` raises.
    """
    backend = _storage(storage)
    record = await _find_run_hook(backend, run_id, hook)
    stored = await backend.get_hook(record.token_hash)
    if stored is not None and stored.token:  # a hook of an earlier version kept its token
        token = stored.token
    else:
        token = derive_token(record.run_id, record.hook_id, create_key=False)
        if hash_token(token) != record.token_hash:
            raise ConfigurationError(
                f"the secret key of this process is not the one hook {record.hook_id!r} of run "
                f"{run_id!r} was created under: set PYWORKFLOW_SECRET_KEY to the deployment's "
                "key, or deliver with the hook's token"
            )
    return await resume_hook(token, payload, storage=backend, wake_here=wake_here)


async def get_hook(
    token: str | None = None,
    *,
    run_id: str | None = None,
    hook: str | None = None,
    storage: StorageBackend | str | None = None,
) -> HookRecord:
    """One hook, by its token, or by ``run_id`` and ``hook`` (its hook id, e.g.
    ``hook:approval#1``, or its name). Like :func:`list_hooks`, the result carries no
    token.

    Raises:
        InvalidTokenError: ``token`` is malformed.
        HookNotFoundError: no such hook.
        RunNotFoundError: ``run_id`` names no run.
        ValueError: neither a token nor ``run_id`` and ``hook`` were given, or ``hook`` is
            a name that several of the run's open hooks share.
        ConfigurationError: the storage does not store hooks.
    """
    backend = _storage(storage)
    if token is not None:
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise InvalidTokenError("malformed hook token")
        require_capability(backend, HOOKS)
        await backend.connect()
        found = await backend.get_hook(hash_token(token))
        if found is None:
            raise HookNotFoundError(f"no hook with token {token[:8]}...")
    elif run_id is not None and hook is not None:
        found = await _find_run_hook(backend, run_id, hook)
    else:
        raise ValueError("get_hook needs a token, or a run_id and a hook id or name")
    found.token = ""  # a token is a capability; inspection does not hand it out
    return found


async def _find_run_hook(backend: StorageBackend, run_id: str, hook: str) -> HookRecord:
    """The run's hook with id ``hook``, else its only open (else only) hook named ``hook``."""
    require_capability(backend, HOOKS)
    await backend.connect()
    if await backend.get_run(run_id) is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    hooks: list[HookRecord] = []
    while True:
        page = await backend.list_hooks(run_id=run_id, limit=500, offset=len(hooks))
        hooks.extend(page)
        if len(page) < 500:
            break
    for record in hooks:
        if record.hook_id == hook:
            return record
    named = [r for r in hooks if r.name == hook]
    pending = [r for r in named if r.status == HookStatus.PENDING]
    candidates = pending if pending else named
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise HookNotFoundError(f"run {run_id!r} has no hook {hook!r}")
    ids = ", ".join(sorted(r.hook_id for r in candidates))
    raise ValueError(f"run {run_id!r} has several hooks named {hook!r} ({ids}): give the hook id")


_TOKEN = re.compile(r"whk_[A-Za-z0-9_-]{32}")
_HOOK_KEY = re.compile(r"[0-9a-f]{64}")  # HookRecord.token_hash: sha256 hex


def _check_open(record: HookRecord, hint: str) -> None:
    if record.status == HookStatus.RECEIVED:
        raise HookAlreadyReceivedError(f"hook {record.name!r} ({hint}) already received a payload")
    expired = record.expires_at is not None and record.expires_at <= timer_now()
    if record.status != HookStatus.PENDING or expired:
        raise HookExpiredError(f"hook {record.name!r} ({hint}) is {record.status.value}")


def _encode_payload(record: HookRecord, payload: Any) -> str:
    name = record.name
    model = hook_model(name)
    if model is None:
        discover_workflows()  # the hook's model may live in a configured workflow module
        model = hook_model(name)
    if model is not None:
        payload = model.model_validate(payload).model_dump(mode="json")
    elif isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json")
    try:
        text = json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        refuse_non_finite(payload, f"payload for hook {name!r}")
        raise SerializationError(f"payload for hook {name!r} must be a JSON value: {exc}") from None
    if model is None and record.schema:
        # The model is not here (no workflow code in this process): the schema the hook
        # stored from it decides, so the workflow never receives what it would refuse.
        errors = schema_violations(record.schema, json.loads(text))
        if errors:
            listed = "; ".join(f"{e['path'] or '(payload)'}: {e['message']}" for e in errors)
            raise HookPayloadError(
                f"payload refused by hook {name!r} ({record.hook_id}): {listed}",
                hook_id=record.hook_id,
                errors=errors,
            )
    return text


async def list_hooks(
    *,
    run_id: str | None = None,
    status: HookStatus | str | None = None,
    limit: int = 100,
    offset: int = 0,
    storage: StorageBackend | str | None = None,
) -> list[HookRecord]:
    """Hooks of one run or of all runs, newest first (tokens are not part of the result).

    Raises:
        ConfigurationError: the storage does not store hooks.
    """
    backend = _storage(storage)
    require_capability(backend, HOOKS)
    await backend.connect()
    hooks = await backend.list_hooks(
        run_id=run_id,
        status=None if status is None else HookStatus(status),
        limit=limit,
        offset=offset,
    )
    for record in hooks:
        record.token = ""  # listing is for inspection; a token is a capability
    return hooks


async def get_workflow_chain(
    run_id: str, *, storage: StorageBackend | str | None = None
) -> list[WorkflowRun]:
    """Every run of the ``continue_as_new`` chain ``run_id`` belongs to, oldest first.

    Raises:
        RunNotFoundError: no such run (a ``WorkflowNotFoundError``).
    """
    backend = _storage(storage)
    await backend.connect()
    run = await backend.get_run(run_id)
    if run is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
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


#: The tag linking a run started by :func:`retry_workflow` to the run it retries.
RETRY_TAG_PREFIX = "retry-of:"


def retry_workflow(
    run_id: str,
    *,
    runtime: str | None = None,
    storage: StorageBackend | str | None = None,
    detached: bool = False,
) -> Any:
    """Start a new run of ``run_id``'s workflow with its stored input, linked to it.

    The arguments are reused exactly as stored (not decoded and re-encoded), so a retry
    works where the argument classes are not importable. The link is recorded twice,
    without a storage column of its own: as ``retry_of`` in the new run's
    ``workflow.started`` event (always), and as the tag ``retry-of:<run_id>`` (so
    ``list_runs(tag="retry-of:<run_id>")`` finds the retries from an index) when the
    tags the old run had, without its own ``retry-of:`` tag, leave room for it (at most
    3). The new run keeps the old run's other tags.

    Under the local runtime the workflow's code must be importable here (registered,
    or in the configured ``modules``): the run executes in this process, and the call
    returns once it has completed or suspended. Under another runtime (Celery) the run
    is enqueued by name, also without the code: the run's settings (``max_duration``,
    recovery) are then copied from the old run. ``detached=True`` returns once the new run
    is stored (see :func:`start_by_name`).

    Dual use like :func:`start`: awaitable in async code, a plain call in synchronous
    code returns the new run id directly.

    Raises:
        RunNotFoundError: no run ``run_id`` (a ``WorkflowNotFoundError``).
        WorkflowNotFoundError: local runtime, and the workflow's code is not here.
    """
    name = runtime or get_config().default_runtime
    coro = _retry(run_id, name, storage, detached)
    if _in_async_context():
        return coro
    return run_sync(coro, runtime_name=name)


async def _retry(
    run_id: str, runtime: str, storage: StorageBackend | str | None, detached: bool = False
) -> str:
    backend = _storage(storage)
    await backend.connect()
    old = await backend.get_run(run_id)
    if old is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    try:
        definition = definition_of(old.workflow_name)
        if runtime == "local":  # it executes here, from these decoded values
            args, kwargs = old.input_args, old.input_kwargs
    except WorkflowNotFoundError:
        if runtime == "local":
            raise WorkflowNotFoundError(
                f"workflow {old.workflow_name!r} is not registered in this process: the "
                "local runtime runs the retry here, so import its module (--module / "
                "configure(modules=[...])), or enqueue it with the celery runtime"
            ) from None
        definition = _stand_in_definition(old)
    stored = json.loads(old.input_payload) if old.input_payload else {}
    tags = [t for t in old.tags if not t.startswith(RETRY_TAG_PREFIX)]
    if len(tags) < MAX_TAGS:
        tags.append(f"{RETRY_TAG_PREFIX}{run_id}")
    request = RunRequest(
        definition=definition,
        args=args,
        kwargs=kwargs,
        tags=tags,
        encoded_input=(list(stored.get("args", [])), dict(stored.get("kwargs", {}))),
        retry_of=run_id,
    )
    if detached:
        return await get_runtime(runtime).start_detached(request, backend)
    return await get_runtime(runtime).start(request, backend)


def _stand_in_definition(run: WorkflowRun) -> WorkflowDefinition:
    """The options of a workflow whose code is not here, as its stored run recorded them
    (only for enqueueing: the worker that executes the run has the real code)."""

    async def not_here(*_args: Any, **_kwargs: Any) -> Any:
        raise WorkflowNotFoundError(f"workflow {run.workflow_name!r} is not registered here")

    seconds = duration_seconds(run.max_duration) if run.max_duration else None
    return WorkflowDefinition(
        name=run.workflow_name,
        func=not_here,
        durable=True,
        max_duration=run.max_duration,
        max_duration_seconds=seconds,
        recover_on_worker_loss=run.recover_on_worker_loss,
        max_recovery_attempts=run.max_recovery_attempts,
        queue=run.queue,  # the retry goes where the retried run went
    )


async def wait_for_run(
    run_id: str,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - part of the public API
    poll_interval: float = 0.05,
    storage: StorageBackend | str | None = None,
) -> WorkflowRun:
    """Wait until the run is terminal (the local runtime keeps resuming it meanwhile).

    Raises:
        RunNotFoundError: no such run (a ``WorkflowNotFoundError``).
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
                raise RunNotFoundError(f"no run with id {run_id!r}")
            if run.status.is_terminal:
                return run
            await asyncio.sleep(poll_interval)

    async with asyncio.timeout(timeout):
        return await poll()


async def purge_runs(
    older_than: DurationLike | datetime,
    *,
    status: RunStatus | str | Iterable[RunStatus | str] | None = None,
    workflow_name: str | None = None,
    batch_size: int = retention.DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    on_batch: Callable[[int, int], object] | None = None,
    storage: StorageBackend | str | None = None,
) -> PurgeResult:
    """Delete finished runs older than ``older_than``, with their events, hooks, tags and
    idempotency keys (retention). Returns what was done; ``result.count`` runs went.

    A run goes when its status is terminal (``completed``, ``failed``, ``cancelled``,
    ``continued_as_new``; narrowed by ``status``) and it finished (``completed_at``, or
    ``updated_at`` for a run without one) before the cutoff: ``older_than`` ago (a
    duration like ``"30d"``, seconds, a ``timedelta``), or that moment (an aware
    ``datetime``; a naive one is taken as UTC). Pending, running, suspended and
    ``interrupted`` runs are never deleted, whatever their age. Each run is judged on
    its own: children of a purged run, and the other runs of its ``continue_as_new``
    chain, stay unless they match too.

    Deletion is batched: ``batch_size`` runs per storage call, each call its own
    transaction on the SQL backends, so a large purge holds no lock for long and keeps
    at most two batches of ids in memory. ``on_batch(deleted, total)`` is called after
    each batch (progress). ``dry_run`` deletes nothing and counts the runs that would
    go (``on_batch`` then reports the matches of each page read).

    Raises:
        ValueError: a status that is not terminal, a malformed duration, or a
            ``batch_size`` below 1.
        ConfigurationError: the storage cannot delete runs (no ``retention``
            capability; a dry run still works).
    """
    statuses = retention.purgeable_statuses(status)
    if isinstance(older_than, datetime):
        cutoff = older_than if older_than.tzinfo else older_than.replace(tzinfo=UTC)
    else:
        cutoff = utcnow() - parse_duration(older_than)
    backend = _storage(storage)
    if not dry_run:
        require_capability(backend, RETENTION)
    await backend.connect()
    return await retention.purge(
        backend,
        cutoff,
        statuses=statuses,
        workflow_name=workflow_name,
        batch_size=batch_size,
        dry_run=dry_run,
        on_batch=on_batch,
    )
