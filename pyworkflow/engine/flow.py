"""Flow control: concurrency limits and start rate limits, kept in storage so they hold
across every process and worker sharing it.

Concurrency (``@workflow(concurrency_limit=N, concurrency_key=fn)``)
    One gate per key holds the runs that have a slot (``holders``) and, in the order
    they asked, the runs waiting for one (``waiting``). An execution asks for a slot
    when it begins (a start, a resume after a sleep, a hook or a signal) and gives it
    back when it ends in a suspension or an end, so a sleeping or waiting run holds
    none. A holder counts only while its lease is held (by a process or a dispatch round
    of step workers) and has not expired: a crashed holder's slot frees when its lease
    runs out, and a holder that suspended without giving its slot back (its process died
    in between) counts for nothing. A waiter counts while its run is ``pending`` or
    being executed (on its way to waiting).
    A run is let in when fewer than ``N`` holders are live and fewer than the free
    slots wait ahead of it: first come, first served. Every change is a compare-and-set
    of the gate (:meth:`~pyworkflow.storage.base.StorageBackend.save_gate`), which is
    what makes two processes unable to give away one slot twice.

    A refused run waits ``pending``, leased to :data:`QUEUED_LIMIT` (a delivery, not an
    execution: recovery never counts it as a crash). Whoever frees a slot names the
    runs whose turn came (:attr:`Admission.handoff`), and the runtime resumes them at
    once; if that hand-off is lost with its process, the queue lease expires after
    ``queue_recheck_interval`` and recovery looks at the run again.

Rate (``@workflow(rate_limit="100/m")``)
    One gate per workflow holds the start times of its last ``count`` starts; a new
    start gets the earliest time at which at most ``count`` starts fall in any
    ``period`` (now, or later: it is delayed, never refused). A delayed run waits
    ``pending`` until that time (its ``wake_at``: the reservation, so it is not counted
    twice), leased to :data:`QUEUED_RATE`; the runtime resumes it then. Only a run's
    first execution is rated.

A run asked to cancel is let in at once (its cancellation must not wait for a slot).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pyworkflow.core.exceptions import DefinitionError, StorageUnavailableError
from pyworkflow.core.workflow import WorkflowDefinition
from pyworkflow.engine.owners import is_delivery
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import GateRecord, RunStatus, WorkflowRun
from pyworkflow.utils.log import logger

#: Lease owner of a run waiting for a concurrency slot.
QUEUED_LIMIT = "queued:limit"
#: Lease owner of a run whose start a rate limit delays.
QUEUED_RATE = "queued:rate"
_FLOW_OWNERS = frozenset({QUEUED_LIMIT, QUEUED_RATE})

_MAX_KEY = 255
# Compare-and-set attempts before a gate counts as unreachable (storage fault): each
# failed attempt means another process changed the gate meanwhile.
_CAS_ATTEMPTS = 100


def is_flow_queued(owner: str | None) -> bool:
    """Whether a run's lease owner says it waits at a concurrency or rate gate (any
    process may take such a run to let it in)."""
    return owner in _FLOW_OWNERS


def queued_for(run: WorkflowRun) -> str | None:
    """What a ``pending`` run waits for at a gate, for listings: ``"concurrency limit"``,
    ``"rate limit"``, or ``None`` (not waiting at a gate)."""
    if run.lease_owner == QUEUED_LIMIT:
        return "concurrency limit"
    if run.lease_owner == QUEUED_RATE:
        return "rate limit"
    return None


@dataclass(slots=True)
class Admission:
    """Whether an execution may go on.

    Attributes:
        admitted: go on (with a slot, if the workflow has a limit).
        gate: the concurrency gate holding the slot (give it back with :func:`release`).
        waits_at: the concurrency gate the refused run waits at (see :func:`recheck`).
        queued_until: refused by the rate limit: try again at this time. ``None`` with
            ``admitted`` false: waiting for a slot (a holder hands it on).
        rated_at: the start time the rate limit gave the run (kept while it waits for
            a slot, so its start is not rated twice).
        handoff: runs whose turn came (resume them).
    """

    admitted: bool
    gate: str | None = None
    waits_at: str | None = None
    queued_until: datetime | None = None
    rated_at: datetime | None = None
    handoff: list[str] = field(default_factory=list)


def key_of(
    definition: WorkflowDefinition, args: Sequence[Any], kwargs: dict[str, Any]
) -> str | None:
    """The concurrency key of a run with these arguments: ``concurrency_key``'s answer,
    or ``None`` (no key function: one limit for the whole workflow).

    Raises:
        DefinitionError: the key function failed or answered something that is not text
            (the message names the workflow).
    """
    keyer = definition.concurrency_key
    if keyer is None or definition.concurrency_limit is None:
        return None
    owner = f"workflow {definition.name!r}"
    try:
        key = keyer(*args, **kwargs)
    except Exception as exc:
        raise DefinitionError(f"{owner}: concurrency_key failed: {exc!r}") from exc
    if isinstance(key, int | float) and not isinstance(key, bool):
        key = str(key)
    if not isinstance(key, str):
        raise DefinitionError(f"{owner}: concurrency_key must return a str, got {key!r}")
    return key


def _stored_run_key(
    run: WorkflowRun, definition: WorkflowDefinition, args: Sequence[Any], kwargs: dict[str, Any]
) -> str | None:
    """The key of a run stored without one (started before its workflow had a key
    function, or a retry): from its arguments, else the workflow-wide limit (a run
    already stored must not fail because the key function does not fit its arguments)."""
    try:
        return key_of(definition, args, kwargs)
    except DefinitionError as exc:
        logger.warning("run {}: {}; counted under the workflow-wide limit", run.run_id, exc)
        return None


def gate_key(workflow_name: str, key: str | None) -> str:
    """The storage key of a workflow's concurrency gate."""
    return _storage_key("concurrency", workflow_name if key is None else f"{workflow_name}:{key}")


