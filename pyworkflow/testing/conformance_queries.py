"""Conformance tests for the run id prefix filter of ``list_runs`` (the dashboard's search
box): ``str.startswith`` semantics on every backend, whatever the server does with
``LIKE`` wildcards, escape characters, case, trailing spaces or non-ASCII text, alone and
together with the other filters and with cursor paging. Used exactly like
:class:`~pyworkflow.testing.conformance.StorageConformance` (a ``storage`` fixture
yielding a fresh backend); the project runs it in the same test class."""

from __future__ import annotations

from typing import Any

from pyworkflow.storage.base import CANCELLATION, StorageBackend, run_cursor
from pyworkflow.storage.schemas import RunStatus
from pyworkflow.testing.conformance import at, make_run

# Ids a prefix search must tell apart: LIKE wildcards and escapes taken literally, case,
# trailing and control characters (a PAD SPACE collation compares "a" and "a " equal and
# sorts "a\tb" before "a"), and multi-byte text up to the last code point (an exclusive
# upper bound of a key range must be built from code points, skipping surrogates).
TRICKY_IDS = (
    "run_a1",
    "run_a2",
    "run_b1",
    "run_",
    "run",
    "RUN_a3",
    "a%b",
    "axb",
    "a_b",
    "a\\b",
    "a\\\\b",
    "a%",
    "a",
    "a b",
    "a\tb",
    "a ",
    "é-1",
    "e-1",
    "ée",
    "日本-1",
    "日本語",
    "🙂-1",
    "🙂🙂",
    "k\ud7ffx",
    "k\ue000",
    "z\U0010ffff-a",
    "z\U0010ffff",
    "{",
)
TRICKY_PREFIXES = (
    "run_",
    "run_a",
    "run",
    "RUN",
    "r",
    "a%",
    "a_",
    "a\\",
    "a\\\\",
    "a\\%",
    "a",
    "a ",
    "a\t",
    "%",
    "_",
    "\\",
    "é",
    "e",
    "日本",
    "日本語",
    "🙂",
    "k\ud7ff",
    "z\U0010ffff",
    "z",
    "nothing-starts-so",
    "run_a1",
    "run_a1x",
)


class RunQueryConformance:
    """``list_runs(run_id_prefix=...)`` as every backend answers it."""

    async def test_prefix_filter_alone_keeps_ids_starting_with_it(
        self, storage: StorageBackend
    ) -> None:
        for i, run_id in enumerate(TRICKY_IDS):
            await storage.create_run(make_run(run_id, created_at=at(i)))
        newest_first = TRICKY_IDS[::-1]

        found = {
            prefix: [r.run_id for r in await storage.list_runs(run_id_prefix=prefix)]
            for prefix in TRICKY_PREFIXES
        }

        expected = {
            prefix: [run_id for run_id in newest_first if run_id.startswith(prefix)]
            for prefix in TRICKY_PREFIXES
        }
        assert found == expected
        assert found["a%"] == ["a%", "a%b"]  # the % is a character, not a wildcard
        assert found["run_a"] == ["run_a2", "run_a1"]  # case-sensitive: no RUN_a3
        every = await storage.list_runs(run_id_prefix="", limit=100)
        assert [r.run_id for r in every] == list(newest_first)

    async def test_reads_of_text_with_a_nul_find_nothing(self, storage: StorageBackend) -> None:
        # What an HTTP client sends as %00: PostgreSQL cannot even bind it.
        await storage.create_run(make_run("a", idempotency_key="k", tags=["t"]))
        assert await storage.get_run("a\x00") is None
        assert await storage.get_run_by_idempotency_key("k\x00") is None
        assert await storage.get_events("a\x00") == []
        assert await storage.list_runs(run_id_prefix="a\x00") == []
        assert await storage.list_runs(workflow_name="order\x00") == []
        assert await storage.list_runs(tag="t\x00", run_id_prefix="a") == []
        assert [r.run_id for r in await storage.list_runs(run_id_prefix="a")] == ["a"]

    async def test_prefix_combines_with_the_other_filters(self, storage: StorageBackend) -> None:
        statuses = (RunStatus.FAILED, RunStatus.COMPLETED, RunStatus.RUNNING)
        for i in range(12):
            await storage.create_run(
                make_run(
                    f"{'ord' if i % 2 == 0 else 'inv'}-{i:02}",
                    created_at=at(i),
                    status=statuses[i % 3],
                    workflow_name="order" if i < 6 else "invoice",
                    tags=["even"] if i % 4 == 0 else ["other"],
                    parent_run_id="p" if i in (2, 3, 4) else None,
                )
            )

        async def ids(**filters: Any) -> list[str]:
            return [r.run_id for r in await storage.list_runs(run_id_prefix="ord-", **filters)]

        assert await ids() == ["ord-10", "ord-08", "ord-06", "ord-04", "ord-02", "ord-00"]
        assert await ids(status=RunStatus.FAILED) == ["ord-06", "ord-00"]
        assert await ids(workflow_name="order") == ["ord-04", "ord-02", "ord-00"]
        assert await ids(status=RunStatus.FAILED, workflow_name="invoice") == ["ord-06"]
        assert await ids(tag="even") == ["ord-08", "ord-04", "ord-00"]
        assert await ids(tag="even", status=RunStatus.RUNNING) == ["ord-08"]
        assert await ids(created_after=at(2), created_before=at(8)) == [
            "ord-06",
            "ord-04",
            "ord-02",
        ]
        assert await ids(parent_run_id="p") == ["ord-04", "ord-02"]
        assert await ids(tag="even", workflow_name="nope") == []
        if CANCELLATION in storage.capabilities:
            assert await storage.request_cancellation("ord-02", None, at(20))
            assert await storage.request_cancellation("inv-05", None, at(20))
            assert await ids(cancel_requested=True) == ["ord-02"]
            assert "ord-02" not in await ids(cancel_requested=False)

    async def test_prefix_pages_with_a_cursor_and_an_offset(self, storage: StorageBackend) -> None:
        # Matching and other runs interleave in time; two matches share a timestamp.
        for i in range(8):
            await storage.create_run(make_run(f"job-{i}", created_at=at(i), tags=["t"]))
            await storage.create_run(make_run(f"jab-{i}", created_at=at(i), tags=["t"]))
        await storage.create_run(make_run("job-3b", created_at=at(3), tags=["t"]))

        async def walk(**filters: Any) -> list[list[str]]:
            pages: list[list[str]] = []
            cursor = None
            while True:
                page = await storage.list_runs(
                    run_id_prefix="job-", limit=3, cursor=cursor, **filters
                )
                if not page:
                    return pages
                pages.append([r.run_id for r in page])
                cursor = run_cursor(page[-1])

        expected = [
            ["job-7", "job-6", "job-5"],
            ["job-4", "job-3b", "job-3"],
            ["job-2", "job-1", "job-0"],
        ]
        assert await walk() == expected
        assert await walk(tag="t") == expected
        assert await walk(workflow_name="order") == expected
        tail = await storage.list_runs(run_id_prefix="job-", offset=7)
        assert [r.run_id for r in tail] == ["job-1", "job-0"]
        before = await storage.list_runs(run_id_prefix="job-", created_before=at(3), limit=2)
        assert [r.run_id for r in before] == ["job-2", "job-1"]
