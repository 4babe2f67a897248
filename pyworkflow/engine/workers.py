"""The worker registry: which processes are alive, and which runs they are working on.

A worker process (a Celery pool process) writes its :class:`WorkerRecord` to storage
every beat, from a thread of its own with its own storage connection: a step whose body
blocks the event loop for minutes does not stop the beats, and a worker that is killed,
frozen or cut off from storage stops them. The record lists the runs the process is on
at that moment (executing the workflow, or running one of its dispatched steps).

The recovery policy (:mod:`pyworkflow.engine.recovery`) reads the registry once per pass
as a :class:`Liveness` snapshot:

* a run a live worker lists is never taken over, however long its step and whatever
  its lease says: a message that waited in a queue or a lease renewal the event loop
  could not make is no sign of death;
* a run held by a worker whose beats stopped is taken over at once, on any host,
  without waiting for its lease to expire.

Runs held by processes that keep no record (the local runtime, earlier versions) are
judged by their leases as before. Records of stopped workers are kept for
:data:`RETENTION` after their last beat (an operator can see what died), then pruned.

A worker that stops on purpose (a graceful shutdown) first hands its runs back
(:func:`hand_back`), then deletes its record: nothing it held waits for a lease to
expire, and nothing counts as a recovery attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from pyworkflow.core.registry import list_workflows
from pyworkflow.engine.owners import OwnerKind, new_owner
from pyworkflow.storage.base import WORKERS, StorageBackend
from pyworkflow.storage.schemas import WorkerRecord, utcnow
from pyworkflow.utils.log import logger

# A stopped worker's record stays visible this long after its last beat.
RETENTION = timedelta(hours=1)


def is_alive(worker: WorkerRecord, now: datetime, ttl: float) -> bool:
    """Whether ``worker`` beat within the last ``ttl`` seconds (it beats every ttl/3)."""
    return worker.last_beat >= now - timedelta(seconds=ttl)


@dataclass(frozen=True, slots=True)
class Liveness:
    """One reading of the registry, as the recovery policy uses it.

    Attributes:
        held: runs some live worker listed at its last beat.
        dead: ids (lease owners) of registered workers whose beats stopped.
        orphaned: runs a dead worker listed at its last beat (it died on them).
        registry: whether a registry was read at all (without one, nobody is known to
            be alive or dead and leases alone decide).
    """

    held: frozenset[str] = frozenset()
    dead: frozenset[str] = frozenset()
    orphaned: frozenset[str] = frozenset()
    registry: bool = False

    @classmethod
    def of(cls, workers: Iterable[WorkerRecord], now: datetime, ttl: float) -> Liveness:
        held: set[str] = set()
        dead: set[str] = set()
        orphaned: set[str] = set()
        for worker in workers:
            if is_alive(worker, now, ttl):
                held.update(worker.runs)
            else:
                dead.add(worker.worker_id)
                orphaned.update(worker.runs)
        return cls(frozenset(held), frozenset(dead), frozenset(orphaned - held), True)


NOBODY = Liveness()


# Worker records read per storage call when the whole registry is read.
PAGE_SIZE = 500


async def all_workers(storage: StorageBackend, *, page_size: int = PAGE_SIZE) -> list[WorkerRecord]:
    """Every record of the registry, read a page at a time in ``worker_id`` order (no
    cap: a registry larger than one page is read whole, so no live worker's runs are
    missed and no dead worker is overlooked)."""
    found: list[WorkerRecord] = []
    after: str | None = None
    while True:
        # The first page without the cursor keyword, which backends written before it
        # existed do not take (they then fail only past one page).
        page = await (
            storage.list_workers(limit=page_size)
            if after is None
            else storage.list_workers(limit=page_size, after=after)
        )
        found += page
        if len(page) < page_size:
            return found
        after = page[-1].worker_id


async def read_liveness(storage: StorageBackend, now: datetime, ttl: float) -> Liveness:
    """The registry as of ``now`` (:data:`NOBODY` on a backend without one)."""
    if WORKERS not in storage.capabilities:
        return NOBODY
    return Liveness.of(await all_workers(storage), now, ttl)


async def prune_workers(storage: StorageBackend, now: datetime) -> int:
    """Delete the records of workers that stopped beating more than :data:`RETENTION`
    ago; returns how many."""
    if WORKERS not in storage.capabilities:
        return 0
    pruned = 0
    for worker in await all_workers(storage):
        if worker.last_beat < now - RETENTION and await storage.delete_worker(worker.worker_id):
            pruned += 1
    return pruned


async def hand_back(
    storage: StorageBackend, run_ids: Iterable[str], owner: str, *, wait: float
) -> list[tuple[str, str]]:
    """Give up the runs ``owner`` is executing so that another worker takes each at once.

    Each run whose lease ``owner`` holds is moved (compare-and-set) to a fresh delivery
    placeholder for ``wait`` seconds, as if its message had just been queued: the caller
    sends a message that takes it over from that placeholder. A resume from a delivery
    is no recovery attempt, and if the message is lost the sweep sends the run again once
    ``wait`` ran out (again without counting). Runs held by someone else (a dispatch
    round, whose step message the broker hands out again) are left as they are.

    Returns:
        ``(run_id, placeholder)`` for each run handed back.
    """
    handed: list[tuple[str, str]] = []
    for run_id in run_ids:
        run = await storage.get_run(run_id)
        if run is None or run.status.is_terminal or run.lease_owner != owner:
            continue
        placeholder = new_owner(OwnerKind.QUEUED, of=f"handback-{os.getpid()}")
        now = utcnow()
        expires = now + timedelta(seconds=wait)
        if await storage.acquire_lease(run_id, placeholder, expires, now, steal_from=owner):
            handed.append((run_id, placeholder))
    return handed


class WorkerBeat:
    """Keeps one process's record in the registry, from a daemon thread.

    The thread has its own event loop and its own storage backend (``open_storage``
    builds a new one: connections belong to one loop). :meth:`holding` marks a run as
    being worked on here; the next beat lists it.
    """

    def __init__(
        self,
        worker_id: str,
        open_storage: Callable[[], StorageBackend],
        *,
        interval: float,
        kind: str = "celery",
        queues: Iterable[str] = (),
        version: str = "",
    ) -> None:
        self.record = WorkerRecord(
            worker_id=worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            kind=kind,
            queues=list(queues),
            version=version,
        )
        self.interval = interval
        self._open_storage = open_storage
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    @contextlib.contextmanager
    def holding(self, run_id: str) -> Iterator[None]:
        """Mark ``run_id`` as worked on here while the block runs."""
        with self._lock:
            self._held[run_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self._held[run_id] -= 1
                if self._held[run_id] <= 0:
                    del self._held[run_id]

    def runs(self) -> list[str]:
        """The runs marked now, sorted."""
        with self._lock:
            return sorted(self._held)

    def start(self) -> None:
        """Start beating (the first beat is written at once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._main, name=f"pyworkflow-beat-{self.record.pid}", daemon=True
        )
        self._thread.start()
        self._started.wait(timeout=5)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop beating and delete the record (a clean shutdown is not a death)."""
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def _main(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            self._task = loop.create_task(self._beat_until_cancelled())
            self._started.set()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(self._task)
        finally:
            self._started.set()
            loop.close()

    async def _beat_until_cancelled(self) -> None:
        storage = self._open_storage()
        failing = False
        try:
            while True:
                try:
                    await self.beat(storage)
                    if failing:
                        logger.info("worker {} beats again", self.record.worker_id)
                    failing = False
                except Exception as exc:  # noqa: BLE001 - the next beat tries again
                    if not failing:  # one line per outage, not one per beat
                        logger.warning(
                            "worker {} could not write its beat ({}); retrying",
                            self.record.worker_id,
                            exc,
                        )
                    failing = True
                await asyncio.sleep(self.interval)
        finally:
            with contextlib.suppress(Exception):
                await self._leave(storage)

    async def beat(self, storage: StorageBackend) -> None:
        """Write the record once, with the runs held now."""
        await storage.connect()  # idempotent; reconnects after an outage
        self.record.runs = self.runs()
        self.record.workflows = sorted(list_workflows())
        self.record.last_beat = utcnow()
        await storage.save_worker(self.record)

    async def _leave(self, storage: StorageBackend) -> None:
        try:
            await asyncio.wait_for(storage.delete_worker(self.record.worker_id), 3)
        finally:
            await storage.close()
