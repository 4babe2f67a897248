"""Hooks: a run waits for a payload from outside (here, a manager's approval).

``define_hook("ex11_approval", Approval)`` declares a typed hook. Awaiting it in the
workflow creates the hook, hands its token to ``on_created`` (a real app would email an
approval link; this one prints the token masked and keeps it in an "outbox"), and
suspends the run. Nothing holds the run in memory while it waits.

From outside the workflow, ``resume_hook(token, payload)`` delivers the payload. A
payload that does not validate as ``Approval`` is refused with Pydantic's
``ValidationError`` and the hook stays open. A valid one wakes the run, which receives
an ``Approval`` instance. Tokens are single use, and the event log only ever holds a
hash of the token and a short hint.

The second workflow waits on an untyped ``hook(..., timeout="500ms")`` that nobody
answers: ``HookExpiredError`` is raised at the ``await`` and the workflow escalates.
A late delivery is refused with ``HookExpiredError`` too.

Storage: ``$PYWORKFLOW_EXAMPLE_DB`` if set, else ``.pyworkflow/examples.db``.
"""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel, ValidationError

from pyworkflow import (
    EventType,
    HookAlreadyReceivedError,
    HookExpiredError,
    configure,
    define_hook,
    get_workflow_events,
    get_workflow_run,
    hook,
    list_hooks,
    resume_hook,
    start,
    step,
    wait_for_run,
    workflow,
)

# Where on_created "sends" tokens: hook name -> token. The token is a capability (whoever
# has it can resume the run), so it is printed masked only.
outbox: dict[str, str] = {}


async def send_approval_link(token: str) -> None:
    outbox["ex11_approval"] = token
    print(f"  (on_created) approval link sent with token {token[:8]}...{'*' * 8}")


async def send_reply_request(token: str) -> None:
    outbox["ex11_reply"] = token
    print(f"  (on_created) reply request sent with token {token[:8]}...{'*' * 8}")


class Approval(BaseModel):
    approved: bool
    approver: str
    note: str = ""


approval = define_hook("ex11_approval", Approval)


@step()
async def ship_order(order_id: str) -> str:
    print(f"  (step body) shipping {order_id}")
    return f"{order_id} shipped"


@workflow(name="ex11_order_approval")
async def order_approval(order_id: str) -> dict[str, object]:
    decision = await approval(timeout="1h", on_created=send_approval_link)
    assert isinstance(decision, Approval)
    if not decision.approved:
        return {"order": order_id, "status": "rejected", "by": decision.approver}
    shipped = await ship_order(order_id)
    return {"order": order_id, "status": shipped, "by": decision.approver}


@workflow(name="ex11_reply_or_escalate")
async def reply_or_escalate(ticket: str) -> str:
    try:
        reply = await hook("ex11_reply", timeout="500ms", on_created=send_reply_request)
    except HookExpiredError:
        return f"{ticket}: no reply in time, escalated"
    return f"{ticket}: customer replied {reply!r}"


async def approval_flow() -> None:
    print("1) a typed hook: wait for an approval")
    run_id = await start(order_approval, "order-7")
    run = await get_workflow_run(run_id)
    assert run is not None
    print(f"after start(): status={run.status.value}")
    assert run.status == "suspended"

    hooks = await list_hooks(run_id=run_id)
    for h in hooks:
        print(f"  pending hook: id={h.hook_id} name={h.name} status={h.status.value}")
        print(f"    expires_at={h.expires_at} token in listing={h.token!r}")
    assert [(h.hook_id, h.status.value) for h in hooks] == [("hook:ex11_approval#1", "pending")]
    assert hooks[0].token == ""  # listings never carry the token

    token = outbox["ex11_approval"]
    try:
        await resume_hook(token, {"approved": "maybe"})
    except ValidationError as exc:
        fields = sorted(str(err["loc"][0]) for err in exc.errors())
        print(f"invalid payload refused: {exc.error_count()} errors on fields {fields}")
        assert fields == ["approved", "approver"]
    else:
        raise AssertionError("the invalid payload was accepted")
    run = await get_workflow_run(run_id)
    assert run is not None and run.status == "suspended"  # the hook is still open

    delivered = await resume_hook(token, {"approved": True, "approver": "ada"})
    print(f"resume_hook(): run_id={delivered.run_id} hook_id={delivered.hook_id}")
    print(f"  status={delivered.status.value}")
    assert delivered.run_id == run_id and delivered.status == "received"

    run = await wait_for_run(run_id, timeout=10)
    print(f"finished: status={run.status.value} result={run.result}")
    assert run.status == "completed"
    assert run.result == {"order": "order-7", "status": "order-7 shipped", "by": "ada"}

    try:
        await resume_hook(token, {"approved": False, "approver": "eve"})
    except HookAlreadyReceivedError as exc:
        print(f"second delivery refused: {type(exc).__name__}: {exc}")
    else:
        raise AssertionError("a token was accepted twice")

    events = await get_workflow_events(run_id)
    print("event log:")
    for e in events:
        print(f"  {e.sequence:>3}  {e.type.value:<20} {e.data}")
    types = [e.type for e in events]
    assert types.count(EventType.HOOK_CREATED) == 1
    assert types.count(EventType.HOOK_RECEIVED) == 1
    assert all(token not in str(e.data) for e in events)  # only a hash and a hint
    received = next(e for e in events if e.type == EventType.HOOK_RECEIVED)
    assert received.data["payload"] == {"approved": True, "approver": "ada", "note": ""}


async def timeout_flow() -> None:
    print("\n2) an untyped hook with a timeout that nobody answers")
    run_id = await start(reply_or_escalate, "ticket-42")
    run = await wait_for_run(run_id, timeout=10)
    print(f"finished: status={run.status.value} result={run.result!r}")
    assert run.status == "completed"
    assert run.result == "ticket-42: no reply in time, escalated"

    try:
        await resume_hook(outbox["ex11_reply"], "too late")
    except HookExpiredError as exc:
        print(f"late delivery refused: {type(exc).__name__}: {exc}")
    else:
        raise AssertionError("an expired hook accepted a payload")
    types = [e.type for e in await get_workflow_events(run_id)]
    assert EventType.HOOK_EXPIRED in types and EventType.HOOK_RECEIVED not in types


async def main() -> None:
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", ".pyworkflow/examples.db")
    configure(storage=f"sqlite:///{db}")

    await approval_flow()
    await timeout_flow()
    print("\nOK: typed payload delivered once, invalid payload refused, timeout escalated")


if __name__ == "__main__":
    asyncio.run(main())
