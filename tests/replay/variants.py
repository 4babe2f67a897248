"""Incompatible versions of the workflows in ``workflows.py``.

Each ``<name>_changed`` workflow asks for a different durable operation than its
original at a point its golden history has already recorded; replaying that history with
it must fail with ``NonDeterminismError`` before any step body runs again.
"""

from __future__ import annotations

import asyncio

from pyworkflow import (
    CancellationError,
    continue_as_new,
    hook,
    set_step_context,
    shield,
    sleep,
    start_child_workflow,
    workflow,
)
from tests.replay import workflows as w


@workflow(name="golden_hook_approval_changed")
async def hook_approval(doc: str) -> object:
    await w.draft(doc)
    return await hook("golden_sign_off")  # was: the typed hook golden_approval


@workflow(name="golden_hook_expiry_changed")
async def hook_expiry(who: str) -> str:
    return await w.remind(who)  # was: hook golden_reply first


@workflow(name="golden_parent_changed")
async def parent(order_id: str) -> object:
    return await start_child_workflow(w.golden_child_invoice, order_id)  # was: ship first


@workflow(name="golden_cancellable_changed")
async def cancellable(order_id: str) -> str:
    hold = await w.reserve(order_id)
    try:
        await sleep(w.FOREVER, name="await_payment")
    except CancellationError:
        async with shield():
            await w.tell_customer(order_id)  # was: release the hold first
            await w.release(hold)
        raise
    return "paid"


@workflow(name="golden_batches_changed")
async def batches(batch: int, processed: int) -> None:
    await sleep(w.PAUSE, name="between_batches")  # was: process the batch first
    continue_as_new(batch + 1, processed)


@workflow(name="golden_tenant_report_changed", context_class=w.Tenant)
async def tenant_report(tenant: str, user: str) -> str:
    first = await w.read_tenant("usage")  # was: set the step context first
    await set_step_context(w.Tenant(tenant=tenant, user=user))
    return first


@workflow(name="golden_retry_later_changed")
async def retry_later(amount: int) -> str:
    return await w.receipt(f"{amount} unpaid")  # was: charge the card first


@workflow(name="golden_dispatched_order_changed", context_class=w.Tenant)
async def dispatched_order(order_id: str) -> str:
    await set_step_context(w.Tenant(tenant="acme", user="ops"))
    item = await w.pick(order_id)
    # was: two golden_price steps
    eu, summary = await asyncio.gather(w.price(item, "EU"), w.total([item], 1))
    return f"{eu} {summary}"


@workflow(name="golden_shipment_changed")
async def shipment(order_id: str) -> list[str]:
    return [await w.pack(order_id), await w.label(order_id)]  # was: label first


@workflow(name="golden_settle_or_void_changed")
async def settle_or_void(invoice_id: str) -> str:
    ledger = await w.open_ledger(invoice_id)
    return await w.void_invoice(ledger)  # was: settle the invoice (its retry waits)


@workflow(name="golden_review_or_cancel_changed")
async def review_or_cancel(doc: str) -> object:
    await w.review(doc)
    return await hook("golden_second_review")  # was: the hook golden_review


@workflow(name="golden_deadline_changed", max_duration="2s")
async def deadline(order_id: str) -> str:
    stock = await w.reserve_stock(order_id)
    exported = await w.export(stock)  # was: the pause before_export first
    await sleep(w.PAUSE, name="before_export")
    return exported
