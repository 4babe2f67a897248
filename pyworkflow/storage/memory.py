"""In-memory storage: the reference backend.

Extra: none. URL: ``memory://``. Features: everything except persistence; one process
only. Every call works on copies, so callers never share mutable records with the store.
Used by unit tests and transient experiments.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pyworkflow.core.exceptions import (
    RunAlreadyExistsError,
    SequenceConflictError,
    WorkflowNotFoundError,
)
from pyworkflow.storage.base import RunQuery, StorageBackend, lease_is_free
from pyworkflow.storage.schemas import (
    TERMINAL_STATUSES,
    Event,
    HookRecord,
    HookStatus,
    RunStatus,
    RunUpdate,
    ScheduleRecord,
    ScheduleStatus,
    WorkflowRun,
)


class InMemoryStorageBackend(StorageBackend):
    """Runs and events in dicts; atomic because every method is free of awaits."""

    capabilities = frozenset()

    def __init__(self) -> None:
        self._runs: dict[str, WorkflowRun] = {}
        self._events: dict[str, list[Event]] = {}
        self._keys: dict[str, str] = {}
        self._hooks: dict[str, HookRecord] = {}
        self._schedules: dict[str, ScheduleRecord] = {}

    async def create_run(self, run: WorkflowRun, events: Sequence[Event] = ()) -> WorkflowRun:
        if run.idempotency_key is not None and run.idempotency_key in self._keys:
            return self._runs[self._keys[run.idempotency_key]].copy()
        if run.run_id in self._runs:
            raise RunAlreadyExistsError(f"run {run.run_id!r} already exists")
        self._runs[run.run_id] = run.copy()
        self._events[run.run_id] = list(events)
        if run.idempotency_key is not None:
            self._keys[run.idempotency_key] = run.run_id
        return run.copy()

    async def get_run(self, run_id: str) -> WorkflowRun | None:
        run = self._runs.get(run_id)
        return run.copy() if run else None

    async def get_run_by_idempotency_key(self, key: str) -> WorkflowRun | None:
        run_id = self._keys.get(key)
        return self._runs[run_id].copy() if run_id else None

    async def query_runs(self, query: RunQuery) -> list[WorkflowRun]:
        return [r.copy() for r in query.page(self._runs.values())]

    async def append_events(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_last_sequence: int,
        update: RunUpdate | None = None,
    ) -> None:
        run = self._runs.get(run_id)
        if run is None:
            raise WorkflowNotFoundError(f"run {run_id!r} not found")
        if run.last_sequence != expected_last_sequence:
            raise SequenceConflictError(
                f"run {run_id!r}: expected last sequence {expected_last_sequence}, "
                f"found {run.last_sequence}"
            )
        self._events[run_id].extend(events)
        if events:
            run.last_sequence = events[-1].sequence
        if update is not None:
            update.apply_to(run)

    async def get_events(self, run_id: str, *, after_sequence: int = 0) -> list[Event]:
        return [e for e in self._events.get(run_id, ()) if e.sequence > after_sequence]

    async def list_due_runs(self, now: datetime, limit: int = 100) -> list[str]:
        due = [
            r
            for r in self._runs.values()
            if r.status == RunStatus.SUSPENDED and r.wake_at is not None and r.wake_at <= now
        ]
        due.sort(key=lambda r: r.wake_at or now)
        return [r.run_id for r in due[:limit]]

    async def next_wake_time(self) -> datetime | None:
        times = [
            r.wake_at
            for r in self._runs.values()
            if r.status == RunStatus.SUSPENDED and r.wake_at is not None
        ]
        return min(times, default=None)

    async def list_stale_runs(self, now: datetime, limit: int = 100) -> list[WorkflowRun]:
        stale = [
            r.copy()
            for r in self._runs.values()
            if r.status not in TERMINAL_STATUSES
            and r.status != RunStatus.SUSPENDED
            and (r.lease_expires_at is None or r.lease_expires_at < now)
        ]
        return stale[:limit]

    async def acquire_lease(
        self,
        run_id: str,
        owner: str,
        expires_at: datetime,
        now: datetime,
        *,
        steal_from: str | None = None,
    ) -> bool:
        run = self._runs.get(run_id)
        if run is None or run.status in TERMINAL_STATUSES:
            return False
        free = lease_is_free(run, owner, now, steal_from)
        if free:
            run.lease_owner, run.lease_expires_at = owner, expires_at
        return free

    async def renew_leases(self, run_ids: Sequence[str], owner: str, expires_at: datetime) -> None:
        for run_id in run_ids:
            run = self._runs.get(run_id)
            if run is not None and run.lease_owner == owner:
                run.lease_expires_at = expires_at

    async def release_lease(self, run_id: str, owner: str) -> None:
        run = self._runs.get(run_id)
        if run is not None and run.lease_owner == owner:
            run.lease_owner = run.lease_expires_at = None

    async def save_schedule(
        self, schedule: ScheduleRecord, *, expected_version: int | None
    ) -> bool:
        current = self._schedules.get(schedule.schedule_id)
        if expected_version is None:
            if current is not None:
                return False
            version = 1
        else:
            if current is None or current.version != expected_version:
                return False
            version = expected_version + 1
        stored = schedule.copy()
        stored.version = version
        self._schedules[schedule.schedule_id] = stored
        schedule.version = version
        return True

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        schedule = self._schedules.get(schedule_id)
        return schedule.copy() if schedule else None

    async def list_schedules(
        self,
        *,
        workflow_name: str | None = None,
        status: ScheduleStatus | None = None,
        limit: int = 1000,
    ) -> list[ScheduleRecord]:
        chosen = [
            s
            for s in self._schedules.values()
            if (workflow_name is None or s.workflow_name == workflow_name)
            and (status is None or s.status == status)
        ]
        chosen.sort(key=lambda s: s.schedule_id)
        return [s.copy() for s in chosen[: max(limit, 0)]]

    async def list_due_schedules(self, now: datetime, limit: int = 100) -> list[ScheduleRecord]:
        due = [
            s
            for s in self._schedules.values()
            if s.status == ScheduleStatus.ACTIVE
            and s.next_run_time is not None
            and s.next_run_time <= now
        ]
        due.sort(key=lambda s: (s.next_run_time or now, s.schedule_id))
        return [s.copy() for s in due[: max(limit, 0)]]

    async def delete_schedule(self, schedule_id: str) -> bool:
        return self._schedules.pop(schedule_id, None) is not None

    async def request_cancellation(self, run_id: str, reason: str | None, now: datetime) -> bool:
        run = self._runs.get(run_id)
        if run is None or run.status in TERMINAL_STATUSES:
            return False
        if run.cancel_requested_at is None:
            run.cancel_requested_at, run.cancel_reason = now, reason
        return True

    async def save_hook(self, hook: HookRecord) -> HookRecord:
        for existing in self._hooks.values():
            if existing.run_id == hook.run_id and existing.hook_id == hook.hook_id:
                return existing.copy()
        self._hooks[hook.token_hash] = hook.copy()
        return hook.copy()

    async def get_hook(self, token_hash: str) -> HookRecord | None:
        hook = self._hooks.get(token_hash)
        return hook.copy() if hook else None

    async def list_hooks(
        self,
        *,
        run_id: str | None = None,
        status: HookStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[HookRecord]:
        hooks = [
            h
            for h in self._hooks.values()
            if (run_id is None or h.run_id == run_id) and (status is None or h.status == status)
        ]
        hooks.sort(key=lambda h: (h.created_at, h.token_hash), reverse=True)
        return [h.copy() for h in hooks[offset : offset + limit]]

    async def update_hook(
        self,
        token_hash: str,
        *,
        expected: HookStatus,
        status: HookStatus,
        payload: str | None = None,
        received_at: datetime | None = None,
    ) -> bool:
        hook = self._hooks.get(token_hash)
        if hook is None or hook.status != expected:
            return False
        hook.status = status
        if payload is not None:
            hook.payload = payload
        if received_at is not None:
            hook.received_at = received_at
        return True
