"""What a Celery worker process does for each pyworkflow task (the task bodies).

Each pool process has one event loop, one lease-owner id and its own storage
connections, created on first use after the fork. The functions here are thin: the
engine decides everything (``resume_run``, ``execute_dispatched_step``); this module
only turns an execution's outcome into the next messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from pyworkflow import __version__
from pyworkflow.celery.messages import (
    Route,
    delivered_queue,
    routes_of,
    send_step,
    send_workflow,
    transient_arguments,
)
from pyworkflow.celery.publishing import Message, publish
from pyworkflow.core.config import drop_cached_storages, get_config, get_storage, new_storage
from pyworkflow.core.exceptions import (
    QueryFailedError,
    QueryNotFoundError,
    RunNotFoundError,
    WorkflowNotFoundError,
)
from pyworkflow.core.registry import require_workflow
from pyworkflow.engine.context import DispatchedStep
from pyworkflow.engine.executor import Outcome
from pyworkflow.engine.log import is_storage_fault
from pyworkflow.engine.recovery import BACKOFF_CAP, backoff_delay
from pyworkflow.engine.runner import keep_leases, new_owner_id, resume_run
from pyworkflow.engine.runs import RunRequest
from pyworkflow.engine.step_worker import (
    StepTaskResult,
    execute_dispatched_step,
    steps_in_flight,
)
from pyworkflow.engine.workers import WorkerBeat
from pyworkflow.observability import tracing
from pyworkflow.storage.base import WORKERS, StorageBackend
from pyworkflow.storage.schemas import RunStatus, WorkflowRun, utcnow
from pyworkflow.utils.log import logger

T = TypeVar("T")


# The queues this worker consumes (set in the main process when the worker is set up,
# inherited by the pool processes it forks): what the worker registry shows.
consumed_queues: tuple[str, ...] = ()


class WorkerProcess:
    """Per-process state: created lazily, and again after a fork (pid changed)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.owner = new_owner_id()
        self._storage: StorageBackend | None = None
        self.beat = start_beat(self.owner)

    def holding(self, run_id: str) -> contextlib.AbstractContextManager[None]:
        """Mark ``run_id`` as worked on here (listed by this process's beats) meanwhile."""
        return self.beat.holding(run_id) if self.beat is not None else contextlib.nullcontext()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    async def storage(self) -> StorageBackend:
        if self._storage is None:
            self._storage = get_storage()
            await self._storage.connect()
        return self._storage

    def close(self) -> None:
        if self.beat is not None:
            self.beat.stop()
        if self._storage is not None:
            self.run(self._storage.close())
        self.loop.close()


_process: WorkerProcess | None = None


def start_beat(owner: str, kind: str = "celery") -> WorkerBeat | None:
    """This process's beat in the worker registry, as ``owner`` (``None`` where the
    storage keeps none: a backend object given to ``configure()``, or one without the
    capability)."""
    cfg = get_config()
    probe = new_storage(cfg.storage)
    if probe is None or not {WORKERS, "cross_process"} <= probe.capabilities:
        return None
    beat = WorkerBeat(
        owner,
        lambda: new_storage(cfg.storage) or probe,
        interval=cfg.lease_ttl / 3,
        kind=kind,
        queues=consumed_queues if kind == "celery" else (),
        version=__version__,
    )
    beat.start()
    return beat


def current() -> WorkerProcess:
    """This process's state (a forked child never reuses its parent's loop or sockets)."""
    global _process
    if _process is None or _process.pid != os.getpid():
        if _process is not None:
            drop_cached_storages()  # inherited from the parent: not ours to use
        _process = WorkerProcess()
    return _process


# Storage failing a task is retried in the task this many times (backoff with jitter,
# about 25 s in all), then the message is sent again for later: storage faults are never
# a run's failure, and a worker does not hold a slot for a long outage.
IN_TASK_ATTEMPTS = 8


