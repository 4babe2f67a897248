"""In-memory storage: the reference backend.

Extra: none. URL: ``memory://``. Features: everything except persistence; one process
only. Every call works on copies, so callers never share mutable records with the store.
Used by unit tests and transient experiments.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from pyworkflow.core.exceptions import (
    RunAlreadyExistsError,
    RunNotFoundError,
    SequenceConflictError,
)
from pyworkflow.storage import _predicates as rules
from pyworkflow.storage import payloads
from pyworkflow.storage.base import RunQuery, StorageBackend
from pyworkflow.storage.schemas import (
    Event,
    GateRecord,
    HookRecord,
    HookStatus,
    RunStatus,
    RunUpdate,
    ScheduleRecord,
    ScheduleStatus,
    SignalRecord,
    VersionedRecord,
    WorkerRecord,
    WorkflowRun,
)

_iso = datetime.fromisoformat
R = TypeVar("R", bound=VersionedRecord)


def _save_versioned(
    records: dict[str, R], key: str, record: R, expected_version: int | None
) -> bool:
    """The compare-and-set of a schedule or a gate: store a copy of ``record`` under
    ``key`` at the next version, if the stored one is still ``expected_version``."""
    current = records.get(key)
    version = rules.next_schedule_version(
        None if current is None else current.version, expected_version
    )
    if version is None:
        return False
    stored = record.copy()
    stored.version = version
    records[key] = stored
    record.version = version
    return True


class InMemoryStorageBackend(StorageBackend):
    """Runs and events in dicts; atomic because every method is free of awaits."""

    capabilities = frozenset()

    def __init__(self) -> None:
        self._runs: dict[str, WorkflowRun] = {}
        self._events: dict[str, list[Event]] = {}
        self._keys: dict[str, str] = {}
        self._hooks: dict[str, HookRecord] = {}
        self._schedules: dict[str, ScheduleRecord] = {}
        self._gates: dict[str, GateRecord] = {}
        self._workers: dict[str, WorkerRecord] = {}
        # Per run: the inbox in sequence order (sequence n at index n - 1), and signal_id
        # -> sequence for repeated sends.
        self._signals: dict[str, list[SignalRecord]] = {}
        self._signal_ids: dict[str, dict[str, int]] = {}

    async def create_run(self, run: WorkflowRun, events: Sequence[Event] = ()) -> WorkflowRun:
        # The same checks as the backends that store JSON, so code tested here fails
        # here too (a NaN, an oversize value).
        payloads.check_run(run, self.payload_limit)
        payloads.check_events(run.run_id, events, self.payload_limit)
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

    async def workflow_names(self, *, limit: int = 1000) -> list[str] | None:
        return sorted({r.workflow_name for r in self._runs.values()})[: max(limit, 0)]

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
            raise RunNotFoundError(f"run {run_id!r} not found")
        if run.last_sequence != expected_last_sequence:
            raise SequenceConflictError(
                f"run {run_id!r}: expected last sequence {expected_last_sequence}, "
                f"found {run.last_sequence}"
            )
        if update is not None:
            payloads.check_changes(run_id, update.changes, self.payload_limit)
        payloads.check_events(run_id, events, self.payload_limit)
        self._events[run_id].extend(events)
        if events:
            run.last_sequence = events[-1].sequence
        if update is not None:
            update.apply_to(run)

    async def get_events(self, run_id: str, *, after_sequence: int = 0) -> list[Event]:
        events = self._events.get(run_id, ())
        try:
            return [e for e in events if e.sequence > after_sequence]
        except AttributeError:
            # Not an Event: a stored record put there to damage the log (the conformance
            # suite's corrupt_event hook), decoded as the file backend decodes its lines.
            return [
                e if type(e) is Event else Event.from_stored_record(run_id, e, n, _iso)
                for n, e in enumerate(events, 1)
                if n > after_sequence
            ]

    async def list_due_runs(self, now: datetime, limit: int = 100) -> list[str]:
        return [r.run_id for r in rules.due_runs(self._runs.values(), now, limit)]

    async def next_wake_time(self) -> datetime | None:
        return rules.next_wake_time(self._runs.values())

    async def list_stale_runs(self, now: datetime, limit: int = 100) -> list[WorkflowRun]:
        return [r.copy() for r in rules.stale_runs(self._runs.values(), now, limit)]

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
        return run is not None and rules.take_lease(run, owner, expires_at, now, steal_from)

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
        payloads.check_schedule(schedule, self.payload_limit)
        return _save_versioned(self._schedules, schedule.schedule_id, schedule, expected_version)

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
        chosen = rules.select_schedules(
            self._schedules.values(), workflow_name=workflow_name, status=status, limit=limit
        )
        return [s.copy() for s in chosen]

    async def list_due_schedules(self, now: datetime, limit: int = 100) -> list[ScheduleRecord]:
        return [s.copy() for s in rules.due_schedules(self._schedules.values(), now, limit)]

    async def delete_schedule(self, schedule_id: str) -> bool:
        return self._schedules.pop(schedule_id, None) is not None

    async def get_gate(self, key: str) -> GateRecord | None:
        gate = self._gates.get(key)
        return gate.copy() if gate else None

    async def save_gate(self, gate: GateRecord, *, expected_version: int | None) -> bool:
        payloads.check_gate(gate, self.payload_limit)
        return _save_versioned(self._gates, gate.key, gate, expected_version)

    async def save_worker(self, worker: WorkerRecord) -> None:
        self._workers[worker.worker_id] = worker.copy()

    async def list_workers(
        self, *, limit: int = 1000, after: str | None = None
    ) -> list[WorkerRecord]:
        ids = sorted(w for w in self._workers if after is None or w > after)
        chosen = ids[: max(limit, 0)]
        return [self._workers[worker_id].copy() for worker_id in chosen]

    async def delete_worker(self, worker_id: str) -> bool:
        return self._workers.pop(worker_id, None) is not None

    async def request_cancellation(self, run_id: str, reason: str | None, now: datetime) -> bool:
        run = self._runs.get(run_id)
        return run is not None and rules.request_cancel(run, reason, now)

    async def save_hook(self, hook: HookRecord) -> HookRecord:
        payloads.check_hook(hook, self.payload_limit)
        existing = rules.same_hook(self._hooks.values(), hook)
        if existing is not None:
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
        cursor: str | None = None,
    ) -> list[HookRecord]:
        page = rules.page_hooks(
            self._hooks.values(),
            run_id=run_id,
            status=status,
            limit=limit,
            offset=offset,
            cursor=cursor,
        )
        return [h.copy() for h in page]

    async def update_hook(
        self,
        token_hash: str,
        *,
        expected: HookStatus,
        status: HookStatus,
        payload: str | None = None,
        received_at: datetime | None = None,
    ) -> bool:
        payloads.check_hook_payload(token_hash, payload, self.payload_limit)
        hook = self._hooks.get(token_hash)
        return hook is not None and rules.move_hook(
            hook, expected=expected, status=status, payload=payload, received_at=received_at
        )

    async def send_signal(
        self, run_id: str, name: str, payload: str, *, signal_id: str, now: datetime
    ) -> SignalRecord | None:
        payloads.check_signal(run_id, name, payload, self.payload_limit)
        run = self._runs.get(run_id)
        if run is None or RunStatus(run.status).is_terminal:
            return None
        inbox = self._signals.setdefault(run_id, [])
        ids = self._signal_ids.setdefault(run_id, {})
        if signal_id in ids:
            return inbox[ids[signal_id] - 1].copy()
        signal = SignalRecord(run_id, len(inbox) + 1, name, payload, signal_id, now)
        inbox.append(signal)
        ids[signal_id] = signal.sequence
        # Due now, so the run's timers bring it back to take the signal (due runs are
        # computed from wake_at: there is no index to update).
        if run.status == RunStatus.SUSPENDED and (run.wake_at is None or run.wake_at > now):
            run.wake_at = now
        return signal.copy()

    async def list_signals(
        self, run_id: str, *, after_sequence: int = 0, limit: int = 1000
    ) -> list[SignalRecord]:
        # Sequence n sits at index n - 1, so slicing skips the ones already taken.
        inbox = self._signals.get(run_id, ())
        start = max(after_sequence, 0)
        return [s.copy() for s in inbox[start : start + max(limit, 0)]]

    async def delete_runs(self, run_ids: Sequence[str]) -> int:
        gone: set[str] = set()
        for run_id in dict.fromkeys(run_ids):
            run = self._runs.get(run_id)
            if run is None or not RunStatus(run.status).is_terminal:
                continue
            del self._runs[run_id]
            self._events.pop(run_id, None)
            self._signals.pop(run_id, None)
            self._signal_ids.pop(run_id, None)
            key = run.idempotency_key
            if key is not None and self._keys.get(key) == run_id:
                del self._keys[key]
            gone.add(run_id)
        if gone:
            for token_hash in [h.token_hash for h in self._hooks.values() if h.run_id in gone]:
                del self._hooks[token_hash]
        return len(gone)
