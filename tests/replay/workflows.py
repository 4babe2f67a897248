"""Workflow code the golden histories in ``histories/`` were recorded from.

Changing a workflow here in a way that changes its operation order must make the
matching golden test fail: that is the point of golden histories.
"""

from __future__ import annotations

import asyncio

from pyworkflow import RetryableError, sleep, step, workflow


@step(name="golden_fetch")
async def fetch(key: str) -> dict[str, str]:
    return {"key": key, "value": key.upper()}


@step(name="golden_flaky", max_retries=2, retry_delay=0.01)
async def flaky(key: str) -> str:
    raise RetryableError(f"always failing for {key}")


@step(name="golden_store")
async def store(values: list[str]) -> int:
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
    return amount


@step(name="golden_refund")
async def refund(amount: int) -> int:
    return -amount


@workflow(name="golden_changed")
async def golden_changed(amount: int) -> int:
    # The recorded history called golden_charge first; this version calls golden_refund.
    return await refund(amount)