async def _surviving_storage_faults(
    what: str, run_id: str, work: Callable[[], Awaitable[T]], resend: Callable[[datetime], None]
) -> T | None:
    """Run ``work``; when storage fails it, retry after a backoff, and past
    :data:`IN_TASK_ATTEMPTS` ``resend`` the message for later (``None`` is returned)."""
    for attempt in itertools.count(1):
        try:
            return await work()
        except Exception as exc:
            if not is_storage_fault(exc):
                raise
            delay = backoff_delay(attempt)
            if attempt >= IN_TASK_ATTEMPTS:
                logger.warning("storage failed {} run {} ({}); sent again", what, run_id, exc)
                resend(utcnow() + timedelta(seconds=max(delay, BACKOFF_CAP)))
                return None
            logger.warning(
                "storage failed {} run {} ({}); retrying in {:.2f}s", what, run_id, exc, delay
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def execute_workflow(
    run_id: str,
    *,
    steal_from: str | None,
    recovery: bool,
    force: bool,
    lease_held: bool = False,
    route: Route | None = None,
) -> Outcome | None:
    """Start, resume or recover ``run_id`` here, then send what its outcome calls for.
    A storage fault is retried (the lease, if taken, is ours: taking it again works).
    ``lease_held``: this process took the lease in its own write just before.
    ``route``: the run's, when known (else, storage failing meanwhile, the message goes
    back to the queue it came from)."""
    if route is None:
        route = Route(run_id, delivered_queue())

    def resend(eta: datetime) -> None:
        send_workflow(
            run_id, route=route, steal_from=steal_from, recovery=recovery, force=force, eta=eta
        )

    attempts = 0

    async def work() -> Outcome | None:
        nonlocal attempts
        attempts += 1
        outcome = await _execute_workflow(
            run_id,
            steal_from=steal_from,
            recovery=recovery,
            force=force,
            lease_held=lease_held and attempts == 1,
        )
        if outcome is None and attempts > 1:
            # The failed attempt may have handed the run to a dispatch round (its write
            # landed) without sending the round's steps: send them (duplicates lose).
            await publish(run_id, await round_messages(await current().storage(), run_id) or [])
        return outcome

    return await _surviving_storage_faults("executing", run_id, work, resend)


async def _execute_workflow(
    run_id: str, *, steal_from: str | None, recovery: bool, force: bool, lease_held: bool
) -> Outcome | None:
    proc = current()
    storage = await proc.storage()
    if recovery:
        run = await storage.get_run(run_id)
        # Taken over by this process already, before storage failed that attempt: the
        # recovery is under way (counting it again could exhaust max_recovery_attempts).
        recovery = run is None or run.lease_owner != proc.owner
    lease_ttl = get_config().lease_ttl
    beat = asyncio.ensure_future(_heartbeat(storage, run_id, proc.owner, lease_ttl))
    children: list[str] = []
    try:
        with proc.holding(run_id):
            outcome = await resume_run(
                storage,
                run_id,
                owner=proc.owner,
                lease_ttl=lease_ttl,
                recovery=recovery,
                steal_from=steal_from,
                force=force,
                on_child_created=children.append,
                dispatch_steps=not get_config().celery_inline_steps,
                lease_held=lease_held,
            )
    except RunNotFoundError as exc:  # deleted after the message was sent: drop it
        logger.warning("run {} no longer exists; delivery skipped: {}", run_id, exc)
        return None
    except WorkflowNotFoundError as exc:  # its code is not registered in this worker
        logger.error("cannot execute run {} here: {}", run_id, exc)
        return None
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    routes = await _routes(storage, run_id, outcome, children)
    messages: list[Message] = [
        partial(send_workflow, child, route=routes[child]) for child in children if child in routes
    ]
    if outcome is not None:
        messages += follow_up(outcome, run_id, routes)
    await publish(run_id, messages)
    return outcome


async def _routes(
    storage: StorageBackend, run_id: str, outcome: Outcome | None, children: list[str]
) -> dict[str, Route]:
    """Where the messages after an execution go: this run's route from the outcome, the
    other runs' (children, parent, continuation) read from storage."""
    others = list(children)
    if outcome is not None:
        related = [
            outcome.next_run_id,
            outcome.parent_run_id,
            *outcome.cancelled_children,
            *outcome.handoff,
        ]
        others += [other for other in related if other is not None]
    routes = await routes_of(storage, others) if others else {}
    if outcome is not None and outcome.workflow_name is not None:
        routes[run_id] = Route(outcome.workflow_name, outcome.queue)
    elif outcome is not None and outcome.status == RunStatus.SUSPENDED:
        routes.update(await routes_of(storage, [run_id]))
    return routes


async def round_messages(storage: StorageBackend, run_id: str) -> list[Message] | None:
    """The messages of the dispatch round holding ``run_id``: one per step attempt no
    step worker recorded yet (``None``: no round holds the run)."""
    held = await steps_in_flight(storage, run_id)
    if held is None:
        return None
    round_owner, steps = held
    return [partial(send_step, step, round_owner) for step in steps]


def follow_up(outcome: Outcome, run_id: str, routes: Mapping[str, Route]) -> list[Message]:
    """The messages an execution's outcome calls for (each sends one when called), each
    through its run's route (a run missing from ``routes`` no longer exists)."""

    def wake(target: str, **options: Any) -> list[Message]:
        route = routes.get(target)
        return [] if route is None else [partial(send_workflow, target, route=route, **options)]

    messages: list[Message] = []
    if outcome.round_owner is not None:
        messages += [partial(send_step, step, outcome.round_owner) for step in outcome.dispatched]
    # A sleep ending soon is also sent with a countdown, so it wakes on time without
    # waiting for the scheduler's next poll (the stored wake-up time stays the truth).
    wake_at, window = outcome.wake_at, get_config().celery_countdown_window
    soon = wake_at is not None and (wake_at - utcnow()).total_seconds() < window
    if outcome.status == RunStatus.SUSPENDED and soon:
        messages += wake(run_id, eta=wake_at)
    if outcome.next_run_id is not None:
        messages += wake(outcome.next_run_id)  # continue_as_new
    if outcome.parent_run_id is not None:
        # A child ended: wake its parent.
        messages += wake(outcome.parent_run_id, force=True)
    # parent_close_policy: the cancelled children clean up now.
    for child in outcome.cancelled_children:
        messages += wake(child, force=True)
    # Flow control: the runs whose turn for a concurrency slot came; a start a rate
    # limit delayed, at its time (the queue lease's expiry is the fallback).
    for waiter in outcome.handoff:
        messages += wake(waiter)
    until = outcome.queued_until
    if until is not None and (until - utcnow()).total_seconds() < window:
        messages += wake(run_id, eta=until)
    return messages


async def _heartbeat(storage: StorageBackend, run_id: str, owner: str, lease_ttl: float) -> None:
    """Renew the lease while the workflow task runs (inline steps may take long), and
    pass on a cancellation requested meanwhile from another process."""
    while True:
        await asyncio.sleep(lease_ttl / 3)
        try:
            await keep_leases(storage, [run_id], owner, lease_ttl)
        except Exception:  # noqa: BLE001 - retried at the next beat
            logger.exception("lease renewal of run {} failed", run_id)


def consumes_queue_of(run: WorkflowRun) -> bool:
    """Whether this worker consumes the queue of ``run``'s workflow messages (a worker
    started without ``-Q`` consumes every default queue): then a step task that records
    its round's last step goes on with the run itself, saving a message, a task and a
    read of the run's log. Routing keeps a run on its own queue's workers."""
    from pyworkflow.celery.app import WORKFLOWS_QUEUE

    return (run.queue or WORKFLOWS_QUEUE) in consumed_queues


async def execute_step(
    run_id: str, op_id: str, round_owner: str, *, trace_context: str | None = None
) -> bool:
    """Run a dispatched step; when it was the round's last, go on with the run here
    (see :func:`consumes_queue_of`) or send it on. Returns whether the body ran here
    (a storage fault is retried; the body may run again). ``trace_context``: the
    message's (the dispatching execution's span), the parent of the step's span."""
    with tracing.attached(trace_context):
        return await _execute_step(run_id, op_id, round_owner)


async def _execute_step(run_id: str, op_id: str, round_owner: str) -> bool:
    proc = current()
    take_over = proc.owner if consumed_queues else None

    async def work() -> StepTaskResult:
        storage = await proc.storage()
        with proc.holding(run_id):
            return await execute_dispatched_step(
                storage,
                run_id,
                op_id,
                round_owner,
                lease_ttl=get_config().lease_ttl,
                take_over=take_over,
                runs_here=consumes_queue_of,
            )

    def resend(eta: datetime) -> None:
        # Back to the queue it came from (storage, failing, cannot say the step's).
        send_step(DispatchedStep(run_id, op_id, "", 0, delivered_queue()), round_owner, eta=eta)

    result = await _surviving_storage_faults("running a step of", run_id, work, resend)
    if result is None or not result.round_done:
        return bool(result and result.executed)
    route = Route(result.workflow_name or run_id, result.queue)
    if result.continue_here:
        await execute_workflow(
            run_id, steal_from=proc.owner, recovery=False, force=False, lease_held=True, route=route
        )
    else:
        resume_from = result.resume_from or round_owner
        message = partial(send_workflow, run_id, route=route, steal_from=resume_from)
        await publish(run_id, [message])
    return result.executed


async def answer_query_here(run_id: str, name: str, args: list[Any]) -> dict[str, Any]:
    """A query's reply (see :mod:`pyworkflow.celery.queries`): the answer, or the error
    by class name and message (never a traceback: the asker may be anyone)."""
    from pyworkflow.engine.queries import answer_query

    try:
        storage = await current().storage()
        return {"ok": True, "value": await answer_query(storage, run_id, name, args)}
    except (QueryNotFoundError, QueryFailedError, RunNotFoundError, WorkflowNotFoundError) as exc:
        return {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - storage trouble: the asker hears of it
        logger.warning("query {} of run {} failed: {}", name, run_id, exc)
        return {"ok": False, "error": "QueryFailedError", "message": f"query {name!r} failed"}


async def execute_transient(
    workflow_name: str, run_id: str, payload: str, trace_context: str | None = None
) -> None:
    """Run a ``durable=False`` workflow entirely in this process (nothing is stored),
    in the trace of ``trace_context`` (the message's: the starter's span).

    Raises:
        SerializationError: the payload is refused (not JSON data of the right shape, or
            it holds a pickled value); nothing ran.
    """
    from pyworkflow.celery.app import RUN_TRANSIENT
    from pyworkflow.runtime import get_runtime

    args, kwargs = transient_arguments(RUN_TRANSIENT, payload)
    definition = require_workflow(workflow_name)
    request = RunRequest(definition=definition, args=args, kwargs=kwargs, run_id=run_id)
    with tracing.attached(trace_context):
        await get_runtime("local").start_transient(request)


__all__ = ["current", "execute_step", "execute_transient", "execute_workflow", "follow_up"]
