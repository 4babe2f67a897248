"""Workflows the dashboard tests run and the screenshots show: an order pipeline with a
retried step and a short sleep, a refund that fails, a report with child runs, an
approval waiting on a typed hook, and a shipment that sleeps for an hour (to cancel).

Importing this module registers them (``pyworkflow --module tests.server.ui_flows``).
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from pydantic import BaseModel, Field

from pyworkflow import (
    FatalError,
    RetryableError,
    define_hook,
    sleep,
    start_child_workflow,
    step,
    workflow,
)


class Approval(BaseModel):
    approved: bool
    approver: str = Field(description="who decided")
    priority: Literal["low", "normal", "high"] = "normal"
    limit_eur: float | None = None


manager_approval = define_hook("manager_approval", Approval)

_charges: Counter[str] = Counter()


@step()
async def reserve_stock(order_id: str, items: list[str]) -> str:
    return f"R-{order_id}-{len(items)}"


@step(max_retries=3, retry_delay=0.3)
async def charge_card(order_id: str, amount: float) -> dict[str, object]:
    _charges[order_id] += 1
    if _charges[order_id] == 1:  # the gateway times out once per order
        raise RetryableError("payment gateway timeout")
    return {"order_id": order_id, "charged": amount, "currency": "EUR"}


@step()
async def send_receipt(order_id: str) -> str:
    return f"receipt sent for {order_id}"


@workflow(tags=["orders"])
async def process_order(order_id: str, amount: float, items: list[str]) -> dict[str, object]:
    reservation = await reserve_stock(order_id, items)
    payment = await charge_card(order_id, amount)
    await sleep(0.4, name="settle")
    await send_receipt(order_id)
    return {"reservation": reservation, "payment": payment}


@step()
async def load_order(order_id: str) -> dict[str, object]:
    return {"order_id": order_id, "delivered_days_ago": 45}


@step(max_retries=0)
async def issue_refund(order: dict[str, object]) -> None:
    raise FatalError(f"refund window closed for order {order['order_id']} (30 days)")


@workflow(tags=["orders", "refunds"])
async def refund_order(order_id: str) -> None:
    order = await load_order(order_id)
    await issue_refund(order)


@step()
async def count_orders(region: str) -> int:
    return {"eu": 1204, "us": 987, "apac": 455}.get(region, 0)


@workflow(tags=["reports"])
async def summarize_region(region: str) -> int:
    return await count_orders(region)


@workflow(tags=["reports"])
async def nightly_report(day: str) -> dict[str, int]:
    totals = {}
    for region in ("eu", "us", "apac"):
        totals[region] = await start_child_workflow(summarize_region, region)
    return totals


@step()
async def check_fraud(order_id: str, amount: float) -> float:
    return 0.07 if amount < 5000 else 0.31


@workflow(tags=["orders"])
async def large_order_approval(order_id: str, amount: float) -> dict[str, object]:
    risk = await check_fraud(order_id, amount)
    decision = await manager_approval(timeout="1d")
    return {
        "order_id": order_id,
        "risk": risk,
        "approved": decision.approved,
        "by": decision.approver,
    }


@workflow(tags=["shipping"])
async def wait_for_shipment(order_id: str) -> str:
    await reserve_stock(order_id, ["parcel"])
    await sleep("1h", name="carrier_pickup")
    return "shipped"
