"""Workflow code the golden histories in ``histories/`` were recorded from.

Changing a workflow here in a way that changes its operation order must make the
matching golden test fail: that is the point of golden histories. Incompatible versions
of these workflows live in ``variants.py``.

Every step body counts its executions in :data:`CALLS`, so a replay can prove that it
did not run again a step whose outcome the history already holds.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

from pydantic import BaseModel

from pyworkflow import (
    CancellationError,
    ChildWorkflowFailedError,
    FatalError,
    HookExpiredError,
    RetryableError,
    SignalTimeoutError,
    StepContext,
    continue_as_new,
    define_hook,
    get_context,
    get_step_context,
    hook,
    patched,
    set_step_context,
    shield,
    sleep,
    start_child_workflow,
    step,
    wait_for_signal,
    workflow,
)
from pyworkflow.context import current_step

# Executions of each step body in this process, by step name.
CALLS: Counter[str] = Counter()

# Step name -> event: the step's next execution sets the event, then hangs until it is
# cancelled (how the recorder simulates a process dying inside a step).
CRASH_IN: dict[str, asyncio.Event] = {}

# Tokens handed to ``on_created`` (how the recorder delivers hook payloads).
HOOK_TOKENS: list[str] = []

# Long enough never to end while a golden is replayed: the cancellation goldens need the
# run still waiting when its cancellation is delivered.
FOREVER = "36500d"
# Short durable waits: each is a point where a run suspends and a history can be cut.
PAUSE = "0.3s"


def ran(name: str) -> None:
    CALLS[name] += 1


async def remember_token(token: str) -> None:
    HOOK_TOKENS.append(token)


def text_step(name: str, template: str) -> Callable[[str], Awaitable[str]]:
    """A step named ``name`` that returns ``template`` filled in with its argument."""

    @step(name=name)
    async def body(value: str) -> str:
        ran(name)
        return template.format(value)

    return body


# -- recorded by the first version of the recorder (histories without "format") ---------


@step(name="golden_fetch")
async def fetch(key: str) -> dict[str, str]:
    ran("golden_fetch")
    return {"key": key, "value": key.upper()}


@step(name="golden_flaky", max_retries=2, retry_delay=0.01)
async def flaky(key: str) -> str:
    ran("golden_flaky")
    raise RetryableError(f"always failing for {key}")


@step(name="golden_store")
async def store(values: list[str]) -> int:
    ran("golden_store")
    return len(values)


@workflow(name="golden_order")
async def golden_order(order_id: str) -> dict[str, object]:
    first = await fetch(order_id)
    a, b = await asyncio.gather(fetch("a"), fetch("b"))
    await sleep("1s", name="cooldown")
    count = await store([first["value"], a["value"], b["value"]])
    return {"order": order_id, "count": count}


@workflow(name="golden_recovers_from_failure")
async def golden_recovers_from_failure(key: str) -> str:
    try:
        await flaky(key)
    except RetryableError:
        outcome = "fallback"
    await sleep(0.01)
    return outcome


@step(name="golden_charge")
async def charge(amount: int) -> int:
    ran("golden_charge")
    return amount


@step(name="golden_refund")
async def refund(amount: int) -> int:
    ran("golden_refund")
    return -amount


@workflow(name="golden_changed")
async def golden_changed(amount: int) -> int:
    # The recorded history called golden_charge first; this version calls golden_refund.
    return await refund(amount)


# -- hooks ------------------------------------------------------------------------------


class Approval(BaseModel):
    approved: bool
    approver: str
    note: str | None = None


approval = define_hook("golden_approval", Approval)


draft = text_step("golden_draft", "draft of {}")


@step(name="golden_publish")
async def publish(text: str, approver: str) -> str:
    ran("golden_publish")
    return f"{text}, approved by {approver}"


@workflow(name="golden_hook_approval")
async def golden_hook_approval(doc: str) -> dict[str, object]:
    text = await draft(doc)
    decision = await approval(timeout="1h", on_created=remember_token)
    await sleep(PAUSE, name="after_decision")
    published = await publish(text, decision.approver) if decision.approved else None
    return {"published": published, "note": decision.note}


remind = text_step("golden_remind", "reminded {}")


@workflow(name="golden_hook_expiry")
async def golden_hook_expiry(who: str) -> str:
    try:
        answer = await hook("golden_reply", timeout=PAUSE, on_created=remember_token)
    except HookExpiredError:
        answer = None
    await sleep(PAUSE, name="after_expiry")
    return str(answer) if answer is not None else await remind(who)


# -- child workflows --------------------------------------------------------------------


ship = text_step("golden_ship", "parcel-{}")


@step(name="golden_invoice")
async def invoice(order_id: str) -> str:
    ran("golden_invoice")
    raise FatalError(f"no billing address for {order_id}")


notify_customer = text_step("golden_notify_customer", "notified {}")


@workflow(name="golden_child_ship")
async def golden_child_ship(order_id: str) -> str:
    return await ship(order_id)


@workflow(name="golden_child_invoice")
async def golden_child_invoice(order_id: str) -> str:
    return await invoice(order_id)


@workflow(name="golden_child_notify")
async def golden_child_notify(order_id: str) -> str:
    await sleep(FOREVER, name="until_cancelled")
    return await notify_customer(order_id)


@workflow(name="golden_parent")
async def golden_parent(order_id: str) -> dict[str, object]:
    parcel = await start_child_workflow(golden_child_ship, order_id)
    try:
        invoiced = await start_child_workflow(golden_child_invoice, order_id)
    except ChildWorkflowFailedError as exc:
        invoiced = exc.metadata["status"]
    handle = await start_child_workflow(golden_child_notify, order_id, wait_for_completion=False)
    await handle.cancel("notification no longer needed")
    try:
        notified = await handle.result()
    except ChildWorkflowFailedError as exc:
        notified = exc.metadata["status"]
    await sleep(PAUSE, name="wrap_up")
    return {"parcel": parcel, "invoice": invoiced, "notification": notified}


# -- cancellation -----------------------------------------------------------------------


reserve = text_step("golden_reserve", "hold-{}")
release = text_step("golden_release", "released {}")
tell_customer = text_step("golden_tell_customer", "told {}")


@workflow(name="golden_cancellable")
async def golden_cancellable(order_id: str) -> str:
    hold = await reserve(order_id)
    try:
        await sleep(FOREVER, name="await_payment")
    except CancellationError:
        async with shield():  # the cleanup runs to its end although the run is cancelled
            await release(hold)
            await sleep(PAUSE, name="cleanup_pause")
            await tell_customer(order_id)
        raise
    return "paid"


# -- continue-as-new --------------------------------------------------------------------


@step(name="golden_process_batch")
async def process_batch(batch: int) -> int:
    ran("golden_process_batch")
    return batch * 10


@workflow(name="golden_batches")
async def golden_batches(batch: int, processed: int) -> dict[str, int]:
    count = await process_batch(batch)
    await sleep(PAUSE, name="between_batches")
    if batch < 2:
        continue_as_new(batch + 1, processed + count)
    return {"batches": batch, "processed": processed + count}


# -- step context -----------------------------------------------------------------------


class Tenant(StepContext):
    tenant: str
    user: str


@step(name="golden_read_tenant")
async def read_tenant(item: str) -> str:
    ran("golden_read_tenant")
    ctx = get_step_context()
    assert isinstance(ctx, Tenant)
    return f"{item} for {ctx.tenant}/{ctx.user}"


@workflow(name="golden_tenant_report", context_class=Tenant)
async def golden_tenant_report(tenant: str, user: str) -> list[str]:
    await set_step_context(Tenant(tenant=tenant, user=user))
    first = await read_tenant("usage")
    await sleep(PAUSE, name="between_reads")
    second = await read_tenant("invoices")
    return [first, second]


# -- retries with a durable delay -------------------------------------------------------


@step(name="golden_charge_card", max_retries=2, retry_delay=0.3)
async def charge_card(amount: int) -> str:
    ran("golden_charge_card")
    info = current_step.get()
    if info is not None and info.attempt == 1:
        raise RetryableError(f"gateway timeout charging {amount}")
    return f"charged {amount}"


receipt = text_step("golden_receipt", "receipt: {}")


@workflow(name="golden_retry_later")
async def golden_retry_later(amount: int) -> str:
    charged = await charge_card(amount)
    return await receipt(charged)


# -- logging ----------------------------------------------------------------------------


@step(name="golden_lookup")
async def lookup(name: str) -> int:
    ran("golden_lookup")
    return len(name)


@workflow(name="golden_logging")
async def golden_logging(name: str) -> int:
    ctx = get_context()
    ctx.log("debug", f"looking up {name}")
    size = await lookup(name)
    ctx.log("info", f"{name} has size {size}")
    await sleep(PAUSE, name="before_check")
    ctx.log("warning", "check is slow")
    doubled = await lookup(name * 2)
    ctx.log("error", f"size went from {size} to {doubled}")
    return doubled


# -- patched (a change deployed under runs in flight) ------------------------------------


screen = text_step("golden_screen", "screened {}")
book = text_step("golden_book", "booked {}")


@workflow(name="golden_patched")
async def golden_patched(order: str) -> list[str]:
    done = [await book(order)]
    if patched("screening"):  # recorded (patch.applied) by a run that takes it
        done.append(await screen(order))
    await sleep(PAUSE, name="after_screening")
    if patched("screening"):  # the same answer, nothing recorded again
        done.append(await screen(order + " again"))
    return done


# -- signals ------------------------------------------------------------------------------


@workflow(name="golden_signals")
async def golden_signals(order: str) -> list[str]:
    taken = [await wait_for_signal("golden_item")]  # sent with the start: taken at once
    await sleep(PAUSE, name="before_items")  # two more are sent meanwhile
    try:
        taken.append(await wait_for_signal("golden_never", timeout=PAUSE))
    except SignalTimeoutError:
        taken.append("timed out")
    taken += [await wait_for_signal("golden_item") for _ in range(2)]  # the buffered two
    return [f"{order}:{item}" for item in taken]


# -- dispatched steps (the Celery execution shape) -------------------------------------


pick = text_step("golden_pick", "item-{}")


@step(name="golden_price")
async def price(item: str, region: str) -> str:
    ran("golden_price")
    ctx = get_step_context()
    assert isinstance(ctx, Tenant)
    return f"{item}@{region} for {ctx.tenant}"


@step(name="golden_audit", force_local=True)
async def audit(prices: list[str]) -> int:
    ran("golden_audit")
    return len(prices)


@step(name="golden_total")
async def total(prices: list[str], audited: int) -> str:
    ran("golden_total")
    return f"{audited} prices: {' + '.join(prices)}"


@workflow(name="golden_dispatched_order", context_class=Tenant)
async def golden_dispatched_order(order_id: str) -> str:
    await set_step_context(Tenant(tenant="acme", user="ops"))
    item = await pick(order_id)
    eu, us = await asyncio.gather(price(item, "EU"), price(item, "US"))
    audited = await audit([eu, us])  # force_local: runs inline even when steps are dispatched
    await sleep(PAUSE, name="settle")
    return await total([eu, us], audited)


# -- recovery after a lost process ------------------------------------------------------


label = text_step("golden_label", "label-{}")


@step(name="golden_pack")
async def pack(order_id: str) -> str:
    ran("golden_pack")
    crash = CRASH_IN.pop("golden_pack", None)
    if crash is not None:
        crash.set()
        await asyncio.Event().wait()  # the process "dies" here: cancelled by the recorder
    return f"box-{order_id}"


@workflow(name="golden_shipment")
async def golden_shipment(order_id: str) -> list[str]:
    first = await label(order_id)
    return [first, await pack(order_id)]


# -- what an ended run leaves open (step.cancelled, hook.disposed) ---------------------
# Recorded by the version that added format versions ("v") to every payload.


def failing_step(name: str, template: str) -> Callable[[str], Awaitable[str]]:
    """A step named ``name`` whose every attempt fails with ``template`` filled in with
    its argument, retried after a wait that outlasts any test."""

    @step(name=name, max_retries=3, retry_delay=FOREVER)
    async def body(value: str) -> str:
        ran(name)
        raise RetryableError(template.format(value))

    return body


open_ledger = text_step("golden_open_ledger", "ledger-{}")
void_invoice = text_step("golden_void_invoice", "voided {}")
settle_invoice = failing_step("golden_settle_invoice", "bank offline for {}")


@workflow(name="golden_settle_or_void")
async def golden_settle_or_void(invoice_id: str) -> str:
    ledger = await open_ledger(invoice_id)
    try:
        return await settle_invoice(ledger)  # its retry waits (durably) until cancelled
    except CancellationError:
        await void_invoice(ledger)  # a run's cancellation is delivered once: this step runs
        raise


review = text_step("golden_request_review", "review of {} requested")


@workflow(name="golden_review_or_cancel")
async def golden_review_or_cancel(doc: str) -> object:
    await review(doc)
    return await hook("golden_review", on_created=remember_token)  # no timeout


reserve_stock = text_step("golden_reserve_stock", "stock-{}")


@step(name="golden_export")
async def export(what: str) -> str:
    ran("golden_export")
    await asyncio.sleep(60)  # far beyond the deadline: cancelled while it runs
    return f"exported {what}"


@workflow(name="golden_deadline", max_duration="2s")
async def golden_deadline(order_id: str) -> str:
    stock = await reserve_stock(order_id)
    await sleep(PAUSE, name="before_export")
    return await export(stock)


notify_refund = text_step("golden_notify_refund", "refund of {} announced")
refund_payment = failing_step("golden_refund_payment", "payment provider down for {}")


@workflow(name="golden_dispatched_refund")
async def golden_dispatched_refund(order_id: str) -> list[str]:
    item = await pick(order_id)
    notice, refunded = await asyncio.gather(notify_refund(item), refund_payment(item))
    return [notice, refunded]
