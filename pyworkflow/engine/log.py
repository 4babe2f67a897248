"""A run's event log as one execution writes it: buffer, fenced flush, limits.

Every event an execution writes goes through one :class:`RunLog`: :meth:`RunLog.record`
gives it the next sequence number and buffers it, :meth:`RunLog.flush` writes the buffer
and the run's projection changes in one append fenced on the last committed sequence.
A write whose caller was cancelled mid-flight may or may not have landed; the next flush
reconciles it against storage first. Event-count limits are checked here, in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime
from typing import Any

from pyworkflow.core.exceptions import (
    EventLimitExceededError,
    HistoryCorruptedError,
    RunNotFoundError,
    SequenceConflictError,
    SerializationError,
    StorageError,
    StorageUnavailableError,
)
from pyworkflow.observability import lifecycle
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.payloads import PayloadLimit, check_size, strict_json
from pyworkflow.storage.schemas import Event, EventType, RunUpdate, utcnow
from pyworkflow.utils.log import logger


class OwnershipLost(BaseException):  # noqa: N818 - control flow, not an error
    """Another writer appended to this run first; this execution must stop writing."""


class RunGone(OwnershipLost):
    """The run was deleted while this execution wrote to it; nothing more is written."""


class StorageFault(OwnershipLost):
    """Storage failed a call of this execution (the server is gone for a moment, the
    connection dropped). Whether a write landed is unknown, so the execution stops; the
    run continues from what storage holds once storage answers, as after a crash."""


def is_storage_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is an infrastructure failure of storage, not an answer of it (a
    conflict, an unknown run, a duplicate id are answers)."""
    if isinstance(exc, StorageUnavailableError | OSError | TimeoutError):
        return True
    answers = SequenceConflictError | HistoryCorruptedError  # retrying changes nothing
    return isinstance(exc, StorageError) and not isinstance(exc, answers)


def check_storable(data: dict[str, Any], what: str, limit: PayloadLimit) -> None:
    """Refuse event ``data`` storage would refuse, before it is buffered.

    A value is checked where the operation that produced it can fail with it (a step
    result, a step context): found only by the flush, it would be refused with every
    event buffered beside it, those of other operations too.

    Raises:
        SerializationError: ``data`` holds ``NaN`` or an infinity (the message names
            ``what`` and where in ``data``).
        PayloadTooLargeError: its JSON text is over ``limit`` (``field`` is ``what``;
            the value is not stored, what it fails is stored instead).
    """
    check_size(strict_json(data, what), what, limit)


class EventLimits:
    """Per-run event-count limits (counted in memory, never by re-reading the log)."""

    __slots__ = ("soft", "hard", "interval")

    def __init__(self, soft: int, hard: int, interval: int) -> None:
        self.soft, self.hard, self.interval = soft, hard, max(1, interval)


