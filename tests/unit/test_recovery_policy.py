"""The recovery policy: which runs to take over and whose lease to take, with no row cap;
lease owner kinds, including owners stored by earlier versions."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest

from pyworkflow.engine.owners import (
    QUEUED_OWNER,
    OwnerKind,
    is_delivery,
    new_owner,
    owner_is_dead,
    owner_kind,
    process_owner,
    sweeper_of,
)
from pyworkflow.engine.recovery import awaiting_delivery, judge, never_executed, runs_to_recover
from pyworkflow.engine.workers import Liveness, hand_back
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.schemas import (
    Event,
    EventType,
    RunStatus,
    WorkerRecord,
    WorkflowRun,
    utcnow,
)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _run(run_id: str, status: RunStatus, owner: str | None, expires_in: float) -> WorkflowRun:
    now = utcnow()
    return WorkflowRun(
        run_id=run_id,
        workflow_name="wf",
        status=status,
        lease_owner=owner,
        lease_expires_at=now + timedelta(seconds=expires_in) if owner else None,
        last_sequence=1,
    )


async def _store(storage: InMemoryStorageBackend, run: WorkflowRun) -> None:
    started = Event(run_id=run.run_id, type=EventType.WORKFLOW_STARTED, data={}, sequence=1)
    await storage.create_run(run, [started])


def test_owner_kinds_and_legacy_owners() -> None:
    assert owner_kind(process_owner()) is OwnerKind.PROCESS
    assert owner_kind(new_owner(OwnerKind.ROUND)) is OwnerKind.ROUND
    assert owner_kind(new_owner(OwnerKind.SWEEP)) is OwnerKind.SWEEP
    assert owner_kind(QUEUED_OWNER) is OwnerKind.QUEUED
    # Stored by versions before owner kinds existed, still read the same way:
    assert owner_kind("celery:queued") is OwnerKind.QUEUED
    assert owner_kind("celery:1234:abc") is OwnerKind.PROCESS  # a host named "celery"
    assert is_delivery("celery:queued") and is_delivery("sweep:h:1:x/claim")
    assert not is_delivery("round:abc") and not is_delivery(None)


def test_dead_owner_is_only_judged_for_same_host_processes() -> None:
    me = process_owner()
    host = socket.gethostname()
    dead = f"{host}:{_dead_pid()}:abc"
    assert owner_is_dead(dead, me)
    assert not owner_is_dead(f"{host}:{os.getppid()}:abc", me)  # alive
    assert not owner_is_dead(f"elsewhere:{_dead_pid()}:abc", me)  # cannot tell
    assert not owner_is_dead("round:abc", me)  # a round: expiry only
    assert not owner_is_dead(me, me)


def test_judge_steals_only_from_dead_holders() -> None:
    me = process_owner()
    now = utcnow()
    expired = _run("a", RunStatus.RUNNING, "otherhost:1:x", expires_in=-1)
    assert judge(expired, now, me).steal_from is None  # expired: no stealing needed
    live = _run("b", RunStatus.RUNNING, "otherhost:1:x", expires_in=60)
    assert judge(live, now, me) is None
    dead_owner = f"{socket.gethostname()}:{_dead_pid()}:x"
    dead = _run("c", RunStatus.RUNNING, dead_owner, expires_in=60)
    assert judge(dead, now, me).steal_from == dead_owner
    assert judge(_run("d", RunStatus.SUSPENDED, None, 0), now, me) is None


def test_a_queued_start_from_an_earlier_version_is_a_plain_start() -> None:
    legacy = _run("q", RunStatus.PENDING, "celery:queued", expires_in=-1)
    assert never_executed(legacy)
    found = judge(legacy, utcnow(), process_owner())
    assert found is not None and not found.counts
    executing = _run("p", RunStatus.PENDING, "otherhost:1:x", expires_in=-1)
    assert judge(executing, utcnow(), process_owner()).counts


async def test_every_stale_run_is_found_however_many_and_however_old() -> None:
    """1,300 active runs (more than the 1,000-row cap scans had): the oldest, with a dead
    same-host holder, and every expired one are found; live ones are left alone."""
    storage = InMemoryStorageBackend()
    dead_owner = f"{socket.gethostname()}:{_dead_pid()}:x"
    await _store(storage, _run("oldest-dead", RunStatus.RUNNING, dead_owner, expires_in=600))
    for i in range(1200):
        await _store(storage, _run(f"live-{i:04d}", RunStatus.RUNNING, "h2:1:x", 600))
    for i in range(100):
        await _store(storage, _run(f"expired-{i:03d}", RunStatus.PENDING, "h2:1:x", -5))
    found = [
        r
        async for r in runs_to_recover(
            storage, utcnow(), process_owner(), lease_ttl=30, page_size=70
        )
    ]
    ids = {r.run_id for r in found}
    assert "oldest-dead" in ids
    assert {f"expired-{i:03d}" for i in range(100)} <= ids
    assert len(ids) == 101 == len(found)


async def test_a_hook_payload_is_rewoken_only_until_the_run_has_seen_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A payload nobody could deliver wakes the run; once the run consumed it and went
    back to sleep, recovery passes leave it alone (no resumed/suspended pairs pile up)."""
    from pyworkflow import get_workflow_events, hook, sleep, start, workflow
    from pyworkflow.engine import recovery
    from pyworkflow.engine.recovery import signalled_suspended_runs
    from pyworkflow.runtime.local import LocalRuntime
    from pyworkflow.storage.schemas import HookStatus

    tokens: list[str] = []

    async def keep(token: str) -> None:
        tokens.append(token)

    @workflow(name="rp_hook_then_sleep")
    async def hook_then_sleep() -> None:
        await hook("rp_go", on_created=keep)
        await sleep("1h")

    monkeypatch.setattr(recovery, "CLOCK_SKEW", timedelta(0))  # one clock here
    storage = InMemoryStorageBackend()
    run_id = await start(hook_then_sleep, storage=storage)
    [record] = await storage.list_hooks(run_id=run_id)
    # Delivered by a process that could not wake the run:
    assert await storage.update_hook(
        record.token_hash,
        expected=HookStatus.PENDING,
        status=HookStatus.RECEIVED,
        payload="1",
        received_at=utcnow(),
    )
    assert await signalled_suspended_runs(storage) == [run_id]
    service = LocalRuntime.default().service(storage)
    await service.recover()
    for _ in range(100):
        events = await get_workflow_events(run_id, storage=storage)
        if events[-1].data.get("reason", "").startswith("sleep"):
            break
        await asyncio.sleep(0.02)
    count = len(events)
    assert await signalled_suspended_runs(storage) == []
    await service.recover()
    await asyncio.sleep(0.1)
    assert len(await get_workflow_events(run_id, storage=storage)) == count


