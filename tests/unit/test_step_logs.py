"""What a step body sees of its run: ``get_context()`` inline and on a step worker, and
log messages written from inside a step, which must not shift the workflow's own."""

from __future__ import annotations

from pyworkflow import EventType, get_context, get_workflow_events, sleep, start, step, workflow
from pyworkflow.engine.runs import RunRequest, build_run
from pyworkflow.storage.memory import InMemoryStorageBackend
from tests.replay.drivers import drive_dispatched

seen: list[tuple[str, str]] = []


@step(name="sl_note")
async def note(text: str) -> str:
    ctx = get_context()
    seen.append((ctx.run_id, ctx.workflow_name))
    ctx.log("info", f"inside {text}")
    return text


@workflow(name="sl_logs")
async def logs() -> str:
    ctx = get_context()
    await note("a")
    ctx.log("info", "after a")
    await sleep("0.05s")
    ctx.log("info", "after sleep")
    return await note("b")


def _messages(events: list) -> list[str]:
    return [e.data["message"] for e in events if e.type == EventType.LOG_INFO]


async def test_step_log_messages_do_not_hide_later_workflow_messages() -> None:
    """Replayed after the sleep, the workflow's "after sleep" must still be recorded
    although the step's own message (not written again on replay) came before it."""
    seen.clear()
    storage = InMemoryStorageBackend()
    run_id = await start(logs, storage=storage)
    from pyworkflow import wait_for_run

    assert (await wait_for_run(run_id, timeout=5, storage=storage)).result == "b"
    events = await get_workflow_events(run_id, storage=storage)
    assert _messages(events) == ["inside a", "after a", "after sleep", "inside b"]
    inside = [e for e in events if e.data.get("message", "").startswith("inside")]
    assert [e.data["step_id"] for e in inside] == ["step:sl_note#1", "step:sl_note#2"]
    assert seen == [(run_id, "sl_logs")] * 2


async def test_a_dispatched_step_sees_its_run_through_get_context() -> None:
    seen.clear()
    storage = InMemoryStorageBackend()
    request = RunRequest(definition=logs.__workflow__, args=(), kwargs={})
    run, started = build_run(request, owner=None, lease_ttl=0)
    await storage.create_run(run, [started])
    await drive_dispatched(storage, run.run_id, "new")
    assert (await storage.get_run(run.run_id)).result_payload == '"b"'
    assert seen == [(run.run_id, "sl_logs")] * 2
    # On a step worker a step's messages go to the worker's log, not into the history.
    events = await get_workflow_events(run.run_id, storage=storage)
    assert _messages(events) == ["after a", "after sleep"]


@workflow(name="sl_huge_log")
async def huge_log() -> str:
    get_context().log("warning", "x" * 5_000_000)
    await sleep("0.01s")
    return "done"


async def test_a_huge_log_message_is_cut_not_a_failed_run() -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(huge_log, storage=storage)
    from pyworkflow import wait_for_run

    run = await wait_for_run(run_id, timeout=5, storage=storage)
    assert (run.status.value, run.result) == ("completed", "done")
    [entry] = [
        e
        for e in await get_workflow_events(run_id, storage=storage)
        if e.type.value == "log.warning"
    ]
    assert len(entry.data["message"]) < 40_000
    assert "truncated 4,967,232 chars" in entry.data["message"]
