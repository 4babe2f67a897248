"""Conformance tests for the schedule half of the storage contract: schedule records saved
with compare-and-set on their ``version``. Used exactly like
:class:`~pyworkflow.testing.conformance.StorageConformance` (a ``storage`` fixture yielding
a fresh backend; an optional ``storage_url`` fixture enables the two-instance race)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import fields
from datetime import UTC, datetime

import pytest

from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.config import storage_from_url
from pyworkflow.storage.schemas import ScheduleRecord, ScheduleStatus
from pyworkflow.testing.conformance import T0, assert_utc, at, storage_url_or_skip


def make_schedule(schedule_id: str, **kw: object) -> ScheduleRecord:
    values: dict[str, object] = {
        "schedule_id": schedule_id,
        "workflow_name": "report",
        "next_run_time": at(60),
        "data": '{"spec": {"interval": "1m"}}',
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(kw)
    return ScheduleRecord(**values)  # type: ignore[arg-type]


async def insert(storage: StorageBackend, schedule_id: str, **kw: object) -> ScheduleRecord:
    """Store a new schedule (which must not exist yet); the saved record (version 1)."""
    schedule = make_schedule(schedule_id, **kw)
    assert await storage.save_schedule(schedule, expected_version=None)
    return schedule


async def fetch_schedule(storage: StorageBackend, schedule_id: str) -> ScheduleRecord:
    """The stored schedule, which must exist."""
    schedule = await storage.get_schedule(schedule_id)
    assert schedule is not None, f"schedule {schedule_id!r} missing"
    return schedule


class ScheduleConformance:
    """Schedules, as every backend must store them."""

    async def test_insert_and_get_round_trip_every_field(self, storage: StorageBackend) -> None:
        data = json.dumps(
            {"spec": {"cron": "*/5 * * * *"}, "note": "żółć ✓ 日本 " * 8_000, "n": None},
            ensure_ascii=False,
        )
        assert len(data.encode()) > 100_000
        schedule = ScheduleRecord(
            schedule_id="sched-ü-1",
            workflow_name="billing.charge",
            status=ScheduleStatus.PAUSED,
            next_run_time=datetime(2031, 1, 2, 3, 4, 5, 999999, tzinfo=UTC),
            data=data,
            created_at=at(0),
            updated_at=at(1.5),
        )
        assert schedule.version == 0
        assert await storage.save_schedule(schedule, expected_version=None)
        assert schedule.version == 1
        stored = await storage.get_schedule("sched-ü-1")
        assert stored == schedule
        assert stored is not None and stored is not schedule
        assert isinstance(stored.status, ScheduleStatus) and stored.status == "paused"
        assert stored.data == data
        for f in fields(ScheduleRecord):
            value = getattr(stored, f.name)
            if isinstance(value, datetime):
                assert_utc(value)
        # Defaults round-trip too (no next run time, empty data object).
        minimal = ScheduleRecord(schedule_id="min", workflow_name="w", created_at=T0, updated_at=T0)
        assert await storage.save_schedule(minimal, expected_version=None)
        got = await storage.get_schedule("min")
        assert got == minimal and got is not None and got.next_run_time is None
        assert got.version == 1 and got.data == "{}"
        assert await storage.get_schedule("missing") is None

    async def test_second_insert_of_an_id_is_refused(self, storage: StorageBackend) -> None:
        first = await insert(storage, "s1")
        again = make_schedule("s1", workflow_name="other", data='{"x": 1}', next_run_time=at(1))
        assert not await storage.save_schedule(again, expected_version=None)
        assert again.version == 0  # untouched on failure
        assert await fetch_schedule(storage, "s1") == first

    async def test_compare_and_set_update(self, storage: StorageBackend) -> None:
        schedule = await insert(storage, "s1")
        schedule.next_run_time = at(120)
        schedule.data = '{"spec": {"interval": "1m"}, "last": "r1"}'
        schedule.updated_at = at(60)
        assert await storage.save_schedule(schedule, expected_version=1)
        assert schedule.version == 2
        stored = await fetch_schedule(storage, "s1")
        assert stored == schedule and stored.version == 2
        # The version on the record passed in is irrelevant: expected_version decides.
        schedule.status = ScheduleStatus.PAUSED
        schedule.next_run_time = None
        schedule.version = 99
        assert await storage.save_schedule(schedule, expected_version=2)
        assert schedule.version == 3
        stored = await fetch_schedule(storage, "s1")
        assert (stored.version, stored.status, stored.next_run_time) == (
            3,
            ScheduleStatus.PAUSED,
            None,
        )

    async def test_stale_version_is_refused_and_writes_nothing(
        self, storage: StorageBackend
    ) -> None:
        schedule = await insert(storage, "s1")
        assert await storage.save_schedule(schedule, expected_version=1)  # now at 2
        before = await fetch_schedule(storage, "s1")
        stale = make_schedule("s1", data='{"stale": true}', status=ScheduleStatus.PAUSED)
        for expected in (1, 0, 3, 7):
            assert not await storage.save_schedule(stale, expected_version=expected)
        assert stale.version == 0
        assert await fetch_schedule(storage, "s1") == before

    async def test_concurrent_updates_from_one_version_have_one_winner(
        self, storage: StorageBackend
    ) -> None:
        await insert(storage, "s1")
        contenders = [
            make_schedule("s1", data=json.dumps({"writer": n}), next_run_time=at(100 + n))
            for n in range(8)
        ]
        wins = await asyncio.gather(
            *(storage.save_schedule(c, expected_version=1) for c in contenders)
        )
        assert wins.count(True) == 1
        winner = contenders[wins.index(True)]
        assert winner.version == 2
        assert all(c.version == 0 for c in contenders if c is not winner)
        assert await fetch_schedule(storage, "s1") == winner

    async def test_concurrent_inserts_of_one_id_have_one_winner(
        self, storage: StorageBackend
    ) -> None:
        contenders = [make_schedule("s1", data=json.dumps({"writer": n})) for n in range(8)]
        wins = await asyncio.gather(
            *(storage.save_schedule(c, expected_version=None) for c in contenders)
        )
        assert wins.count(True) == 1
        assert await fetch_schedule(storage, "s1") == contenders[wins.index(True)]

    async def test_update_of_a_missing_or_deleted_schedule_is_refused(
        self, storage: StorageBackend
    ) -> None:
        ghost = make_schedule("ghost")
        assert not await storage.save_schedule(ghost, expected_version=1)
        assert await storage.get_schedule("ghost") is None
        schedule = await insert(storage, "s1")
        assert await storage.delete_schedule("s1")
        assert not await storage.save_schedule(schedule, expected_version=1)
        assert await storage.get_schedule("s1") is None
        assert await storage.list_schedules() == []
        assert await storage.list_due_schedules(at(1000)) == []
        # The id is free again: a new insert starts over at version 1.
        fresh = make_schedule("s1", data='{"again": true}')
        assert await storage.save_schedule(fresh, expected_version=None)
        assert fresh.version == 1
        assert await fetch_schedule(storage, "s1") == fresh

    async def test_delete(self, storage: StorageBackend) -> None:
        await insert(storage, "s1")
        await insert(storage, "s2")
        assert await storage.delete_schedule("s1")
        assert not await storage.delete_schedule("s1")
        assert not await storage.delete_schedule("never")
        assert await storage.get_schedule("s1") is None
        assert [s.schedule_id for s in await storage.list_schedules()] == ["s2"]

    async def test_list_filters_orders_by_id_and_limits(self, storage: StorageBackend) -> None:
        # Inserted out of order; ids compare byte for byte ("B" < "a" < "b").
        await insert(storage, "b-2", workflow_name="report")
        await insert(storage, "a-1", workflow_name="report", status=ScheduleStatus.PAUSED)
        await insert(storage, "B-0", workflow_name="cleanup")
        await insert(storage, "a-3", workflow_name="cleanup", next_run_time=None)
        await insert(storage, "c-4", workflow_name="report")

        async def ids(
            workflow_name: str | None = None,
            status: ScheduleStatus | None = None,
            limit: int = 1000,
        ) -> list[str]:
            found = await storage.list_schedules(
                workflow_name=workflow_name, status=status, limit=limit
            )
            return [s.schedule_id for s in found]

        assert await ids() == ["B-0", "a-1", "a-3", "b-2", "c-4"]
        assert await ids(workflow_name="report") == ["a-1", "b-2", "c-4"]
        assert await ids(status=ScheduleStatus.PAUSED) == ["a-1"]
        assert await ids(status=ScheduleStatus.ACTIVE) == ["B-0", "a-3", "b-2", "c-4"]
        assert await ids(workflow_name="report", status=ScheduleStatus.ACTIVE) == ["b-2", "c-4"]
        assert await ids(workflow_name="cleanup", status=ScheduleStatus.PAUSED) == []
        assert await ids(workflow_name="nope") == []
        assert await ids(limit=2) == ["B-0", "a-1"]
        assert await ids(workflow_name="report", limit=2) == ["a-1", "b-2"]
        assert await ids(status=ScheduleStatus.ACTIVE, limit=3) == ["B-0", "a-3", "b-2"]
        listed = await storage.list_schedules(workflow_name="cleanup")
        assert listed == [
            await fetch_schedule(storage, "B-0"),
            await fetch_schedule(storage, "a-3"),
        ]

    async def test_list_due_schedules(self, storage: StorageBackend) -> None:
        # Times differ by a microsecond: ordering and the "<= now" bound must be exact.
        await insert(storage, "late", next_run_time=at(10.000001))
        await insert(storage, "early", next_run_time=at(-86400 * 400))
        await insert(storage, "now", next_run_time=at(10))
        await insert(storage, "mid-b", next_run_time=at(5))
        await insert(storage, "mid-a", next_run_time=at(5))  # a tie: ordered by id
        await insert(storage, "paused", next_run_time=at(1), status=ScheduleStatus.PAUSED)
        await insert(storage, "never", next_run_time=None)
        await insert(storage, "future", next_run_time=at(3600))

        due = await storage.list_due_schedules(at(10))
        assert [s.schedule_id for s in due] == ["early", "mid-a", "mid-b", "now"]
        assert due[0] == await fetch_schedule(storage, "early")
        assert all(s.status == ScheduleStatus.ACTIVE for s in due)
        limited = await storage.list_due_schedules(at(10), limit=2)
        assert [s.schedule_id for s in limited] == ["early", "mid-a"]
        assert await storage.list_due_schedules(at(-86400 * 401)) == []

        # Moving a schedule's next run time (or pausing it) moves it in the due order.
        early = await fetch_schedule(storage, "early")
        early.next_run_time = at(3601)
        assert await storage.save_schedule(early, expected_version=early.version)
        paused = await fetch_schedule(storage, "paused")
        paused.status = ScheduleStatus.ACTIVE
        assert await storage.save_schedule(paused, expected_version=paused.version)
        mid = await fetch_schedule(storage, "mid-a")
        mid.status = ScheduleStatus.PAUSED
        assert await storage.save_schedule(mid, expected_version=mid.version)
        due = await storage.list_due_schedules(at(10))
        assert [s.schedule_id for s in due] == ["paused", "mid-b", "now"]
        # The far end of time is a valid bound (a scheduler asks for its next wake-up so).
        everything = await storage.list_due_schedules(datetime.max.replace(tzinfo=UTC))
        assert [s.schedule_id for s in everything] == [
            "paused",
            "mid-b",
            "now",
            "late",
            "future",
            "early",
        ]
        (first,) = await storage.list_due_schedules(datetime.max.replace(tzinfo=UTC), 1)
        assert first.schedule_id == "paused" and first.next_run_time == at(1)

    async def test_returned_schedules_are_copies(self, storage: StorageBackend) -> None:
        saved = await insert(storage, "s1")
        saved.data = '{"mutated": "after save"}'
        saved.version = 42
        for read in (
            await fetch_schedule(storage, "s1"),
            (await storage.list_schedules())[0],
            (await storage.list_due_schedules(at(100)))[0],
        ):
            read.status = ScheduleStatus.PAUSED
            read.data = '{"mutated": true}'
            read.next_run_time = None
            read.version = 7
        again = await fetch_schedule(storage, "s1")
        assert again == make_schedule("s1", version=1)

    async def test_two_instances_race_to_update(
        self, storage: StorageBackend, request: pytest.FixtureRequest
    ) -> None:
        url = storage_url_or_skip(storage, request, "cross_process")
        other = storage_from_url(url)  # a second instance: its own connections or pool
        try:
            await insert(storage, "s1")
            backends = (storage, other)
            for version in range(1, 6):
                contenders = [
                    make_schedule("s1", data=json.dumps({"writer": i, "round": version}))
                    for i in range(len(backends))
                ]
                wins = await asyncio.gather(
                    *(
                        backend.save_schedule(c, expected_version=version)
                        for backend, c in zip(backends, contenders, strict=True)
                    )
                )
                assert wins.count(True) == 1, wins
                winner = contenders[wins.index(True)]
                assert await fetch_schedule(other, "s1") == winner
                assert (await fetch_schedule(storage, "s1")).version == version + 1
        finally:
            await other.close()


__all__ = ["ScheduleConformance", "fetch_schedule", "make_schedule"]