def rate_key(workflow_name: str) -> str:
    """The storage key of a workflow's rate gate."""
    return _storage_key("rate", workflow_name)


def _storage_key(kind: str, name: str) -> str:
    # Readable where it fits the 255 characters storage keeps, hashed where it does not.
    text = f"{kind}:{name}"
    if len(text) <= _MAX_KEY:
        return text
    return f"{kind}:#{hashlib.sha256(name.encode()).hexdigest()}"


# -- admission ---------------------------------------------------------------------------


async def admit(
    storage: StorageBackend,
    run: WorkflowRun,
    definition: WorkflowDefinition,
    history_key: str | None,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    now: datetime,
) -> Admission:
    """Whether the execution of ``run`` that is beginning may go on (see the module
    docstring). The caller holds the run's lease; nothing about the run is written here.

    Raises:
        StorageUnavailableError: the gate kept changing under us (or storage failed).
    """
    if definition.rate is None and definition.concurrency_limit is None:
        return Admission(admitted=True)
    if run.cancel_requested_at is not None:
        return Admission(admitted=True)  # its cancellation does not wait for a slot
    rated_at = None
    if definition.rate is not None and run.last_sequence <= 1:
        rated_at = run.wake_at if run.status == RunStatus.PENDING else None
        if rated_at is None:  # not yet rated: take a start time
            rated_at = await _reserve_start(storage, definition, now)
        if rated_at > now:
            return Admission(admitted=False, queued_until=rated_at, rated_at=rated_at)
    if definition.concurrency_limit is None:
        return Admission(admitted=True)
    key = history_key if history_key is not None else _stored_run_key(run, definition, args, kwargs)
    gate = gate_key(definition.name, key)
    granted, handoff = await _change(
        storage,
        gate,
        run.run_id,
        now,
        limit=definition.concurrency_limit,
        created_at=run.created_at.timestamp(),
    )
    if granted:
        return Admission(admitted=True, gate=gate, handoff=handoff)
    return Admission(admitted=False, waits_at=gate, rated_at=rated_at, handoff=handoff)


