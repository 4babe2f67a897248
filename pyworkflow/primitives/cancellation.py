"""Cancellation inside workflows: ``shield()`` lets cleanup finish.

A cancelled run sees :class:`~pyworkflow.core.exceptions.CancellationError` at its next
durable operation (a step, sleep, hook or child start), or at once if it was waiting.
Code that must still run (compensation, notifications) goes in ``async with shield():``;
durable operations inside it proceed normally.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pyworkflow.context.base import current_context


@asynccontextmanager
async def shield() -> AsyncIterator[None]:
    """Defer cancellation while the block runs (a no-op outside workflows)."""
    ctx = current_context()
    if ctx is None:
        yield
        return
    ctx.shield_depth += 1
    try:
        yield
    finally:
        ctx.shield_depth -= 1
