"""Workflows the server tests run (registered by importing this module)."""

from __future__ import annotations

from pydantic import BaseModel

from pyworkflow import (
    FatalError,
    define_hook,
    define_signal,
    hook,
    set_query_handler,
    sleep,
    start_child_workflow,
    step,
    wait_for_signal,
    workflow,
)


class Approval(BaseModel):
    approved: bool
    approver: str


approval_hook = define_hook("srv_approval", Approval)


@step()
async def srv_double(x: int) -> int:
    return 2 * x


@step(max_retries=1, retry_delay=0.05)
async def srv_boom() -> None:
    raise FatalError("card declined")


@workflow(tags=["srv-test"])
async def srv_quick(x: int) -> int:
    return await srv_double(x)


@workflow()
async def srv_fails() -> None:
    await srv_boom()


@workflow()
async def srv_sleeper(seconds: float) -> str:
    await srv_double(1)
    await sleep(seconds)
    return "woke"


@workflow()
async def srv_approval(order_id: str) -> dict[str, object]:
    """Waits for a typed hook (schema stored: the webhook receiver validates with it)."""
    await srv_double(1)
    decision = await approval_hook(timeout="1h")
    return {"order_id": order_id, "approved": decision.approved, "by": decision.approver}


@workflow()
async def srv_untyped_hook() -> object:
    return await hook("srv_raw", timeout="1h")


@workflow()
async def srv_parent(n: int) -> int:
    total = 0
    for i in range(n):
        total += await start_child_workflow(srv_quick, i)
    return total


class Price(BaseModel):
    sku: str
    cents: int


define_signal("srv_price", Price)


@workflow()
async def srv_price_watch(count: int) -> list[int]:
    """Waits for ``count`` typed price signals; returns their cents in order."""
    seen: list[int] = []
    set_query_handler("seen", lambda: {"prices": list(seen), "left": count - len(seen)})
    for _ in range(count):
        seen.append((await wait_for_signal("srv_price", Price)).cents)
    return seen