async def release(storage: StorageBackend, gate: str, run_id: str, now: datetime) -> list[str]:
    """Give back ``run_id``'s slot; return the runs whose turn came. Never raises: a slot
    that could not be given back counts for nothing once its run stops holding its
    lease, and the next change of the gate finds that out."""
    try:
        _, handoff = await _change(storage, gate, run_id, now, mode="leave")
        return handoff
    except Exception as exc:  # noqa: BLE001 - see the docstring
        logger.warning("run {}: giving back its slot of {} failed: {}", run_id, gate, exc)
        return []


@dataclass(slots=True)
class _Slots:
    """A concurrency gate's data: ``{"limit", "holders", "waiting"}`` (read tolerantly:
    a gate that cannot be read starts empty, which frees its slots, never blocks)."""

    limit: int
    holders: list[str]
    waiting: list[str]  # in start order (created_at, then id)
    started: dict[str, float]  # waiter -> its run's created_at (epoch seconds)

    @classmethod
    def read(cls, gate: GateRecord | None, limit: int | None) -> _Slots:
        data: Any = {}
        if gate is not None:
            try:
                data = json.loads(gate.data)
            except ValueError:
                logger.warning("flow-control gate {} holds unreadable data; reset", gate.key)
        if not isinstance(data, dict):
            data = {}
        if limit is None:
            stored = data.get("limit")
            limit = stored if isinstance(stored, int) and stored > 0 else 1
        started: dict[str, float] = {}
        for entry in data.get("waiting") or ():
            if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str):
                when = entry[1]
                started[entry[0]] = float(when) if isinstance(when, int | float) else 0.0
        return cls(limit, _ids(data.get("holders")), list(started), started)

    def wait(self, run_id: str, created_at: float) -> None:
        """Queue ``run_id`` by its start time: first started, first let in."""
        if run_id not in self.waiting:
            self.started[run_id] = created_at
            self.waiting.append(run_id)
            self.waiting.sort(key=lambda w: (self.started.get(w, 0.0), w))

    def dump(self) -> str:
        waiting = [[w, self.started.get(w, 0.0)] for w in self.waiting]
        return json.dumps({"limit": self.limit, "holders": self.holders, "waiting": waiting})


