"""Record the golden histories in ``histories/`` (run by hand, never by the test suite).

    .venv/bin/python -m tests.replay.record_histories                 # the missing ones
    .venv/bin/python -m tests.replay.record_histories --force NAME    # re-record NAME

A golden history guards the compatibility of the code version that wrote it, so files
that exist are kept unless ``--force`` names them: re-record one only when its workflow
in ``workflows.py`` changed on purpose (and never to make a failing replay pass).

Each scenario runs its workflows to the end on in-memory storage, with fixed run ids
(children and continuations get ids derived from them), on the local runtime or, for
the dispatched ones, through the engine's step-worker path (see ``drivers``). Its file
holds the whole recorded world (see ``spec``) and is written only after every cut has
been replayed and has reproduced the recording. Timestamps, event ids, hook tokens and
dispatch-round ids are kept as recorded (they differ between recordings); the test does
not compare them. Histories without ``"format"`` come from the first version of this
script (events up to one suspension, plus ``expect``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pyworkflow import (
    cancel_workflow,
    resume_hook,
    send_signal,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.core import registry
from pyworkflow.engine.context import TERMINATE_PREFIX
from pyworkflow.engine.runs import RunRequest, build_run
from pyworkflow.runtime import get_runtime
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.schemas import utcnow
from tests.replay import drivers, harness, spec
from tests.replay import workflows as w

HERE = Path(__file__).parent / "histories"

# The lease a run queued for a Celery worker is created with (pyworkflow.celery.messages).
QUEUED_OWNER = "celery:queued"

Scenario = Callable[[InMemoryStorageBackend, str], Awaitable[None]]


async def hook_received(storage: InMemoryStorageBackend, run_id: str) -> None:
    await start(w.golden_hook_approval, "release notes", storage=storage, run_id=run_id)
    payload = w.Approval(approved=True, approver="ada", note="ship it")
    await resume_hook(w.HOOK_TOKENS[-1], payload, storage=storage)


async def hook_expired(storage: InMemoryStorageBackend, run_id: str) -> None:
    await start(w.golden_hook_expiry, "bob", storage=storage, run_id=run_id)


async def child_workflows(storage: InMemoryStorageBackend, run_id: str) -> None:
    await start(w.golden_parent, "ORD-7", storage=storage, run_id=run_id)


async def cancelled_with_shield(storage: InMemoryStorageBackend, run_id: str) -> None:
    await start(w.golden_cancellable, "ORD-9", storage=storage, run_id=run_id)
    await cancel_workflow(run_id, "customer changed their mind", storage=storage)


async def continued_as_new(storage: InMemoryStorageBackend, run_id: str) -> None:
    await start(w.golden_batches, 1, 0, storage=storage, run_id=run_id)


async def step_context(storage: InMemoryStorageBackend, run_id: str) -> None:
    await start(w.golden_tenant_report, "acme", "ada", storage=storage, run_id=run_id)


async def retried_later(storage: InMemoryStorageBackend, run_id: str) -> None:
    await start(w.golden_retry_later, 42, storage=storage, run_id=run_id)


async def log_events(storage: InMemoryStorageBackend, run_id: str) -> None:
    await start(w.golden_logging, "abc", storage=storage, run_id=run_id)


async def patched_change(storage: InMemoryStorageBackend, run_id: str) -> None:
    await start(w.golden_patched, "ORD-3", storage=storage, run_id=run_id)


async def signals(storage: InMemoryStorageBackend, run_id: str) -> None:
    signal = ("golden_item", "apple")
    await start(w.golden_signals, "ORD-5", storage=storage, run_id=run_id, signal=signal)
    # Sent while the run sleeps: buffered, so in the inbox at every cut the run rests at.
    await send_signal(run_id, "golden_item", "pear", storage=storage, signal_id="s-pear")
    await send_signal(run_id, "golden_item", "plum", storage=storage, signal_id="s-plum")


async def _queue(storage: InMemoryStorageBackend, fn: Any, run_id: str, *args: Any) -> None:
    """Create the run as the Celery runtime does: pending, leased to the queue."""
    request = RunRequest(definition=fn.__workflow__, args=args, kwargs={}, run_id=run_id)
    run, started = build_run(request, owner=None, lease_ttl=0)
    run.lease_owner = QUEUED_OWNER
    await storage.create_run(run, [started])


async def dispatched_steps(storage: InMemoryStorageBackend, run_id: str) -> None:
    await _queue(storage, w.golden_dispatched_order, run_id, "ORD-3")
    await drivers.drive_dispatched(storage, run_id, "new")


async def recovered_lost_step_worker(storage: InMemoryStorageBackend, run_id: str) -> None:
    await _queue(storage, w.golden_shipment, run_id, "S1")
    await drivers.drive_dispatched(storage, run_id, "new", lose_first_round=True)


async def recovered_after_crash(storage: InMemoryStorageBackend, run_id: str) -> None:
    """The process dies inside a step (the attempt leaves no trace); another recovers it."""
    inside = w.CRASH_IN["golden_pack"] = asyncio.Event()
    execution = asyncio.ensure_future(
        start(w.golden_shipment, "S2", storage=storage, run_id=run_id)
    )
    await inside.wait()
    execution.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await execution
    await drivers.drive_local(storage, run_id, "interrupted")


# -- what an ended run leaves open (recorded by the version that added "v") ------------


async def retry_wait_cancelled(storage: InMemoryStorageBackend, run_id: str) -> None:
    await start(w.golden_settle_or_void, "INV-5", storage=storage, run_id=run_id)
    await cancel_workflow(run_id, "invoice disputed", storage=storage)


async def hook_disposed_on_cancel(storage: InMemoryStorageBackend, run_id: str) -> None:
    await start(w.golden_review_or_cancel, "spec v2", storage=storage, run_id=run_id)
    await cancel_workflow(run_id, "review no longer needed", storage=storage)


async def step_cut_by_deadline(storage: InMemoryStorageBackend, run_id: str) -> None:
    await start(w.golden_deadline, "ORD-11", storage=storage, run_id=run_id)


async def dispatched_retry_terminated(storage: InMemoryStorageBackend, run_id: str) -> None:
    """Terminated as a schedule's ``terminate_other`` overlap policy (or a parent's
    ``parent_close_policy="terminate"``) does it: no more of its code runs."""
    await _queue(storage, w.golden_dispatched_refund, run_id, "ORD-12")
    await drivers.drive_dispatched(storage, run_id, "new")  # until it waits for the retry
    reason = f"{TERMINATE_PREFIX}a newer order replaces ORD-12"
    await storage.request_cancellation(run_id, reason, utcnow())
    await drivers.drive_dispatched(storage, run_id, "suspended", force=True)


# name -> (scenario, mode, description, what the main run must end with)
SCENARIOS: dict[str, tuple[Scenario, str, str, dict[str, Any]]] = {
    "hook_received_typed": (
        hook_received,
        "local",
        "a typed (Pydantic) hook receives its payload; a pause after it",
        {
            "status": "completed",
            "result": {"published": "draft of release notes, approved by ada", "note": "ship it"},
        },
    ),
    "hook_expired": (
        hook_expired,
        "local",
        "a hook times out (hook.expired), the workflow falls back to a step",
        {"status": "completed", "result": "reminded bob"},
    ),
    "child_workflows": (
        child_workflows,
        "local",
        "children that complete, fail, and are cancelled by their parent",
        {
            "status": "completed",
            "result": {"parcel": "parcel-ORD-7", "invoice": "failed", "notification": "cancelled"},
        },
    ),
    "cancelled_with_shield": (
        cancelled_with_shield,
        "local",
        "a waiting run is cancelled; its shielded cleanup (a step, a pause, a step) still runs",
        {"status": "cancelled", "error": "CancellationError: customer changed their mind"},
    ),
    "continued_as_new": (
        continued_as_new,
        "local",
        "a run continues as new once; both runs of the chain",
        {"status": "continued_as_new", "result": None},
    ),
    "step_context": (
        step_context,
        "local",
        "the workflow sets a step context; steps before and after a pause read it",
        {"status": "completed", "result": ["usage for acme/ada", "invoices for acme/ada"]},
    ),
    "retried_after_delay": (
        retried_later,
        "local",
        "a step fails, its retry waits durably (suspended) and succeeds",
        {"status": "completed", "result": "receipt: charged 42"},
    ),
    "log_events": (
        log_events,
        "local",
        "log.debug/info before a pause, log.warning/error after it",
        {"status": "completed", "result": 6},
    ),
    "patched_change": (
        patched_change,
        "local",
        "a run takes the new path of a patch (patch.applied once), before and after a pause",
        {
            "status": "completed",
            "result": ["booked ORD-3", "screened ORD-3", "screened ORD-3 again"],
        },
    ),
    "signals": (
        signals,
        "local",
        "signal-with-start taken at once, two signals buffered during a sleep and taken "
        "in order, a wait timing out",
        {
            "status": "completed",
            "result": ["ORD-5:apple", "ORD-5:timed out", "ORD-5:pear", "ORD-5:plum"],
        },
    ),
    "dispatched_steps": (
        dispatched_steps,
        "dispatch",
        "steps run by step workers (Celery's shape), a gather of two, a force_local step",
        {
            "status": "completed",
            "result": "2 prices: item-ORD-3@EU for acme + item-ORD-3@US for acme",
        },
    ),
    "recovered_lost_step_worker": (
        recovered_lost_step_worker,
        "dispatch",
        "the worker of a dispatched step dies; the recovery sweep dispatches it again",
        {"status": "completed", "result": ["label-S1", "box-S1"]},
    ),
    "recovered_after_crash": (
        recovered_after_crash,
        "local",
        "the process dies inside a step; recovery runs the step again",
        {"status": "completed", "result": ["label-S2", "box-S2"]},
    ),
    "retry_wait_cancelled": (
        retry_wait_cancelled,
        "local",
        "a run waiting for a step's retry is cancelled: step.cancelled for the attempt that "
        "never runs, after a cleanup step",
        {"status": "cancelled", "error": "CancellationError: invoice disputed"},
    ),
    "hook_disposed_on_cancel": (
        hook_disposed_on_cancel,
        "local",
        "a run waiting on a hook is cancelled: hook.disposed",
        {"status": "cancelled", "error": "CancellationError: review no longer needed"},
    ),
    "step_cut_by_deadline": (
        step_cut_by_deadline,
        "local",
        "the max_duration deadline cuts a running step: step.cancelled, workflow.failed",
        {
            "status": "failed",
            "error": (
                "WorkflowTimeoutError: workflow 'golden_deadline' exceeded its max_duration 2s"
            ),
        },
    ),
    "dispatched_retry_terminated": (
        dispatched_retry_terminated,
        "dispatch",
        "steps run by step workers; one waits for its retry when the run is terminated: "
        "step.cancelled, workflow.cancelled without running any more code",
        {
            "status": "cancelled",
            "error": "CancellationError: terminated: a newer order replaces ORD-12",
        },
    ),
}


async def snapshot(storage: InMemoryStorageBackend, main: str, mode: str, about: str) -> Any:
    """The recorded world of a scenario once all its runs have ended."""
    order, entries, hooks, signals = [main], [], [], []
    for run_id in order:  # grows while children and continuations are found
        run = await wait_for_run(run_id, storage=storage, timeout=drivers.WAIT_SECONDS)
        events = [e.to_dict() for e in await storage.get_events(run_id)]
        entries.append({"run": spec.describe_run(run), "events": events})
        for event in events:
            new = event["data"].get("child_run_id") or event["data"].get("new_run_id")
            if new and new not in order:
                order.append(new)
        found = await storage.list_hooks(run_id=run_id)
        hooks += [spec.describe_hook(h) for h in sorted(found, key=lambda h: h.created_at)]
        signals += [spec.describe_signal(s) for s in await storage.list_signals(run_id)]
    cuts = [
        {"run_id": entry["run"]["run_id"], "after": after, "state": state}
        for entry in entries
        for after, state in spec.replayable_points(entry["run"], entry["events"])
    ]
    return {
        "format": spec.FORMAT,
        "description": about,
        "mode": mode,
        "main": main,
        "cuts": cuts,
        "runs": entries,
        "hooks": hooks,
        "signals": signals,
    }


async def record(name: str) -> None:
    scenario, mode, about, expect = SCENARIOS[name]
    storage = InMemoryStorageBackend()
    run_id = f"run_golden_{name}"
    await scenario(storage, run_id)
    golden = await snapshot(storage, run_id, mode, about)
    await get_runtime("local").shutdown()
    main = spec.runs_of(golden)[run_id]["run"]
    got = {k: main[k] for k in expect}
    assert got == expect, f"{name}: recorded {got}, expected {expect}"
    assert golden["cuts"], f"{name}: the history never rested anywhere to replay from"
    for cut in spec.cuts_of(golden):
        replayed = await harness.replay(golden, cut)
        await get_runtime("local").shutdown()
        want = spec.expected(golden, cut)
        assert replayed == want, (
            f"{name} {spec.cut_label(golden, cut)}: replay differs\n{replayed}\n{want}"
        )
    (HERE / f"{name}.json").write_text(json.dumps(golden, indent=2) + "\n")


# -- the first version's histories -------------------------------------------------------


async def record_legacy(name: str, fn: Any, args: list[Any], expect: dict[str, Any]) -> None:
    """Events up to the run's first suspension, plus what replaying them must produce."""
    storage = InMemoryStorageBackend()
    run_id = await start(fn, *args, storage=storage)
    events = await storage.get_events(run_id)
    payload = {
        "workflow": fn.__workflow__.name,
        "args": args,
        "events": [e.to_dict() for e in events],
        "expect": expect,
    }
    (HERE / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    await get_runtime("local").shutdown()


async def order_with_gather_and_sleep() -> None:
    expect = {"status": "completed", "result": {"order": "ORD-1", "count": 3}}
    await record_legacy("order_with_gather_and_sleep", w.golden_order, ["ORD-1"], expect)


async def retries_exhausted_then_fallback() -> None:
    expect = {"status": "completed", "result": "fallback"}
    await record_legacy(
        "retries_exhausted_then_fallback", w.golden_recovers_from_failure, ["k"], expect
    )


async def changed_code_is_non_deterministic() -> None:
    """Recorded from an older version of golden_changed (restored afterwards)."""
    saved = registry._workflows.pop("golden_changed"), registry._steps.pop("golden_charge")

    @step(name="golden_charge")
    async def charge(amount: int) -> int:
        return amount

    @workflow(name="golden_changed")
    async def golden_changed(amount: int) -> int:
        charged = await charge(amount)
        await sleep(0.01)
        return charged

    expect = {
        "status": "failed",
        "error_contains": ["NonDeterminismError", "step:golden_charge#1", "step:golden_refund#1"],
    }
    try:
        await record_legacy("changed_code_is_non_deterministic", golden_changed, [5], expect)
    finally:
        registry._workflows["golden_changed"], registry._steps["golden_charge"] = saved


LEGACY: dict[str, Callable[[], Awaitable[None]]] = {
    "order_with_gather_and_sleep": order_with_gather_and_sleep,
    "retries_exhausted_then_fallback": retries_exhausted_then_fallback,
    "changed_code_is_non_deterministic": changed_code_is_non_deterministic,
}


async def main(names: list[str], force: bool) -> None:
    HERE.mkdir(exist_ok=True)
    for name in names:
        if (HERE / f"{name}.json").exists() and not force:
            print(f"kept     {name} (exists; --force re-records it)")
            continue
        await (LEGACY[name]() if name in LEGACY else record(name))
        print(f"recorded {name}")


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="histories to record (default: all)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    options = parser.parse_args(argv)
    known = [*LEGACY, *SCENARIOS]
    unknown = sorted(set(options.names) - set(known))
    if options.force and not options.names:
        parser.error("--force needs the names of the histories to re-record")
    if unknown:
        parser.error(f"unknown histories: {', '.join(unknown)} (known: {', '.join(known)})")
    started = utcnow()
    asyncio.run(main(options.names or known, options.force))
    print(f"done in {(utcnow() - started).total_seconds():.1f}s")


if __name__ == "__main__":
    cli()