async def test_a_run_that_may_not_be_recovered_fails_with_a_clear_reason() -> None:
    """Its holder died and the workflow says recover_on_worker_loss=False: the recovery
    pass fails it (interrupted, then failed, in one append) instead of resuming it."""
    from pyworkflow import get_workflow_events, get_workflow_run, workflow
    from pyworkflow.engine.runs import RunRequest, build_run
    from pyworkflow.runtime.local import LocalRuntime

    @workflow(name="rp_no_recovery", recover_on_worker_loss=False)
    async def no_recovery() -> str:
        return "never"

    storage = InMemoryStorageBackend()
    dead_owner = f"{socket.gethostname()}:{_dead_pid()}:x"
    request = RunRequest(definition=no_recovery.__workflow__, args=(), kwargs={})
    run, started = build_run(request, owner=dead_owner, lease_ttl=600)
    run.status = RunStatus.RUNNING
    await storage.create_run(run, [started])
    await LocalRuntime.default().service(storage).recover()
    for _ in range(100):
        stored = await get_workflow_run(run.run_id, storage=storage)
        if stored.status == "failed":
            break
        await asyncio.sleep(0.02)
    assert stored.status == "failed"
    assert "cannot be recovered" in stored.error and "recover_on_worker_loss" in stored.error
    types = [e.type for e in await get_workflow_events(run.run_id, storage=storage)]
    assert types == [
        EventType.WORKFLOW_STARTED,
        EventType.WORKFLOW_INTERRUPTED,
        EventType.WORKFLOW_FAILED,
    ]


def _worker(worker_id: str, beat_ago: float, runs: list[str] | None = None) -> WorkerRecord:
    return WorkerRecord(
        worker_id=worker_id, last_beat=utcnow() - timedelta(seconds=beat_ago), runs=runs or []
    )


def test_liveness_splits_the_registry_into_runs_held_and_dead_workers() -> None:
    live = Liveness.of(
        [_worker("h1:1:a", 2, ["r1", "r2"]), _worker("h2:2:b", 40, ["r3"])], utcnow(), ttl=30
    )
    assert live.held == {"r1", "r2"}  # a dead worker's list is no proof of anything
    assert live.dead == {"h2:2:b"}


def test_a_run_a_live_worker_is_on_is_never_taken_even_past_its_lease() -> None:
    """The 10-minute step whose event loop is blocked: its lease ran out, its worker
    still beats and lists the run."""
    run = _run("r1", RunStatus.RUNNING, "h1:1:a", expires_in=-60)
    live = Liveness.of([_worker("h1:1:a", 1, ["r1"])], utcnow(), ttl=30)
    assert judge(run, utcnow(), process_owner(), live) is None
    assert judge(run, utcnow(), process_owner()) is not None  # without the registry: expired


def test_a_run_of_a_worker_that_stopped_beating_is_taken_before_its_lease_ends() -> None:
    """Another host's worker (no pid check possible) whose beats stopped: its run is
    taken from it at once, and that counts as a recovery."""
    run = _run("r1", RunStatus.RUNNING, "elsewhere:1:a", expires_in=600)
    assert judge(run, utcnow(), process_owner()) is None  # lease alone: wait 10 minutes
    live = Liveness.of([_worker("elsewhere:1:a", 31, ["r1"])], utcnow(), ttl=30)
    found = judge(run, utcnow(), process_owner(), live)
    assert found is not None
    assert found.steal_from == "elsewhere:1:a" and found.counts