def _ids(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


async def recheck(storage: StorageBackend, gate: str, run_id: str, now: datetime) -> list[str]:
    """The waiters whose turn came, looked at again by a run that has just stored itself
    as waiting: a slot freed between its refusal and that write was handed to a run that
    was not yet waiting (the hand-off could not take it), so the run looks once more and
    includes itself if its turn came. Never raises (the queue recheck is the fallback)."""
    try:
        _, handoff = await _change(storage, gate, run_id, now, mode="look")
        return handoff
    except Exception as exc:  # noqa: BLE001 - see the docstring
        logger.warning("run {}: looking at {} again failed: {}", run_id, gate, exc)
        return []


# Changes of one gate from one process (one event loop) take turns: compare-and-set
# keeps processes apart, but coroutines of one process colliding on a gate would only
# make each other retry (200 runs with a limit of 10 on SQLite: 4.9 s before, see
# docs/performance.md).
_turns: dict[tuple[int, int, str], asyncio.Lock] = {}


@contextlib.asynccontextmanager
async def _turn(storage: StorageBackend, gate: str) -> AsyncIterator[None]:
    key = (id(asyncio.get_running_loop()), id(storage), gate)
    lock = _turns.setdefault(key, asyncio.Lock())
    try:
        async with lock:
            yield
    finally:
        if not lock.locked() and not getattr(lock, "_waiters", None):
            _turns.pop(key, None)  # nobody holds or waits: no lock kept per gate ever used


async def _change(
    storage: StorageBackend,
    gate: str,
    run_id: str,
    now: datetime,
    *,
    limit: int | None = None,
    created_at: float = 0.0,
    mode: str = "ask",
) -> tuple[bool, list[str]]:
    """One compare-and-set change of a concurrency gate: ``run_id`` asks for a slot
    (``mode="ask"``, ``limit`` given), gives its slot back (``"leave"``) or only looks
    whose turn it is (``"look"``: ``run_id`` counts among them). Returns whether
    ``run_id`` holds a slot now, and the waiters whose turn came."""
    async with _turn(storage, gate):  # this process's changes of the gate take turns
        for attempt in range(_CAS_ATTEMPTS):
            stored = await storage.get_gate(gate)
            slots = _Slots.read(stored, limit)
            before = slots.dump()
            granted, handoff = await _decide(storage, slots, run_id, now, mode, created_at)
            data = slots.dump()
            if data == before:
                return granted, handoff
            record = GateRecord(key=gate, data=data, updated_at=now)
            expected = None if stored is None else stored.version
            if await storage.save_gate(record, expected_version=expected):
                return granted, handoff
            await _backoff(attempt)
    raise StorageUnavailableError(
        f"flow-control gate {gate!r} kept changing under this process ({_CAS_ATTEMPTS} tries)"
    )


async def _decide(
    storage: StorageBackend,
    slots: _Slots,
    run_id: str,
    now: datetime,
    mode: str,
    created_at: float,
) -> tuple[bool, list[str]]:
    """Apply one change to ``slots`` (see :func:`_change`), reading the runs it names to
    tell live holders and waiters from gone ones."""
    held = run_id in slots.holders
    slots.holders = await _live_holders(storage, slots.holders, run_id, now)
    granted = False
    if mode == "ask":
        free = slots.limit - len(slots.holders)
        granted = held or await _waiters_ahead(storage, slots, run_id, free, now) < free
        if granted:
            slots.holders.append(run_id)
            slots.waiting = [w for w in slots.waiting if w != run_id]
        else:
            slots.wait(run_id, created_at)
    free = slots.limit - len(slots.holders)
    if free <= 0 or not slots.waiting:
        return granted, []
    await _waiters_ahead(storage, slots, None, free, now)  # drops dead ones
    return granted, [w for w in slots.waiting[:free] if w != run_id or mode == "look"]


async def _backoff(attempt: int) -> None:
    # Another process changed the gate between our read and write: try again soon, at
    # a jittered moment so two busy processes do not keep colliding.
    await asyncio.sleep(random.uniform(0, 0.002 * min(attempt + 1, 20)))  # noqa: S311


async def _live_holders(
    storage: StorageBackend, holders: list[str], run_id: str, now: datetime
) -> list[str]:
    """The holders other than ``run_id`` that still hold their slot (see the module
    docstring), in their order."""
    others = [h for h in holders if h != run_id]
    if not others:
        return []
    runs = {r.run_id: r for r in await storage.get_runs(others)}
    return [h for h in others if h in runs and _holds(runs[h], now)]


def _waits(run: WorkflowRun, now: datetime) -> bool:
    """A waiter still waits while it is ``pending``, or while a process executes it (it
    is storing itself as waiting, or retrying after a storage fault: a new run is
    ``running`` until then). One that ended, or suspended after a cancellation let it
    in, no longer does."""
    return run.status == RunStatus.PENDING or _holds(run, now)


def _holds(run: WorkflowRun, now: datetime) -> bool:
    return (
        not run.status.is_terminal
        and run.lease_owner is not None
        and not is_delivery(run.lease_owner)
        and run.lease_expires_at is not None
        and run.lease_expires_at >= now
    )


async def _waiters_ahead(
    storage: StorageBackend, slots: _Slots, run_id: str | None, need: int, now: datetime
) -> int:
    """How many live waiters stand ahead of ``run_id`` (``None``: in the whole queue),
    counting no further than ``need``. Waiters that no longer wait (:func:`_waits`)
    are dropped from ``slots.waiting`` on the way, so a dead waiter never blocks the
    queue."""
    waiting = slots.waiting
    live = index = 0
    while live < need and index < len(waiting) and waiting[index] != run_id:
        end = index
        while end < len(waiting) and waiting[end] != run_id and end - index < 2 * need:
            end += 1
        chunk = waiting[index:end]
        runs = {r.run_id: r for r in await storage.get_runs(chunk)}
        kept = [w for w in chunk if w in runs and _waits(runs[w], now)]
        waiting[index:end] = kept
        live += len(kept)
        index += len(kept)
    return min(live, need)


@dataclass(frozen=True, slots=True)
class Place:
    """Where a waiting run stands at its concurrency gate (for ``runs why``)."""

    gate: str
    limit: int
    holders: list[str]
    ahead: list[str]


async def place_of(
    storage: StorageBackend, workflow_name: str, key: str | None, run_id: str
) -> Place | None:
    """The gate of ``workflow_name``/``key`` as stored, seen from ``run_id``; ``None``
    when there is no such gate. Reads only (holders as listed, dead ones included)."""
    gate = gate_key(workflow_name, key)
    stored = await storage.get_gate(gate)
    if stored is None:
        return None
    slots = _Slots.read(stored, None)
    waiting = slots.waiting
    ahead = waiting[: waiting.index(run_id)] if run_id in waiting else list(waiting)
    return Place(gate, slots.limit, slots.holders, ahead)


# -- rates --------------------------------------------------------------------------------


async def _reserve_start(
    storage: StorageBackend, definition: WorkflowDefinition, now: datetime
) -> datetime:
    """Take the earliest start time the workflow's rate allows from ``now`` on."""
    key = rate_key(definition.name)
    async with _turn(storage, key):
        return await _reserve_start_now(storage, definition, key, now)


async def _reserve_start_now(
    storage: StorageBackend, definition: WorkflowDefinition, key: str, now: datetime
) -> datetime:
    rate = definition.rate
    assert rate is not None
    period = timedelta(seconds=rate.period)
    for attempt in range(_CAS_ATTEMPTS):
        stored = await storage.get_gate(key)
        starts = _starts(stored)[-rate.count :]
        # The count-th start back must lie a whole period before this one.
        start_at = max(now, starts[0] + period) if len(starts) >= rate.count else now
        starts = sorted([*starts, start_at])[-rate.count :]
        data = {
            "count": rate.count,
            "period": rate.period,
            "starts": [s.timestamp() for s in starts],
        }
        record = GateRecord(key=key, data=json.dumps(data), updated_at=now)
        expected = None if stored is None else stored.version
        if await storage.save_gate(record, expected_version=expected):
            return start_at
        await _backoff(attempt)
    raise StorageUnavailableError(
        f"rate gate {key!r} kept changing under this process ({_CAS_ATTEMPTS} tries)"
    )


def _starts(gate: GateRecord | None) -> list[datetime]:
    if gate is None:
        return []
    try:
        data = json.loads(gate.data)
        values = data.get("starts") if isinstance(data, dict) else None
        return sorted(
            datetime.fromtimestamp(float(v), UTC)
            for v in values or ()
            if isinstance(v, int | float)
        )
    except (ValueError, TypeError, OverflowError):
        logger.warning("rate gate {} holds unreadable data; reset", gate.key)
        return []


__all__ = [
    "QUEUED_LIMIT",
    "QUEUED_RATE",
    "Admission",
    "Place",
    "admit",
    "gate_key",
    "is_flow_queued",
    "key_of",
    "place_of",
    "queued_for",
    "rate_key",
    "recheck",
    "release",
]
