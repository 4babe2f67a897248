"""How the golden tests execute runs: on the local runtime, or as Celery workers do
without Celery (workflow executions that dispatch their steps, step workers that run
them). The recorder uses them too, where the public API does not reach (dispatched
steps, recovering a run)."""

from __future__ import annotations

import asyncio

from pyworkflow import wait_for_run
from pyworkflow.engine.runner import new_owner_id, resume_run
from pyworkflow.engine.step_worker import execute_dispatched_step
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.schemas import RunStatus, utcnow
from pyworkflow.testing import resume_local
from tests.replay.spec import in_flight

LEASE_TTL = 30.0
WAIT_SECONDS = 30.0


async def drive_local(storage: InMemoryStorageBackend, run_id: str, state: str) -> None:
    """Continue the run on the local runtime, as a process picking it up would."""
    if state == "interrupted":  # what the local runtime's recovery pass does
        run = await storage.get_run(run_id)
        assert run is not None
        await resume_run(
            storage,
            run_id,
            owner=new_owner_id(),
            lease_ttl=LEASE_TTL,
            recovery=True,
            steal_from=run.lease_owner,
        )
    else:
        await resume_local(run_id, storage=storage)
    await wait_for_run(run_id, storage=storage, timeout=WAIT_SECONDS)


async def drive_dispatched(
    storage: InMemoryStorageBackend,
    run_id: str,
    state: str,
    *,
    lose_first_round: bool = False,
    force: bool = False,
) -> None:
    """Execute the run as Celery workers do, without Celery: workflow executions that
    dispatch their steps, step workers that run each dispatched attempt and append its
    outcome, and the resume of the run once its round is done.

    ``state``: ``"new"`` (created, never executed), or a cut state. With
    ``lose_first_round`` the first round's step worker dies before running anything and
    the recovery sweep takes the run over (``workflow.interrupted``). With ``force`` a
    suspended run is woken before it is due (as a cancellation wakes it). Returns once
    the run ended, or waits for longer than a test does (for its cancellation, say).
    """
    run = await storage.get_run(run_id)
    assert run is not None
    steal = None if state == "suspended" else run.lease_owner  # a queue placeholder, a round
    recovery = state == "interrupted"
    if state == "dispatched" and steal is not None:
        steal = await run_round(storage, run_id, steal)
    owner = new_owner_id()
    while True:
        outcome = await resume_run(
            storage,
            run_id,
            owner=owner,
            lease_ttl=LEASE_TTL,
            recovery=recovery,
            steal_from=steal,
            force=force,
            dispatch_steps=True,
        )
        recovery, steal, force = False, None, False
        if outcome is None or outcome.status is None:
            return
        if outcome.round_owner is not None:
            steal = outcome.round_owner
            if lose_first_round:  # its worker died: the recovery sweep takes the run over
                lose_first_round, recovery = False, True
            else:
                steal = await run_round(storage, run_id, steal)
            continue
        if outcome.status != RunStatus.SUSPENDED or outcome.wake_at is None:
            return
        due_in = (outcome.wake_at - utcnow()).total_seconds()
        if due_in > WAIT_SECONDS:
            return
        await asyncio.sleep(max(0.0, due_in) + 0.01)


async def run_round(storage: InMemoryStorageBackend, run_id: str, round_owner: str) -> str:
    """The step workers of one round: each in-flight attempt of it, in log order. Returns
    the lease holder the run is to be resumed from (the round hands it on when done)."""
    events = [e.to_dict() for e in await storage.get_events(run_id)]
    resume_from = round_owner
    for op_id, owner in in_flight(events).items():
        if owner == round_owner:
            result = await execute_dispatched_step(
                storage, run_id, op_id, round_owner, lease_ttl=LEASE_TTL
            )
            if result.round_done and result.resume_from is not None:
                resume_from = result.resume_from
    return resume_from