class RunLog:
    """The buffered, fenced writer of one run's events (one per execution).

    Attributes:
        committed: the last sequence known to be stored.
        stored: the run's whole stored log, kept in step with every flush, or ``None``
            when it is not tracked or no longer known to match storage.
        failure: why this log stopped being writable (another writer, the run deleted,
            a storage fault), or ``None``.
    """

    __slots__ = (
        "run_id",
        "workflow_name",
        "due_at",
        "committed",
        "stored",
        "_storage",
        "_limits",
        "_next_seq",
        "_pending",
        "_changes",
        "_lock",
        "_unsure",
        "failure",
    )

    def __init__(
        self,
        run_id: str,
        storage: StorageBackend,
        *,
        last_sequence: int,
        limits: EventLimits,
        stored: list[Event] | None = None,
        workflow_name: str = "",
        due_at: datetime | None = None,
    ) -> None:
        self.run_id = run_id
        self.workflow_name = workflow_name
        # The wake-up time that woke this execution, until its workflow.resumed commits.
        self.due_at = due_at
        self.committed = last_sequence
        self.stored = stored
        self._storage = storage
        self._limits = limits
        self._next_seq = last_sequence + 1
        self._pending: list[Event] = []
        self._changes: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self._unsure: tuple[list[Event], dict[str, Any]] | None = None
        self.failure: OwnershipLost | None = None  # why flushes stopped, once they did

    def record(self, type_: EventType, data: dict[str, Any], *, force: bool = False) -> Event:
        """Buffer an event; it is written by the next :meth:`flush`.

        Raises:
            EventLimitExceededError: the run reached its hard event limit (not checked
                with ``force``: the events that end or suspend a run are always written).
        """
        seq = self._next_seq
        if not force:
            self._check_limits(seq)
        self._next_seq = seq + 1
        event = Event(run_id=self.run_id, type=type_, data=data, sequence=seq)
        self._pending.append(event)
        return event

    def _check_limits(self, seq: int) -> None:
        limits = self._limits
        if seq > limits.hard:
            raise EventLimitExceededError(
                f"run {self.run_id!r} reached the event hard limit ({limits.hard} events); "
                "split the work across several runs or raise event_hard_limit"
            )
        if seq >= limits.soft and (seq - limits.soft) % limits.interval == 0:
            logger.warning(
                "run {} has {} events (soft limit {}, hard limit {})",
                self.run_id,
                seq,
                limits.soft,
                limits.hard,
            )

    def set_changes(self, **changes: Any) -> None:
        """Projection changes to write with the next flush."""
        self._changes.update(changes)

    async def flush(self, **changes: Any) -> None:
        """Write buffered events and projection changes in one fenced append.

        Raises:
            OwnershipLost: another writer appended first; nothing of this batch is stored.
            RunGone: the run no longer exists (an ``OwnershipLost``).
            StorageFault: storage failed the write (an ``OwnershipLost``); whether it
                landed is unknown.
            SerializationError: storage refused a value of the batch before writing
                anything (not strict JSON, or a ``PayloadTooLargeError``); the batch is
                dropped and the sequence rewound, so the failure itself can be recorded.
                Values an operation produces are checked before they are buffered
                (:func:`check_storable`), so this drops no other operation's events.
        """
        self._changes.update(changes)
        async with self._lock:
            if self._unsure is not None:
                await self._guarded(self._reconcile(), "reading")
            if not self._pending and not self._changes:
                return
            batch, self._pending = self._pending, []
            update, self._changes = self._changes, {}
            update["updated_at"] = utcnow()
            append = self._storage.append_events(
                self.run_id, batch, expected_last_sequence=self.committed, update=RunUpdate(update)
            )
            try:
                await self._guarded(append, "storing events of")
            except SerializationError:
                self._rewind()
                raise
            except asyncio.CancelledError:
                # Cancelled mid-write (a user's wait_for around a step, the max_duration
                # timeout): the write may still have landed. The next flush finds out.
                self._unsure = (batch, update)
                self.stored = None
                raise
            except BaseException:
                self.stored = None
                raise
            if batch:
                self._committed(batch)

    def _committed(self, batch: list[Event]) -> None:
        self.committed = batch[-1].sequence
        if self.stored is not None:
            self.stored.extend(batch)
        lifecycle.events_committed(self.run_id, self.workflow_name, batch, due_at=self.due_at)
        self.due_at = None

    async def _guarded(self, call: Awaitable[None], doing: str) -> None:
        """Await a storage call; turn storage's answers and faults into the reason this
        log stops being writable (remembered in :attr:`failure`)."""
        try:
            await call
        except SequenceConflictError as exc:
            raise self._lost(OwnershipLost(str(exc))) from exc
        except RunNotFoundError as exc:
            raise self._lost(RunGone(str(exc))) from exc
        except Exception as exc:
            if not is_storage_fault(exc):
                raise
            fault = StorageFault(f"{doing} run {self.run_id!r} failed: {exc}")
            raise self._lost(fault) from exc

    def _lost(self, reason: OwnershipLost) -> OwnershipLost:
        self.stored = None
        self.failure = reason
        return reason

    def _rewind(self) -> None:
        """Number events recorded after a refused batch from the last committed sequence
        (no gap: the batch was not written)."""
        seq = self.committed + 1
        for event in self._pending:
            event.sequence = seq
            seq += 1
        self._next_seq = seq

    async def _reconcile(self) -> None:
        """Settle a write whose caller was cancelled: adopt it if it landed, else redo it."""
        assert self._unsure is not None
        batch, update = self._unsure
        self._unsure = None
        run = await self._storage.get_run(self.run_id)
        stored = run.last_sequence if run is not None else -1
        if batch and stored == batch[-1].sequence:
            self._committed(batch)
        elif stored == self.committed:
            self._pending[:0] = batch
            self._changes = {**update, **self._changes}
        else:
            raise self._lost(OwnershipLost(f"run {self.run_id!r} was written by another process"))
