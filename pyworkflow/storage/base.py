"""The storage contract every backend implements.

Methods are deliberately primitive: workflow semantics (replay, retries, timers) live
once in the engine; a backend only stores runs and events and answers a few indexed
queries. The docstrings below are the contract that ``pyworkflow.testing.conformance``
checks for every backend.

Concurrency model
-----------------
* **Single writer per run.** A process works on a run only while it holds the run's
  *lease* (:meth:`acquire_lease`, an atomic compare-and-set of owner and expiry).
* **Fenced appends.** :meth:`append_events` carries the sequence number the writer
  believes is the run's last; if another writer appended first the backend raises
  :class:`~pyworkflow.core.exceptions.SequenceConflictError` and writes nothing.
  Together these make "a step's completion is recorded exactly once" hold across
  processes.
* **Projections move with events.** The events of one append and the run update that
  goes with them are applied atomically (all or nothing).

All datetimes given to and returned by a backend are timezone-aware UTC.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pyworkflow.core.exceptions import ConfigurationError
from pyworkflow.storage.payloads import PayloadLimit, effective_limit
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
    WorkerRecord,
    WorkflowRun,
)


def run_cursor(run: WorkflowRun) -> str:
    """The opaque paging cursor that points just after ``run`` in :meth:`list_runs` order."""
    return f"{_micros(run.created_at)}:{run.run_id}"


def hook_cursor(hook: HookRecord) -> str:
    """The opaque paging cursor that points just after ``hook`` in :meth:`list_hooks`
    order (the same form as :func:`run_cursor`, read by :func:`parse_cursor`)."""
    return f"{_micros(hook.created_at)}:{hook.token_hash}"


def parse_cursor(cursor: str) -> tuple[int, str]:
    """``(created_at in epoch microseconds, id)`` of a :func:`run_cursor` (or
    :func:`hook_cursor`) value.

    Raises:
        ValueError: the cursor was not made by :func:`run_cursor`.
    """
    micros, sep, run_id = cursor.partition(":")
    # ASCII digits only ("²" is a digit to str.isdigit), and no later than any time a
    # run can be created at (a larger number overflows where it becomes a datetime).
    if not sep or not micros.isascii() or not micros.isdigit() or int(micros) > _MAX_MICROS:
        raise ValueError(f"invalid run cursor {cursor!r}")
    return int(micros), run_id


def _micros(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_MICROS = _micros(datetime.max.replace(tzinfo=UTC))


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Filters and paging of :meth:`StorageBackend.list_runs`."""

    status: RunStatus | None = None
    workflow_name: str | None = None
    tag: str | None = None
    parent_run_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    limit: int = 100
    offset: int = 0
    cursor: str | None = None
    # Added after the first release: last, so positional construction keeps working.
    cancel_requested: bool | None = None
    run_id_prefix: str | None = None

    def matches(self, run: WorkflowRun) -> bool:
        """Whether ``run`` passes every filter (cursor excluded)."""
        return (
            (self.status is None or run.status == self.status)
            and (self.workflow_name is None or run.workflow_name == self.workflow_name)
            and (self.tag is None or self.tag in run.tags)
            and (self.parent_run_id is None or run.parent_run_id == self.parent_run_id)
            and (self.created_after is None or run.created_at >= self.created_after)
            and (self.created_before is None or run.created_at < self.created_before)
            and (
                self.cancel_requested is None
                or (run.cancel_requested_at is not None) == self.cancel_requested
            )
            and (self.run_id_prefix is None or run.run_id.startswith(self.run_id_prefix))
        )

    def page(self, runs: Iterable[WorkflowRun]) -> list[WorkflowRun]:
        """Apply the whole query in Python (for backends without an index to ask)."""
        after = parse_cursor(self.cursor) if self.cursor else None
        chosen = [
            r
            for r in runs
            if self.matches(r) and (after is None or (_micros(r.created_at), r.run_id) < after)
        ]
        chosen.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        return chosen[self.offset : self.offset + self.limit]


def lease_is_free(
    run: WorkflowRun, owner: str, now: datetime, steal_from: str | None = None
) -> bool:
    """The :meth:`StorageBackend.acquire_lease` rule, for backends that evaluate it in Python."""
    return (
        run.lease_owner is None
        or run.lease_owner == owner
        or run.lease_owner == steal_from
        or run.lease_expires_at is None
        or run.lease_expires_at < now
    )


