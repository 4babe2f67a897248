"""Conformance tests for retention: ``delete_runs`` and the batched purge built on it
(:mod:`pyworkflow.storage.retention`). Used exactly like
:class:`~pyworkflow.testing.conformance.StorageConformance` (a ``storage`` fixture yielding
a fresh backend with the ``retention`` capability).

Every check is on what a caller sees after a purge: the run, its events, its hooks and
its idempotency key are gone; no listing (by status, workflow, tag, cancellation request,
due timers) returns a ghost; runs that are not finished, or finished after the cutoff,
are untouched; and a purge works in batches of the size asked for.
"""

from __future__ import annotations

from typing import Any

from pyworkflow.storage.base import RETENTION, StorageBackend
from pyworkflow.storage.retention import purge
from pyworkflow.storage.schemas import HookStatus, RunStatus, WorkflowRun
from pyworkflow.testing.conformance import at, fetch, make_events, make_run
from pyworkflow.testing.conformance_hooks import make_hook

#: A cutoff between the "old" runs (finished at second 100) and the "new" ones (200).
CUTOFF = at(150)


async def finished(
    storage: StorageBackend,
    run_id: str,
    status: RunStatus = RunStatus.COMPLETED,
    *,
    done: float = 100,
    events: int = 2,
    **kw: Any,
) -> WorkflowRun:
    """Store a run in ``status`` that finished (``completed_at``) at second ``done``."""
    values: dict[str, Any] = {
        "status": status,
        "completed_at": at(done),
        "updated_at": at(done),
        "last_sequence": events,
    }
    values.update(kw)
    run = make_run(run_id, **values)
    return await storage.create_run(run, make_events(run_id, 1, events))


async def live(storage: StorageBackend, run_id: str, status: RunStatus, **kw: Any) -> None:
    """Store an unfinished run, last updated long before the cutoff."""
    values: dict[str, Any] = {"status": status, "updated_at": at(1), "last_sequence": 1}
    values.update(kw)
    await storage.create_run(make_run(run_id, **values), make_events(run_id, 1, 1))


async def ids(storage: StorageBackend, **filters: Any) -> set[str]:
    return {run.run_id for run in await storage.list_runs(limit=1000, **filters)}


