"""Which runs to recover, and whose lease to take: one policy for every runtime.

A run needs recovering when it is ``running`` or ``pending`` (executing, queued, or held
by a dispatch round) and nobody is working on it any more:

* its lease expired (the holder stopped renewing: it died, or a queued message was
  lost), or it was never leased;
* or its holder is a process on this host that no longer exists, or a registered worker
  whose beats stopped (:mod:`pyworkflow.engine.workers`; no need to wait for the lease
  to expire).

A run that a live registered worker lists as being worked on is never recovered, even
past its lease (its step may block the event loop that renews it).

Runtimes only act on the policy's answers: the local runtime resumes each run here, the
Celery sweeper claims it and sends it to a worker. A run that never began executing
(a queued start, a child or continuation not yet picked up) is simply started; anything
else counts as a recovery attempt (``workflow.interrupted``, bounded by
``max_recovery_attempts``).

The candidates are read with cursor-paged, indexed storage queries (runs by status,
newest first; hooks by status; worker records by id) until the last page: no row cap
and no offset, so at scale older runs are reached too and every page costs the same
(``tests/storage/test_sql_indexes.py`` checks each statement's plan, and
:mod:`pyworkflow.testing.conformance_scans` finds a run behind 5,000 newer ones on every
backend). Suspended runs are not scanned: their timers bring them back. The only
suspended runs read are those with a received hook payload or a cancellation request
(``list_runs(status=SUSPENDED, cancel_requested=True)``, an indexed query), whose
signal may have arrived while nobody could wake them.

What a pass costs: one page per :data:`PAGE_SIZE` running or pending runs (the work in
flight, not the store), plus the received hooks (a hook stays ``received`` after its run
took the payload, so this part grows with the hooks ever received; it runs on the slow
checks only, every few polls).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from pyworkflow.engine.owners import (
    OwnerKind,
    is_delivery,
    owner_is_dead,
    owner_kind,
    sweeper_of,
)
from pyworkflow.engine.workers import NOBODY, Liveness, read_liveness
from pyworkflow.storage.base import HOOKS, StorageBackend, hook_cursor, run_cursor
from pyworkflow.storage.schemas import HookStatus, RunStatus, WorkflowRun

# A run whose execution storage failed is resumed again after this backoff (seconds):
# exponential from BACKOFF_BASE, capped, with jitter so runs hit by one outage do not
# all return at the same instant.
BACKOFF_BASE = 0.1
BACKOFF_CAP = 30.0

# Statuses of runs that should have someone working on them.
ACTIVE_STATUSES = (RunStatus.RUNNING, RunStatus.PENDING)
PAGE_SIZE = 200


@dataclass(frozen=True, slots=True)
class Recovery:
    """One run to take over.

    Attributes:
        run_id: the run.
        steal_from: the dead holder whose lease may be taken although it has not expired
            (``None``: only a free or expired lease may be taken, so a lease renewed since
            the run was listed stays with its holder).
        counts: a recovery attempt (the run was executing), not a plain first start.
        lost_round: the dispatch round holding the run, when what was lost is its step
            messages (no worker died on it): sending the round's steps again is enough,
            and no recovery attempt (``counts`` is false). A runtime that cannot send
            step messages recovers the run as an attempt instead.
    """

    run_id: str
    steal_from: str | None
    counts: bool
    lost_round: str | None = None


def backoff_delay(attempt: int) -> float:
    """Seconds before the ``attempt``-th retry (1, 2, ...) of a run storage failed."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(attempt - 1, 30))
    return ceiling * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret


def never_executed(run: WorkflowRun) -> bool:
    """True for a pending run no process has begun executing (recovering it is a plain
    start, not a recovery attempt). A pending run leased to a process was executing:
    its status only becomes 'running' with its first write."""
    return (
        run.status == RunStatus.PENDING
        and run.last_sequence <= 1
        and (run.lease_owner is None or is_delivery(run.lease_owner))
    )


def judge(run: WorkflowRun, now: datetime, me: str, liveness: Liveness = NOBODY) -> Recovery | None:
    """Whether ``run`` (as listed) needs recovering by ``me``, and how; ``liveness``:
    the worker registry as read for this pass."""
    if run.status not in ACTIVE_STATUSES or run.run_id in liveness.held:
        return None
    owner = run.lease_owner
    counts = _counts(run, liveness)
    if owner is not None and (owner in liveness.dead or sweeper_of(owner) in liveness.dead):
        # Its worker, or the scheduler that claimed it and died before sending it,
        # stopped beating: take it now rather than when the lease runs out.
        return Recovery(run.run_id, steal_from=owner, counts=counts)
    if owner is None or run.lease_expires_at is None or run.lease_expires_at < now:
        lost_round = owner if _is_round(owner) and not counts else None
        return Recovery(run.run_id, steal_from=None, counts=counts, lost_round=lost_round)
    if owner_is_dead(owner, me):
        return Recovery(run.run_id, steal_from=owner, counts=counts)
    return None