#: Capability flag: the backend stores schedules (``save_schedule`` and the rest).
SCHEDULES = "schedules"
#: Capability flag: the backend stores hooks (``save_hook``, ``get_hook``, ...).
HOOKS = "hooks"
#: Capability flag: the backend records cancellation requests (``request_cancellation``).
CANCELLATION = "cancellation"
#: Capability flag: the backend keeps the worker registry (``save_worker`` and the rest).
WORKERS = "workers"
#: Capability flag: the backend deletes finished runs with their data (``delete_runs``).
RETENTION = "retention"
#: Capability flag: the backend keeps runs' signal inboxes (``send_signal``, ``list_signals``).
SIGNALS = "signals"
#: Capability flag: the backend keeps flow-control gates (``get_gate``, ``save_gate``).
FLOW_CONTROL = "flow_control"

#: The optional method groups; a backend has a group's flag when it overrides every
#: method of the group (see :meth:`StorageBackend.__init_subclass__`).
OPTIONAL_GROUPS: Mapping[str, tuple[str, ...]] = {
    SCHEDULES: (
        "save_schedule",
        "get_schedule",
        "list_schedules",
        "list_due_schedules",
        "delete_schedule",
    ),
    HOOKS: ("save_hook", "get_hook", "list_hooks", "update_hook"),
    CANCELLATION: ("request_cancellation",),
    WORKERS: ("save_worker", "list_workers", "delete_worker"),
    RETENTION: ("delete_runs",),
    SIGNALS: ("send_signal", "list_signals"),
    FLOW_CONTROL: ("get_gate", "save_gate"),
}