class RetentionConformance:
    """``delete_runs`` and the purge on top of it, as every backend must behave."""

    async def test_backend_declares_the_retention_capability(self, storage: StorageBackend) -> None:
        assert RETENTION in storage.capabilities

    async def test_a_deleted_run_leaves_nothing_behind(self, storage: StorageBackend) -> None:
        await finished(storage, "old", idempotency_key="order-7", tags=["eu", "vip"])
        await storage.save_hook(make_hook("h-old", run_id="old", status=HookStatus.RECEIVED))
        await storage.save_hook(make_hook("h-old2", run_id="old", hook_id="hook:b#1"))
        await finished(storage, "keep", tags=["eu"])
        await storage.save_hook(make_hook("h-keep", run_id="keep"))

        assert await storage.delete_runs(["old"]) == 1

        assert await storage.get_run("old") is None
        assert await storage.get_events("old") == []
        assert await storage.get_run_by_idempotency_key("order-7") is None
        assert await storage.get_hook("h-old") is None
        assert await storage.get_hook("h-old2") is None
        assert await storage.list_hooks(run_id="old") == []
        assert [h.token_hash for h in await storage.list_hooks()] == ["h-keep"]
        for filters in (
            {},
            {"status": RunStatus.COMPLETED},
            {"workflow_name": "order"},
            {"tag": "eu"},
            {"tag": "vip"},
        ):
            assert await ids(storage, **filters) == (
                {"keep"} if filters.get("tag") != "vip" else set()
            )
        assert (await fetch(storage, "keep")).tags == ["eu"]
        assert await storage.get_hook("h-keep") is not None

    async def test_every_terminal_status_is_deleted(self, storage: StorageBackend) -> None:
        terminal = [s for s in RunStatus if s.is_terminal]
        for status in terminal:
            await finished(storage, f"r-{status.value}", status)
        assert await storage.delete_runs([f"r-{s.value}" for s in terminal]) == len(terminal)
        assert await ids(storage) == set()

    async def test_runs_that_are_not_finished_are_never_deleted(
        self, storage: StorageBackend
    ) -> None:
        await live(storage, "pending", RunStatus.PENDING)
        await live(storage, "running", RunStatus.RUNNING)
        await live(storage, "interrupted", RunStatus.INTERRUPTED)
        await live(storage, "asleep", RunStatus.SUSPENDED, wake_at=at(5))
        await storage.save_hook(make_hook("h-asleep", run_id="asleep"))
        everyone = ["pending", "running", "interrupted", "asleep"]

        assert await storage.delete_runs(everyone) == 0

        assert await ids(storage) == set(everyone)
        for run_id in everyone:
            assert [e.sequence for e in await storage.get_events(run_id)] == [1]
        assert await storage.list_due_runs(at(10)) == ["asleep"]
        assert await storage.get_hook("h-asleep") is not None

    async def test_unknown_and_repeated_ids_are_skipped(self, storage: StorageBackend) -> None:
        await finished(storage, "old")
        assert await storage.delete_runs([]) == 0
        assert await storage.delete_runs(["nope", "old", "old"]) == 1
        assert await storage.delete_runs(["old"]) == 0

    async def test_the_key_and_id_of_a_deleted_run_can_be_used_again(
        self, storage: StorageBackend
    ) -> None:
        await finished(storage, "r1", idempotency_key="k", events=3)
        await storage.delete_runs(["r1"])
        fresh = make_run("r2", idempotency_key="k", last_sequence=1)
        assert (await storage.create_run(fresh, make_events("r2", 1, 1))).run_id == "r2"
        # The same run id starts a fresh log: nothing of the old one shows through.
        again = make_run("r1", last_sequence=1)
        await storage.create_run(again, make_events("r1", 1, 1))
        assert [e.sequence for e in await storage.get_events("r1")] == [1]
        assert await ids(storage, status=RunStatus.RUNNING) == {"r1", "r2"}

    async def test_children_and_chain_neighbours_are_left_alone(
        self, storage: StorageBackend
    ) -> None:
        await finished(storage, "parent", continued_to_run_id="next")
        await live(storage, "child", RunStatus.RUNNING, parent_run_id="parent", nesting_depth=1)
        await finished(storage, "next", continued_from_run_id="parent", done=200)
        assert await storage.delete_runs(["parent"]) == 1
        child = await fetch(storage, "child")
        assert child.parent_run_id == "parent"
        assert await ids(storage, parent_run_id="parent") == {"child"}
        assert (await fetch(storage, "next")).continued_from_run_id == "parent"

    async def test_a_deleted_run_leaves_the_cancellation_index(
        self, storage: StorageBackend
    ) -> None:
        await finished(storage, "gone", RunStatus.CANCELLED, cancel_requested_at=at(50))
        await finished(storage, "kept", RunStatus.CANCELLED, cancel_requested_at=at(60))
        await storage.delete_runs(["gone"])
        assert await ids(storage, cancel_requested=True) == {"kept"}
        assert await ids(storage, status=RunStatus.CANCELLED, cancel_requested=True) == {"kept"}

    async def test_a_batch_larger_than_one_statement_is_deleted_whole(
        self, storage: StorageBackend
    ) -> None:
        run_ids = [f"r{n:04d}" for n in range(510)]
        for run_id in run_ids:
            await finished(storage, run_id, events=1)
        assert await storage.delete_runs(run_ids) == 510
        assert await ids(storage) == set()

    # -- the purge on top of delete_runs ---------------------------------------------------

    async def test_purge_deletes_only_runs_finished_before_the_cutoff(
        self, storage: StorageBackend
    ) -> None:
        await finished(storage, "old-done")
        await finished(storage, "old-failed", RunStatus.FAILED)
        await finished(storage, "new-done", done=200)
        # Created long ago, finished after the cutoff: judged by its completion.
        await finished(storage, "slow", done=200, created_at=at(-1000))
        # No completed_at: its last update counts.
        await finished(storage, "legacy", done=0, completed_at=None, updated_at=at(10))
        await live(storage, "running", RunStatus.RUNNING)
        await live(storage, "interrupted", RunStatus.INTERRUPTED)

        result = await purge(storage, CUTOFF)

        assert result.count == 3 and not result.dry_run
        assert await ids(storage) == {"new-done", "slow", "running", "interrupted"}

    async def test_purge_filters_by_status_and_workflow(self, storage: StorageBackend) -> None:
        await finished(storage, "done")
        await finished(storage, "failed", RunStatus.FAILED)
        await finished(storage, "other", workflow_name="billing")
        result = await purge(
            storage, CUTOFF, statuses=(RunStatus.COMPLETED,), workflow_name="order"
        )
        assert result.count == 1
        assert await ids(storage) == {"failed", "other"}

    async def test_purge_works_in_batches_of_the_size_asked(self, storage: StorageBackend) -> None:
        for n in range(5):
            await finished(storage, f"old{n}", created_at=at(n))
        await finished(storage, "new", done=200)
        progress: list[tuple[int, int]] = []
        result = await purge(
            storage, CUTOFF, batch_size=2, on_batch=lambda n, total: progress.append((n, total))
        )
        assert (result.count, result.batches) == (5, 3)
        assert progress == [(2, 2), (2, 4), (1, 5)]
        assert await ids(storage) == {"new"}

    async def test_a_dry_run_counts_and_deletes_nothing(self, storage: StorageBackend) -> None:
        for n in range(3):
            await finished(storage, f"old{n}", created_at=at(n))
        await finished(storage, "new", done=200)
        result = await purge(storage, CUTOFF, dry_run=True, batch_size=2)
        assert (result.count, result.batches, result.dry_run) == (3, 0, True)
        assert len(await ids(storage)) == 4
