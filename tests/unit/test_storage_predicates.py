"""pyworkflow.storage._predicates: the rules the memory and file backends share (the
conformance suite checks them through both backends; these pin the edge cases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pyworkflow.storage import RunStatus, WorkflowRun
from pyworkflow.storage import _predicates as rules
from pyworkflow.storage.schemas import HookRecord, HookStatus, ScheduleRecord, ScheduleStatus

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(run_id: str, status: RunStatus, created: float = 0, **fields: object) -> WorkflowRun:
    return WorkflowRun(
        run_id=run_id,
        workflow_name="wf",
        status=status,
        created_at=at(created),
        updated_at=at(created),
        **fields,  # type: ignore[arg-type]
    )


def test_due_runs_earliest_first_ties_by_age_then_id() -> None:
    runs = [
        run("c", RunStatus.SUSPENDED, created=1, wake_at=at(5)),
        run("b", RunStatus.SUSPENDED, created=1, wake_at=at(5)),
        run("a", RunStatus.SUSPENDED, created=2, wake_at=at(5)),
        run("early", RunStatus.SUSPENDED, created=9, wake_at=at(1)),
        run("later", RunStatus.SUSPENDED, wake_at=at(50)),
        run("running", RunStatus.RUNNING, wake_at=at(1)),
        run("no-timer", RunStatus.SUSPENDED),
    ]
    assert [r.run_id for r in rules.due_runs(runs, at(10), 10)] == ["early", "b", "c", "a"]
    assert [r.run_id for r in rules.due_runs(runs, at(10), 2)] == ["early", "b"]
    assert rules.next_wake_time(runs) == at(1)
    assert rules.next_wake_time([]) is None


def test_stale_runs_oldest_first_without_a_live_lease() -> None:
    runs = [
        run("live", RunStatus.RUNNING, created=1, lease_owner="w", lease_expires_at=at(20)),
        run("expired", RunStatus.RUNNING, created=3, lease_owner="w", lease_expires_at=at(5)),
        run("never", RunStatus.PENDING, created=2),
        run("waiting", RunStatus.SUSPENDED, created=0),
        run("done", RunStatus.COMPLETED, created=0),
    ]
    assert [r.run_id for r in rules.stale_runs(runs, at(10), 10)] == ["never", "expired"]


def test_take_lease_and_request_cancel_leave_finished_runs_alone() -> None:
    done = run("done", RunStatus.COMPLETED)
    assert not rules.take_lease(done, "me", at(9), at(0))
    assert not rules.request_cancel(done, "why", at(0))
    assert done.lease_owner is None and done.cancel_requested_at is None
    live = run("r", RunStatus.RUNNING, lease_owner="other", lease_expires_at=at(5))
    assert not rules.take_lease(live, "me", at(9), at(1))
    assert rules.take_lease(live, "me", at(9), at(1), steal_from="other")
    assert (live.lease_owner, live.lease_expires_at) == ("me", at(9))
    assert rules.request_cancel(live, "first", at(1))
    assert rules.request_cancel(live, "second", at(2))
    assert (live.cancel_requested_at, live.cancel_reason) == (at(1), "first")


@pytest.mark.parametrize(
    ("stored", "expected", "version"),
    [(None, None, 1), (3, None, None), (None, 3, None), (3, 2, None), (3, 3, 4)],
)
def test_next_schedule_version(stored: int | None, expected: int | None, version: int) -> None:
    assert rules.next_schedule_version(stored, expected) == version


def test_hooks_filtered_paged_and_moved() -> None:
    hooks = [
        HookRecord(token_hash=h, run_id=r, hook_id=f"hook:{h}", name="n", created_at=at(t))
        for h, r, t in (("a", "r1", 1), ("b", "r1", 2), ("c", "r2", 2))
    ]
    assert rules.same_hook(hooks, HookRecord("z", "r1", "hook:b", "n")) is hooks[1]
    assert rules.same_hook(hooks, HookRecord("z", "r2", "hook:b", "n")) is None
    received = {"status": HookStatus.RECEIVED, "payload": "1", "received_at": at(3)}
    assert rules.move_hook(hooks[0], expected=HookStatus.PENDING, **received)  # type: ignore[arg-type]
    expired = {"status": HookStatus.EXPIRED, "payload": None, "received_at": None}
    assert not rules.move_hook(hooks[0], expected=HookStatus.PENDING, **expired)  # type: ignore[arg-type]
    assert (hooks[0].status, hooks[0].payload) == (HookStatus.RECEIVED, "1")

    def page(**filters: object) -> list[str]:
        options = {"run_id": None, "status": None, "limit": 10, "offset": 0, **filters}
        return [h.token_hash for h in rules.page_hooks(hooks, **options)]  # type: ignore[arg-type]

    assert page() == ["c", "b", "a"]
    assert page(run_id="r1") == ["b", "a"]
    assert page(status=HookStatus.PENDING) == ["c", "b"]
    assert page(limit=1, offset=1) == ["b"]


def test_schedules_selected_and_due() -> None:
    def schedule(sid: str, name: str, status: ScheduleStatus, due: float | None) -> ScheduleRecord:
        next_run = None if due is None else at(due)
        return ScheduleRecord(sid, name, status=status, next_run_time=next_run)

    schedules = [
        schedule("s3", "b", ScheduleStatus.ACTIVE, 5),
        schedule("s1", "a", ScheduleStatus.ACTIVE, 5),
        schedule("s2", "a", ScheduleStatus.PAUSED, 1),
        schedule("s0", "a", ScheduleStatus.ACTIVE, None),
    ]
    chosen = rules.select_schedules(schedules, workflow_name="a", status=None, limit=10)
    assert [s.schedule_id for s in chosen] == ["s0", "s1", "s2"]
    active = rules.select_schedules(
        schedules, workflow_name=None, status=ScheduleStatus.ACTIVE, limit=2
    )
    assert [s.schedule_id for s in active] == ["s0", "s1"]
    assert [s.schedule_id for s in rules.due_schedules(schedules, at(9), 10)] == ["s1", "s3"]
    assert rules.due_schedules(schedules, at(9), 0) == []