def test_a_live_worker_that_no_longer_lists_a_run_leaves_it_to_its_lease() -> None:
    run = _run("r1", RunStatus.RUNNING, "h1:1:a", expires_in=-1)
    live = Liveness.of([_worker("h1:1:a", 1, [])], utcnow(), ttl=30)
    found = judge(run, utcnow(), process_owner(), live)
    assert found is not None and found.steal_from is None


def test_a_round_whose_messages_were_lost_is_no_recovery_attempt() -> None:
    """A dispatch round's lease ran out while no worker was on the run: its step
    messages were lost (fetched by a killed worker before it began them). Taking it
    over re-dispatches them; that is a delivery, not a recovery attempt."""
    run = _run("r1", RunStatus.RUNNING, new_owner(OwnerKind.ROUND), expires_in=-1)
    run.last_sequence = 5
    registry = Liveness.of([_worker("h1:1:a", 40, [])], utcnow(), ttl=30)
    found = judge(run, utcnow(), process_owner(), registry)
    assert found is not None and not found.counts
    assert found.lost_round == run.lease_owner  # the Celery sweep re-sends its steps
    assert judge(run, utcnow(), process_owner()).counts  # no registry: cannot tell


def test_a_round_whose_step_worker_died_on_it_counts() -> None:
    run = _run("r1", RunStatus.RUNNING, new_owner(OwnerKind.ROUND), expires_in=-1)
    run.last_sequence = 5
    registry = Liveness.of([_worker("h1:1:a", 40, ["r1"])], utcnow(), ttl=30)
    assert registry.orphaned == {"r1"}
    found = judge(run, utcnow(), process_owner(), registry)
    assert found is not None and found.counts


async def test_runs_awaiting_delivery_are_those_no_live_worker_is_on() -> None:
    storage = InMemoryStorageBackend()
    await _store(storage, _run("round", RunStatus.RUNNING, new_owner(OwnerKind.ROUND), 600))
    await _store(storage, _run("queued", RunStatus.PENDING, QUEUED_OWNER, 600))
    await _store(storage, _run("busy", RunStatus.RUNNING, new_owner(OwnerKind.ROUND), 600))
    await _store(storage, _run("executing", RunStatus.RUNNING, "h1:1:a", 600))
    live = Liveness.of([_worker("h1:1:a", 1, ["busy", "executing"])], utcnow(), ttl=30)
    found = {run.run_id async for run in awaiting_delivery(storage, live)}
    assert found == {"round", "queued"}


def test_a_claim_of_a_scheduler_that_stopped_beating_is_taken_back_at_once() -> None:
    """A scheduler claimed a due run (a 5-minute claim lease) and was killed before it
    sent it: once its registry record goes stale the run is sent again, as a delivery."""
    scheduler = "elsewhere:7:abc"
    run = _run("r1", RunStatus.RUNNING, f"sweep:{scheduler}/1a2b3c4d", expires_in=300)
    run.last_sequence = 6
    assert sweeper_of(run.lease_owner) == scheduler
    assert judge(run, utcnow(), process_owner()) is None  # leases alone: wait 5 minutes
    live = Liveness.of([_worker(scheduler, 31)], utcnow(), ttl=30)
    found = judge(run, utcnow(), process_owner(), live)
    assert found is not None and found.steal_from == run.lease_owner and not found.counts
    alive = Liveness.of([_worker(scheduler, 1)], utcnow(), ttl=30)
    assert judge(run, utcnow(), process_owner(), alive) is None


async def test_a_handed_back_run_is_a_delivery_not_a_recovery() -> None:
    """A stopping worker hands back the runs it executes: each moves to a delivery
    placeholder for the queue allowance. The sweep leaves it alone meanwhile (the
    hand-back message takes it), and if that message is lost, sends it again once the
    allowance ran out without counting a recovery attempt. Runs the worker does not
    hold (another worker's, a dispatch round's) are not touched."""
    storage = InMemoryStorageBackend()
    me, other, round_owner = process_owner(), process_owner(), new_owner(OwnerKind.ROUND)
    await _store(storage, _run("mine", RunStatus.RUNNING, me, 30))
    await _store(storage, _run("theirs", RunStatus.RUNNING, other, 30))
    await _store(storage, _run("round", RunStatus.RUNNING, round_owner, 30))
    handed = await hand_back(storage, ["mine", "theirs", "round", "gone"], me, wait=300)
    [(run_id, placeholder)] = handed
    run = await storage.get_run("mine")
    assert run_id == "mine" and run.lease_owner == placeholder and is_delivery(placeholder)
    assert 299 < (run.lease_expires_at - utcnow()).total_seconds() <= 300
    assert (await storage.get_run("theirs")).lease_owner == other
    assert (await storage.get_run("round")).lease_owner == round_owner
    sweeper = new_owner(OwnerKind.SWEEP)
    assert judge(run, utcnow(), sweeper, Liveness(registry=True)) is None
    later = utcnow() + timedelta(seconds=301)
    found = judge(run, later, sweeper, Liveness(registry=True))
    assert found is not None and not found.counts