class StorageBackend(ABC):
    """Async storage of workflow runs and their event logs.

    Attributes:
        capabilities: feature flags tests and callers check instead of ``isinstance``
            or probing for ``NotImplementedError``:

            * ``"cross_process"``: several processes may share this storage safely;
            * ``"persistent"``: data survives the process;
            * ``"schedules"``: the schedule methods work (``save_schedule``,
              ``get_schedule``, ``list_schedules``, ``list_due_schedules``,
              ``delete_schedule``);
            * ``"hooks"``: the hook methods work (``save_hook``, ``get_hook``,
              ``list_hooks``, ``update_hook``);
            * ``"cancellation"``: ``request_cancellation`` works;
            * ``"workers"``: the worker registry works (``save_worker``,
              ``list_workers``, ``delete_worker``);
            * ``"retention"``: finished runs can be deleted with everything stored for
              them (``delete_runs``; :func:`pyworkflow.purge_runs` finds them).
            * ``"signals"``: runs have signal inboxes (``send_signal``,
              ``list_signals``).
            * ``"flow_control"``: concurrency and rate limits can be kept
              (``get_gate``, ``save_gate``).

            A subclass declares the first two itself. The others are derived when
            the class is created: a class that overrides every method of a group has the
            group's flag, one that does not lacks it (whatever it declares), so a
            third-party backend written before the flags existed keeps working. A
            backend that overrides a group but cannot serve it in some configuration
            removes the flag from its instance's ``capabilities``.
        server_payload_limit: the largest value (bytes of UTF-8 JSON text) the server
            accepts in one stored field, or ``None`` when only the ``max_payload_bytes``
            option applies. MySQL sets it from ``max_allowed_packet`` when it connects.

    Every value a backend stores (run payloads, event data, hook payloads, schedule
    data) is checked against :attr:`payload_limit` before the first write (see
    :mod:`pyworkflow.storage.payloads`): a larger one raises
    :class:`~pyworkflow.core.exceptions.PayloadTooLargeError` and nothing is written.
    """

    capabilities: frozenset[str] = frozenset()
    server_payload_limit: PayloadLimit | None = None

    @property
    def payload_limit(self) -> PayloadLimit:
        """The limit values stored here must fit: ``max_payload_bytes``, or the server's
        own limit when that is lower."""
        return effective_limit(self.server_payload_limit)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        derived = {
            flag
            for flag, methods in OPTIONAL_GROUPS.items()
            if all(getattr(cls, name) is not getattr(StorageBackend, name) for name in methods)
        }
        cls.capabilities = frozenset(cls.capabilities).difference(OPTIONAL_GROUPS) | derived

    async def connect(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Open connections and create schema; idempotent. Called lazily by the engine."""

    def read_only(self) -> StorageBackend:
        """A view of the same data that never writes, for readers that promise to leave
        storage untouched (``pyworkflow verify``). By default this backend itself: its
        reads write nothing. A file database overrides it (SQLite: a ``mode=ro`` open,
        which neither migrates nor checkpoints)."""
        return self

    async def close(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release connections; the backend may be connected again afterwards."""

    # -- runs -----------------------------------------------------------------------------

    @abstractmethod
    async def create_run(self, run: WorkflowRun, events: Sequence[Event] = ()) -> WorkflowRun:
        """Store a new run together with its first events, atomically.

        ``events`` must carry sequences ``1..n`` and ``run.last_sequence`` must equal ``n``.

        Returns the stored run. If ``run.idempotency_key`` is already used by another run,
        nothing is written and that existing run is returned instead (callers compare
        ``run_id`` to tell). This holds under concurrent calls: exactly one run per key.

        Raises:
            RunAlreadyExistsError: a run with ``run.run_id`` already exists.
        """

    @abstractmethod
    async def get_run(self, run_id: str) -> WorkflowRun | None:
        """The run with this id, or ``None``."""

    async def get_runs(self, run_ids: Sequence[str]) -> list[WorkflowRun]:
        """The stored runs among ``run_ids``, in no particular order; unknown ids are
        left out. Backends with a bulk read (one ``IN`` query) override this default,
        which reads them one by one, concurrently."""
        found = await asyncio.gather(*(self.get_run(run_id) for run_id in dict.fromkeys(run_ids)))
        return [run for run in found if run is not None]

    @abstractmethod
    async def get_run_by_idempotency_key(self, key: str) -> WorkflowRun | None:
        """The run started with this idempotency key, or ``None``."""

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow_name: str | None = None,
        tag: str | None = None,
        parent_run_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        cancel_requested: bool | None = None,
        run_id_prefix: str | None = None,
        limit: int = 100,
        offset: int = 0,
        cursor: str | None = None,
    ) -> list[WorkflowRun]:
        """Runs matching every given filter, newest ``created_at`` first (ties: ``run_id``
        descending).

        ``created_after`` is inclusive, ``created_before`` exclusive.
        ``cancel_requested=True`` keeps only runs whose cancellation was requested
        (``cancel_requested_at`` set, see :meth:`request_cancellation`), ``False`` only
        the others; ``None`` does not filter. Together with ``status=SUSPENDED`` it is
        the query crash recovery asks on every pass, so backends answer it from an index
        (see docs/storage.md for which backends scan instead). ``run_id_prefix`` keeps
        runs whose id starts with it (the dashboard's search box). For stable paging
        pass ``cursor=run_cursor(last_run_of_previous_page)``: the page then holds only
        runs ordered after that run, unaffected by runs created meanwhile.
        """
        return await self.query_runs(
            RunQuery(
                status=status,
                workflow_name=workflow_name,
                tag=tag,
                parent_run_id=parent_run_id,
                created_after=created_after,
                created_before=created_before,
                cancel_requested=cancel_requested,
                run_id_prefix=run_id_prefix,
                limit=limit,
                offset=offset,
                cursor=cursor,
            )
        )

    @abstractmethod
    async def query_runs(self, query: RunQuery) -> list[WorkflowRun]:
        """:meth:`list_runs` with its filters in one object (what backends implement)."""

    async def get_children(
        self, run_id: str, *, limit: int = 1000, cursor: str | None = None
    ) -> list[WorkflowRun]:
        """The child runs ``run_id`` started (``start_child_workflow``), newest first, as
        :meth:`list_runs` orders them; an unknown or childless run has none.

        Built on the ``parent_run_id`` filter of :meth:`list_runs`, which the server
        backends answer from an index (SQL ``runs_parent_created_at``, the Redis parent
        set, the DynamoDB parent index), so a backend gets it without writing anything.
        Page with ``cursor=run_cursor(last_child_of_previous_page)``.
        """
        return await self.list_runs(parent_run_id=run_id, limit=limit, cursor=cursor)

    async def workflow_names(self, *, limit: int = 1000) -> list[str] | None:  # noqa: ARG002
        """The distinct workflow names of the stored runs, sorted, at most ``limit``; or
        ``None`` when this backend cannot list them without reading every run (the
        default: callers then look at the newest runs instead, as the dashboard does).

        The SQL backends answer from their ``(workflow_name, ...)`` index, one index
        probe per name, whatever the number of runs.
        """
        return None

    # -- events ---------------------------------------------------------------------------

    @abstractmethod
    async def append_events(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_last_sequence: int,
        update: RunUpdate | None = None,
    ) -> None:
        """Append ``events`` to the run's log and apply ``update`` to its projection.

        ``events`` carry consecutive sequences starting at ``expected_last_sequence + 1``;
        afterwards the run's ``last_sequence`` is the last of them. Events may be empty
        (a pure projection update, still fenced by ``expected_last_sequence``).

        Raises:
            RunNotFoundError: no such run (a ``WorkflowNotFoundError``, so older
                ``except WorkflowNotFoundError`` handlers still catch it).
            SequenceConflictError: the run's last sequence is not
                ``expected_last_sequence`` (another writer got there first); nothing is
                written.
        """

    @abstractmethod
    async def get_events(self, run_id: str, *, after_sequence: int = 0) -> list[Event]:
        """The run's events with ``sequence > after_sequence``, in sequence order.

        An unknown run returns ``[]``.
        """

    # -- timers and leases ----------------------------------------------------------------

    @abstractmethod
    async def list_due_runs(self, now: datetime, limit: int = 100) -> list[str]:
        """Ids of ``suspended`` runs whose ``wake_at <= now``, earliest first."""

    async def claim_due_runs(
        self, now: datetime, owner: str, expires_at: datetime, limit: int = 100
    ) -> list[str]:
        """Lease up to ``limit`` due runs (as :meth:`list_due_runs`) to ``owner``; return
        the ids it got, earliest ``wake_at`` first.

        A run is claimed by at most one caller while the lease lasts, however many
        schedulers claim at once. Backends with a native atomic "claim N" (``FOR UPDATE
        SKIP LOCKED``, a Lua script) override this default, which leases one by one.
        """
        claimed = []
        for run_id in await self.list_due_runs(now, limit):
            if await self.acquire_lease(run_id, owner, expires_at, now):
                claimed.append(run_id)
        return claimed

    async def count_due_runs(self, now: datetime, *, limit: int = 10_000) -> dict[str, int]:
        """How many runs are due (as :meth:`list_due_runs`: woken by their time but not
        yet taken by a worker), per workflow name, counting at most ``limit`` runs (the
        earliest due). Backends that can count in one query override this default, which
        reads the due runs."""
        counts: dict[str, int] = {}
        due = await self.list_due_runs(now, limit)
        for start in range(0, len(due), 500):
            for run in await self.get_runs(due[start : start + 500]):
                counts[run.workflow_name] = counts.get(run.workflow_name, 0) + 1
        return counts

    @abstractmethod
    async def next_wake_time(self) -> datetime | None:
        """The earliest ``wake_at`` of any ``suspended`` run, or ``None``."""

    @abstractmethod
    async def list_stale_runs(self, now: datetime, limit: int = 100) -> list[WorkflowRun]:
        """Non-terminal, non-suspended runs whose lease expired (``lease_expires_at < now``)
        or was never taken: candidates for crash recovery."""

    @abstractmethod
    async def acquire_lease(
        self,
        run_id: str,
        owner: str,
        expires_at: datetime,
        now: datetime,
        *,
        steal_from: str | None = None,
    ) -> bool:
        """Atomically make ``owner`` the run's lease holder until ``expires_at``.

        Succeeds (``True``) when the run has no lease, its lease expired before ``now``,
        ``owner`` already holds it, or the holder is ``steal_from`` (a holder the caller
        knows is dead). Two concurrent callers never both succeed. A terminal or unknown
        run returns ``False``.
        """

    @abstractmethod
    async def renew_leases(self, run_ids: Sequence[str], owner: str, expires_at: datetime) -> None:
        """Extend the leases ``owner`` still holds among ``run_ids``; others are untouched."""

    @abstractmethod
    async def release_lease(self, run_id: str, owner: str) -> None:
        """Drop ``owner``'s lease on the run, if it still holds it."""

    # -- schedules ---------------------------------------------------------------------

    async def save_schedule(
        self, schedule: ScheduleRecord, *, expected_version: int | None
    ) -> bool:
        """Insert or compare-and-set update a schedule.

        ``expected_version=None``: insert; returns ``False`` (nothing written) if a
        schedule with this id exists. Otherwise: replace the stored schedule only if its
        version equals ``expected_version``; returns ``False`` (nothing written) if it
        does not or the schedule is gone. On success the stored version is 1 (insert)
        or ``expected_version + 1``, and ``schedule.version`` is set to it.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement this yet")

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        """The schedule with this id, or ``None``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement this yet")

    async def list_schedules(
        self,
        *,
        workflow_name: str | None = None,
        status: ScheduleStatus | None = None,
        limit: int = 1000,
    ) -> list[ScheduleRecord]:
        """Schedules matching the filters, ordered by ``schedule_id``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement this yet")

    async def list_due_schedules(self, now: datetime, limit: int = 100) -> list[ScheduleRecord]:
        """``active`` schedules with ``next_run_time <= now``, earliest first."""
        raise NotImplementedError(f"{type(self).__name__} does not implement this yet")

    async def delete_schedule(self, schedule_id: str) -> bool:
        """Remove a schedule; ``False`` if there was none."""
        raise NotImplementedError(f"{type(self).__name__} does not implement this yet")

    # -- signals from outside a run: cancellation and hooks --------------------------------

    async def request_cancellation(self, run_id: str, reason: str | None, now: datetime) -> bool:
        """Mark a non-terminal run as asked to cancel (``cancel_requested_at = now``,
        ``cancel_reason = reason``); a second request keeps the first time and reason.

        Unfenced: it neither needs the run's lease nor changes ``last_sequence``, so it
        never conflicts with the run's own writer. Returns ``False`` for a terminal or
        unknown run (nothing written).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement this yet")

    async def save_hook(self, hook: HookRecord) -> HookRecord:
        """Store a new hook and return it; if the run already has a hook with this
        ``hook_id``, store nothing and return that one (replay after a crash)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement this yet")

    async def get_hook(self, token_hash: str) -> HookRecord | None:
        """The hook with this token hash, or ``None``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement this yet")

    async def list_hooks(
        self,
        *,
        run_id: str | None = None,
        status: HookStatus | None = None,
        limit: int = 100,
        offset: int = 0,
        cursor: str | None = None,
    ) -> list[HookRecord]:
        """Hooks matching the filters, newest ``created_at`` first (ties: ``token_hash``
        descending). For stable paging that costs the same on every page pass
        ``cursor=hook_cursor(last_hook_of_previous_page)``: the page then holds only hooks
        ordered after that one (``offset`` still skips that many more).

        Raises:
            ValueError: ``cursor`` was not made by :func:`hook_cursor`.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement this yet")

    async def update_hook(
        self,
        token_hash: str,
        *,
        expected: HookStatus,
        status: HookStatus,
        payload: str | None = None,
        received_at: datetime | None = None,
    ) -> bool:
        """Atomically move the hook from ``expected`` to ``status`` (setting ``payload`` and
        ``received_at`` when given). Returns ``False`` and writes nothing if the hook is
        unknown or not in ``expected`` status: of two concurrent deliveries exactly one
        wins."""
        raise NotImplementedError(f"{type(self).__name__} does not implement this yet")

    # -- signal inboxes -------------------------------------------------------------------

    async def send_signal(
        self, run_id: str, name: str, payload: str, *, signal_id: str, now: datetime
    ) -> SignalRecord | None:
        """Append a signal to the run's inbox and return it as stored.

        Returns ``None`` and writes nothing for a terminal or unknown run. When the
        run's inbox already holds a signal with ``signal_id``, nothing is written and
        that signal is returned (a repeated send). ``payload`` is JSON text, checked
        against the payload limit before anything is written.

        Unfenced, like :meth:`request_cancellation`: it neither needs the run's lease
        nor changes ``last_sequence``, ``status`` or ``updated_at``. What it must hold:

        * **Order.** The new signal's ``sequence`` is one more than the run's previous
          signal (the first is 1), and a reader of :meth:`list_signals` that has seen
          sequence ``n`` never later finds a new signal at or below ``n``: sequences
          are given in the order signals become visible (concurrent senders to one run
          serialize, e.g. on the run's row lock).
        * **Wake-up.** If the run is ``suspended``, its ``wake_at`` becomes ``now``
          when it is unset or later, so the run is due and its timers bring it back to
          take the signal. Against the run's own writer it is atomic: a writer that
          stores ``status=suspended`` and then reads the inbox either sees the signal
          or is woken by it (the send and the suspension are ordered on the run).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement this yet")

    async def list_signals(
        self, run_id: str, *, after_sequence: int = 0, limit: int = 1000
    ) -> list[SignalRecord]:
        """The run's signals with ``sequence > after_sequence``, in sequence order, at most
        ``limit``; an unknown run has none."""
        raise NotImplementedError(f"{type(self).__name__} does not implement this yet")

    # -- flow-control gates -----------------------------------------------------------------

    async def get_gate(self, key: str) -> GateRecord | None:
        """The gate stored under ``key``, or ``None``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement this yet")

    async def save_gate(self, gate: GateRecord, *, expected_version: int | None) -> bool:
        """Insert or compare-and-set update a gate, as :meth:`save_schedule` does a
        schedule.

        ``expected_version=None``: insert; returns ``False`` (nothing written) if a gate
        with this key exists. Otherwise: replace the stored gate only if its version
        equals ``expected_version``; returns ``False`` (nothing written) if it does not
        or there is none. On success the stored version is 1 (insert) or
        ``expected_version + 1``, and ``gate.version`` is set to it. Of two concurrent
        saves from one version exactly one succeeds. ``key`` is at most 255 characters;
        ``data`` is checked against the payload limit before anything is written.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement this yet")

    # -- the worker registry ---------------------------------------------------------------

    async def save_worker(self, worker: WorkerRecord) -> None:
        """Insert the worker's record, or replace the one stored under its ``worker_id``
        (every field, ``last_beat`` included). Unfenced and idempotent: a worker writes
        only its own record."""
        raise NotImplementedError(f"{type(self).__name__} does not implement this yet")

    async def list_workers(
        self, *, limit: int = 1000, after: str | None = None
    ) -> list[WorkerRecord]:
        """Stored worker records, live and stale, ordered by ``worker_id``; with
        ``after``, only those whose ``worker_id`` sorts after it (the cursor of the next
        page: the last id of the previous one). Readers that need every record (the
        recovery policy) page until a short page, so no registry size is too large."""
        raise NotImplementedError(f"{type(self).__name__} does not implement this yet")

    async def delete_worker(self, worker_id: str) -> bool:
        """Remove a worker's record; ``False`` if there was none."""
        raise NotImplementedError(f"{type(self).__name__} does not implement this yet")

    # -- retention -------------------------------------------------------------------------

    async def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete the *terminal* runs among ``run_ids`` with everything stored for them;
        return how many were deleted.

        Gone with a run: its record, its event log, its hooks (``get_hook`` of their
        token hashes answers ``None``), its signal inbox, its tags and every index entry
        (no listing returns it), and its idempotency key (a new run may use the key again). An id
        of a run that is not terminal (:attr:`RunStatus.is_terminal`: ``interrupted``
        runs are recoverable, so kept) or does not exist is skipped, checked at the
        moment of deletion, so a caller's stale view can never delete a live run. Runs
        that merely point at a deleted one are left alone: its children keep their
        ``parent_run_id`` and a continue-as-new successor its ``continued_from_run_id``.

        Atomicity: a run disappears as a whole or is still fully readable, and a
        repeated call finishes an interrupted one (a backend that needs several writes
        per run removes the run record last, so an interrupted deletion leaves the run
        findable and terminal, and the next call removes the rest). The SQL backends
        delete the whole batch in one transaction. Finding candidates is the caller's
        part (:func:`pyworkflow.purge_runs` pages :meth:`list_runs` by status, newest
        first, and passes batches of a few hundred ids); keep batches that size, so one
        call neither holds locks long nor builds a huge request.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement this yet")


def require_capability(storage: StorageBackend, capability: str) -> None:
    """Check that ``storage`` has ``capability`` (one of the flags of
    :attr:`StorageBackend.capabilities`) before a public entry point relies on it.

    Raises:
        ConfigurationError: it does not (``"storage FooBackend does not support
            schedules"``).
    """
    if capability not in storage.capabilities:
        raise ConfigurationError(
            f"storage {type(storage).__name__} does not support {capability}",
            capability=capability,
        )