def _counts(run: WorkflowRun, liveness: Liveness) -> bool:
    """Whether taking ``run`` over is a recovery attempt (bounded by
    ``max_recovery_attempts``) rather than a delivery sent again.

    A run held only for delivery (a queued message, a sweeper's claim) whose lease ran
    out lost a message, not a worker. So did a dispatch round whose lease ran out while
    no worker listed the run (its step messages were lost, e.g. fetched by a worker that
    was killed before it began them) - unless a dead worker's last beat listed it: then
    a worker died running its step, which counts (a step that kills its worker every
    time must not be retried forever).
    """
    owner = run.lease_owner
    if never_executed(run) or is_delivery(owner):
        return False
    if liveness.registry and _is_round(owner):
        return run.run_id in liveness.orphaned
    return True


def _is_round(owner: str | None) -> bool:
    return owner is not None and owner_kind(owner) is OwnerKind.ROUND


async def runs_to_recover(
    storage: StorageBackend,
    now: datetime,
    me: str,
    *,
    lease_ttl: float,
    liveness: Liveness | None = None,
    page_size: int = PAGE_SIZE,
) -> AsyncIterator[Recovery]:
    """Every active run that needs recovering, found by paging through all of them
    (the worker registry is read first unless ``liveness`` is given: a worker is dead
    after ``lease_ttl`` without a beat)."""
    if liveness is None:
        liveness = await read_liveness(storage, now, lease_ttl)
    for status in ACTIVE_STATUSES:
        async for run in _all_runs(storage, status, page_size):
            found = judge(run, now, me, liveness)
            if found is not None:
                yield found


async def awaiting_delivery(
    storage: StorageBackend, liveness: Liveness, *, page_size: int = PAGE_SIZE
) -> AsyncIterator[WorkflowRun]:
    """Active runs that wait for a broker message (held by a dispatch round or for
    delivery) and that no live worker is on: when a worker was killed, their messages may
    have been among those it had fetched, which a broker such as Redis hands out again
    only after its visibility timeout. Sending them again loses nothing (a duplicate
    finds the work done or the lease taken) and is no recovery attempt."""
    for status in ACTIVE_STATUSES:
        async for run in _all_runs(storage, status, page_size):
            owner = run.lease_owner
            if owner is None or run.run_id in liveness.held:
                continue
            if is_delivery(owner) or _is_round(owner):
                yield run


async def signalled_suspended_runs(
    storage: StorageBackend, *, page_size: int = PAGE_SIZE
) -> list[str]:
    """Suspended runs with something to see that nobody woke them for: a hook payload or
    a cancellation that arrived after the run's last write (whoever accepted it could not
    wake the run). A run that wrote since has seen it and is left alone."""
    found = dict.fromkeys(await payload_signalled_runs(storage, page_size=page_size))
    found.update(dict.fromkeys(await cancel_signalled_runs(storage, page_size=page_size)))
    return list(found)


async def payload_signalled_runs(
    storage: StorageBackend, *, page_size: int = PAGE_SIZE
) -> list[str]:
    """Suspended runs with a hook payload that arrived after the run's last write."""
    found: dict[str, None] = {}
    if HOOKS in storage.capabilities:
        cursor: str | None = None
        while True:
            # The first page without the cursor keyword, which backends written before
            # it existed do not take (they then fail only past one page).
            hooks = await (
                storage.list_hooks(status=HookStatus.RECEIVED, limit=page_size)
                if cursor is None
                else storage.list_hooks(status=HookStatus.RECEIVED, limit=page_size, cursor=cursor)
            )
            for hook in hooks:
                run = await storage.get_run(hook.run_id)
                if run is not None and _unseen(run, hook.received_at):
                    found[run.run_id] = None
            if len(hooks) < page_size:
                break
            cursor = hook_cursor(hooks[-1])
    return list(found)


async def cancel_signalled_runs(
    storage: StorageBackend, *, page_size: int = PAGE_SIZE
) -> list[str]:
    """Suspended runs asked to cancel after their last write: one indexed query (a page
    per ``page_size`` such runs), cheap enough for every poll of a timer loop, so a
    cancellation recorded by a process without the workflow code is acted on within the
    serving process's poll interval."""
    return [
        run.run_id
        async for run in _all_runs(storage, RunStatus.SUSPENDED, page_size, cancel_requested=True)
        if _unseen(run, run.cancel_requested_at)
    ]


async def cancel_requested_runs(
    storage: StorageBackend, status: RunStatus, *, page_size: int = PAGE_SIZE
) -> list[WorkflowRun]:
    """Runs in ``status`` whose cancellation was requested (an indexed query)."""
    return [run async for run in _all_runs(storage, status, page_size, cancel_requested=True)]


# Clocks of the processes that write a run and accept its signals may differ this much.
CLOCK_SKEW = timedelta(seconds=1)


def _unseen(run: WorkflowRun, arrived_at: datetime | None) -> bool:
    """Whether a signal that arrived at ``arrived_at`` may not have been seen by the run."""
    if run.status != RunStatus.SUSPENDED:
        return False
    if arrived_at is None:
        return True
    return arrived_at >= run.updated_at - CLOCK_SKEW


async def _all_runs(
    storage: StorageBackend,
    status: RunStatus,
    page_size: int,
    *,
    cancel_requested: bool | None = None,
) -> AsyncIterator[WorkflowRun]:
    cursor: str | None = None
    while True:
        page = await storage.list_runs(
            status=status, cancel_requested=cancel_requested, limit=page_size, cursor=cursor
        )
        for run in page:
            yield run
        if len(page) < page_size:
            return
        cursor = run_cursor(page[-1])
