"""Recovery finds sleeping runs asked to cancel with one filtered storage query, paged to
the end: it never reads the sleeping runs nobody asked to cancel."""

from __future__ import annotations

from datetime import timedelta

from pyworkflow.engine.recovery import signalled_suspended_runs
from pyworkflow.storage.base import RunQuery
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.schemas import RunStatus, WorkflowRun, utcnow


class CountingStorage(InMemoryStorageBackend):
    """Records every run query and how many runs it returned."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[tuple[RunQuery, int]] = []

    async def query_runs(self, query: RunQuery) -> list[WorkflowRun]:
        runs = await super().query_runs(query)
        self.queries.append((query, len(runs)))
        return runs


async def test_only_the_runs_asked_to_cancel_are_read_across_pages() -> None:
    storage = CountingStorage()
    start = utcnow() - timedelta(hours=1)
    for i in range(600):
        created = start + timedelta(seconds=i)
        run = WorkflowRun(
            run_id=f"sleep-{i:04d}",
            workflow_name="wf",
            status=RunStatus.SUSPENDED,
            created_at=created,
            updated_at=created,
        )
        await storage.create_run(run)
    asked = {f"sleep-{i:04d}" for i in range(0, 600, 4)}  # 150 runs, over several pages
    for run_id in asked:
        assert await storage.request_cancellation(run_id, None, utcnow())

    found = await signalled_suspended_runs(storage, page_size=40)

    assert set(found) == asked and len(found) == len(asked)
    assert storage.queries, "recovery read no runs"
    for query, _ in storage.queries:
        assert (query.status, query.cancel_requested) == (RunStatus.SUSPENDED, True)
    assert sum(count for _, count in storage.queries) == len(asked)
    assert len(storage.queries) == len(asked) // 40 + 1
