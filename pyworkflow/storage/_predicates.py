"""The contract's selection and update rules, for backends that evaluate them in Python.

The in-memory and file backends keep records as Python objects and scan them; the rules
they apply are written once here, next to :meth:`RunQuery.page` (run listing) and
:func:`lease_is_free` (lease taking) in :mod:`pyworkflow.storage.base`. Each function is
the reading of one :class:`~pyworkflow.storage.base.StorageBackend` docstring: which runs
are due or stale and in what order, what a lease, cancellation request, hook delivery or
schedule compare-and-set changes, and how hooks and schedules are filtered and ordered.
The server backends state the same rules in their queries.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pyworkflow.storage.base import hook_cursor, lease_is_free, parse_cursor
from pyworkflow.storage.schemas import (
    TERMINAL_STATUSES,
    HookRecord,
    HookStatus,
    RunStatus,
    ScheduleRecord,
    ScheduleStatus,
    WorkflowRun,
)

#: Statuses of runs crash recovery looks at: neither finished nor waiting on a timer.
STALE_CANDIDATES = frozenset(
    s for s in RunStatus if s not in TERMINAL_STATUSES and s != RunStatus.SUSPENDED
)

# -- timers and recovery --------------------------------------------------------------------


def due_runs(runs: Iterable[WorkflowRun], now: datetime, limit: int) -> list[WorkflowRun]:
    """``suspended`` runs with ``wake_at <= now``, earliest first (ties: oldest run,
    then ``run_id``), at most ``limit``."""
    due = [
        r
        for r in runs
        if r.status == RunStatus.SUSPENDED and r.wake_at is not None and r.wake_at <= now
    ]
    due.sort(key=lambda r: (r.wake_at or now, r.created_at, r.run_id))
    return due[: max(limit, 0)]


def next_wake_time(runs: Iterable[WorkflowRun]) -> datetime | None:
    """The earliest ``wake_at`` of a ``suspended`` run, or ``None``."""
    return min(
        (r.wake_at for r in runs if r.status == RunStatus.SUSPENDED and r.wake_at is not None),
        default=None,
    )


def stale_runs(runs: Iterable[WorkflowRun], now: datetime, limit: int) -> list[WorkflowRun]:
    """Recovery candidates whose lease expired before ``now`` or was never taken, oldest
    first (ties: ``run_id``), at most ``limit``."""
    stale = [
        r
        for r in runs
        if r.status in STALE_CANDIDATES and (r.lease_expires_at is None or r.lease_expires_at < now)
    ]
    stale.sort(key=lambda r: (r.created_at, r.run_id))
    return stale[: max(limit, 0)]


# -- conditional run writes -----------------------------------------------------------------


def take_lease(
    run: WorkflowRun,
    owner: str,
    expires_at: datetime,
    now: datetime,
    steal_from: str | None = None,
) -> bool:
    """Give ``owner`` the lease of ``run`` until ``expires_at`` if the
    :meth:`~pyworkflow.storage.base.StorageBackend.acquire_lease` rule allows it (never
    for a finished run); whether it did."""
    if run.status in TERMINAL_STATUSES or not lease_is_free(run, owner, now, steal_from):
        return False
    run.lease_owner, run.lease_expires_at = owner, expires_at
    return True


def request_cancel(run: WorkflowRun, reason: str | None, now: datetime) -> bool:
    """Record a cancellation request on ``run`` (the first request's time and reason
    stay); ``False``, and nothing changed, for a finished run."""
    if run.status in TERMINAL_STATUSES:
        return False
    if run.cancel_requested_at is None:
        run.cancel_requested_at, run.cancel_reason = now, reason
    return True


# -- hooks ----------------------------------------------------------------------------------


def same_hook(hooks: Iterable[HookRecord], hook: HookRecord) -> HookRecord | None:
    """The stored hook with ``hook``'s run and ``hook_id`` (saved before a crash), if any."""
    for existing in hooks:
        if existing.run_id == hook.run_id and existing.hook_id == hook.hook_id:
            return existing
    return None


def page_hooks(
    hooks: Iterable[HookRecord],
    *,
    run_id: str | None,
    status: HookStatus | None,
    limit: int,
    offset: int,
    cursor: str | None = None,
) -> list[HookRecord]:
    """The hooks matching the filters, newest ``created_at`` first (ties: ``token_hash``
    descending), after ``cursor`` (a :func:`~pyworkflow.storage.base.hook_cursor`), the
    page ``offset .. offset + limit``."""
    after = parse_cursor(cursor) if cursor is not None else None
    chosen = [
        h
        for h in hooks
        if (run_id is None or h.run_id == run_id)
        and (status is None or h.status == status)
        and (after is None or parse_cursor(hook_cursor(h)) < after)
    ]
    chosen.sort(key=lambda h: (h.created_at, h.token_hash), reverse=True)
    return chosen[offset : offset + limit]


def move_hook(
    hook: HookRecord,
    *,
    expected: HookStatus,
    status: HookStatus,
    payload: str | None,
    received_at: datetime | None,
) -> bool:
    """Move ``hook`` from ``expected`` to ``status`` (setting ``payload`` and
    ``received_at`` when given); ``False``, and nothing changed, if it is not in
    ``expected``."""
    if hook.status != expected:
        return False
    hook.status = status
    if payload is not None:
        hook.payload = payload
    if received_at is not None:
        hook.received_at = received_at
    return True


# -- schedules ------------------------------------------------------------------------------


def next_schedule_version(stored: int | None, expected: int | None) -> int | None:
    """The version a compare-and-set of a schedule or a gate writes, or ``None`` when it
    must fail.

    Args:
        stored: the stored record's version, ``None`` if there is none.
        expected: the save's ``expected_version`` (``None``: insert).
    """
    if expected is None:
        return 1 if stored is None else None
    return expected + 1 if stored == expected else None


def select_schedules(
    schedules: Iterable[ScheduleRecord],
    *,
    workflow_name: str | None,
    status: ScheduleStatus | None,
    limit: int,
) -> list[ScheduleRecord]:
    """The schedules matching the filters, by ``schedule_id``, at most ``limit``."""
    chosen = [
        s
        for s in schedules
        if (workflow_name is None or s.workflow_name == workflow_name)
        and (status is None or s.status == status)
    ]
    chosen.sort(key=lambda s: s.schedule_id)
    return chosen[: max(limit, 0)]


def due_schedules(
    schedules: Iterable[ScheduleRecord], now: datetime, limit: int
) -> list[ScheduleRecord]:
    """``active`` schedules with ``next_run_time <= now``, earliest first (ties:
    ``schedule_id``), at most ``limit``."""
    due = [
        s
        for s in schedules
        if s.status == ScheduleStatus.ACTIVE
        and s.next_run_time is not None
        and s.next_run_time <= now
    ]
    due.sort(key=lambda s: (s.next_run_time or now, s.schedule_id))
    return due[: max(limit, 0)]


__all__ = [
    "STALE_CANDIDATES",
    "due_runs",
    "due_schedules",
    "move_hook",
    "next_schedule_version",
    "next_wake_time",
    "page_hooks",
    "request_cancel",
    "same_hook",
    "select_schedules",
    "stale_runs",
    "take_lease",
]
