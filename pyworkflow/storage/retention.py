"""Retention: find finished runs older than a cutoff and delete them in batches.

What is old: a run whose status is terminal (``completed``, ``failed``, ``cancelled``,
``continued_as_new``; see :attr:`RunStatus.is_terminal`) and whose ``completed_at`` (or,
for a run that has none, ``updated_at``) is before the cutoff. ``interrupted`` runs are
not terminal (recovery resumes them) and are never purged, nor is any run that is still
pending, running or suspended.

How they are found: with the storage contract alone, so every backend that has
``delete_runs`` (the ``retention`` capability) supports it. For each status asked for,
:meth:`StorageBackend.list_runs` is paged with ``created_before=cutoff`` (a run finishes
after it is created, so nothing older is missed) and a keyset ``cursor``, which every
backend answers from its ``(status, created_at)`` index; the completion time is checked
on each page. Pages hold ``batch_size`` runs, and matching ids are handed to
:meth:`StorageBackend.delete_runs` ``batch_size`` at a time: memory stays bounded by two
batches however many runs go, and each batch is its own transaction (on the SQL
backends) or its own set of per-run writes, so no lock is held for long. Deleting runs
behind the cursor does not disturb the paging.

Each run is judged on its own: the children of a purged parent stay unless they match
too, and so do the other runs of a ``continue_as_new`` chain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from pyworkflow.storage.base import RETENTION, StorageBackend, require_capability, run_cursor
from pyworkflow.storage.schemas import TERMINAL_STATUSES, RunStatus, WorkflowRun

#: Runs deleted per ``delete_runs`` call (and read per ``list_runs`` page) by default.
DEFAULT_BATCH_SIZE = 500
#: The statuses purged when none are given: every terminal one, in a fixed order.
PURGEABLE_STATUSES: tuple[RunStatus, ...] = tuple(s for s in RunStatus if s in TERMINAL_STATUSES)


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What :func:`purge` did (or, with ``dry_run``, would do)."""

    #: Runs deleted, or with ``dry_run`` the runs that match.
    count: int
    #: Runs whose completion (else last update) is before this were chosen.
    cutoff: datetime
    #: Calls of ``delete_runs`` made (0 with ``dry_run``).
    batches: int
    dry_run: bool
    statuses: tuple[RunStatus, ...]
    workflow_name: str | None


def purgeable_statuses(
    status: RunStatus | str | Iterable[RunStatus | str] | None,
) -> tuple[RunStatus, ...]:
    """The statuses to purge: ``None`` means every terminal one.

    Raises:
        ValueError: a status is unknown or not terminal (a live run is never purged).
    """
    if status is None:
        return PURGEABLE_STATUSES
    values = [status] if isinstance(status, str | RunStatus) else list(status)
    chosen: list[RunStatus] = []
    for value in values:
        try:
            parsed = RunStatus(value)
        except ValueError:
            raise ValueError(f"unknown run status {value!r}") from None
        if not parsed.is_terminal:
            allowed = ", ".join(s.value for s in PURGEABLE_STATUSES)
            raise ValueError(
                f"runs in status {parsed.value!r} are not finished and are never purged "
                f"(purgeable: {allowed})"
            )
        if parsed not in chosen:
            chosen.append(parsed)
    if not chosen:
        raise ValueError("no status to purge")
    return tuple(chosen)


def finished_before(run: WorkflowRun, cutoff: datetime) -> bool:
    """Whether ``run`` is terminal and finished (``completed_at``, else ``updated_at``)
    before ``cutoff``."""
    if not RunStatus(run.status).is_terminal:
        return False
    return (run.completed_at or run.updated_at) < cutoff


async def find_purgeable(
    storage: StorageBackend,
    cutoff: datetime,
    *,
    statuses: tuple[RunStatus, ...] = PURGEABLE_STATUSES,
    workflow_name: str | None = None,
    page_size: int = DEFAULT_BATCH_SIZE,
) -> AsyncIterator[list[str]]:
    """Ids of the matching runs, one list per page read (possibly empty lists)."""
    for status in statuses:
        cursor: str | None = None
        while True:
            page = await storage.list_runs(
                status=status,
                workflow_name=workflow_name,
                created_before=cutoff,
                limit=page_size,
                cursor=cursor,
            )
            yield [run.run_id for run in page if finished_before(run, cutoff)]
            if len(page) < page_size:
                break
            cursor = run_cursor(page[-1])


async def purge(
    storage: StorageBackend,
    cutoff: datetime,
    *,
    statuses: tuple[RunStatus, ...] = PURGEABLE_STATUSES,
    workflow_name: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    on_batch: Callable[[int, int], object] | None = None,
) -> PurgeResult:
    """Delete (or with ``dry_run`` count) the terminal runs finished before ``cutoff``.

    ``on_batch(deleted, total)`` is called after each ``delete_runs`` call (with
    ``dry_run``: after each page, with the matches so far), e.g. to print progress.

    Raises:
        ConfigurationError: the storage cannot delete runs (no ``retention`` capability).
        ValueError: ``batch_size`` is not positive.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, not {batch_size}")
    if not dry_run:
        require_capability(storage, RETENTION)
    total = batches = 0
    pending: list[str] = []

    async def flush(ids: list[str]) -> None:
        nonlocal total, batches
        deleted = await storage.delete_runs(ids)
        total += deleted
        batches += 1
        if on_batch is not None:
            on_batch(deleted, total)

    async for ids in find_purgeable(
        storage, cutoff, statuses=statuses, workflow_name=workflow_name, page_size=batch_size
    ):
        if dry_run:
            total += len(ids)
            if ids and on_batch is not None:
                on_batch(len(ids), total)
            continue
        pending += ids
        while len(pending) >= batch_size:
            await flush(pending[:batch_size])
            del pending[:batch_size]
    if pending:
        await flush(pending)
    return PurgeResult(
        count=total,
        cutoff=cutoff,
        batches=batches,
        dry_run=dry_run,
        statuses=statuses,
        workflow_name=workflow_name,
    )


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "PURGEABLE_STATUSES",
    "PurgeResult",
    "find_purgeable",
    "finished_before",
    "purge",
    "purgeable_statuses",
]
