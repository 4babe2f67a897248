"""``sleep()``: a durable pause that holds no worker while it lasts."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from pyworkflow.context.base import current_context, current_step_info
from pyworkflow.utils.clock import timer_now
from pyworkflow.utils.duration import resolve_wake_time


async def sleep(
    duration: str | int | float | timedelta | datetime, name: str | None = None
) -> None:
    """Pause the workflow for ``duration`` or until a ``datetime``.

    Accepts ``"30s"``, ``"5m"``, ``"1h30m"``, ``"2d12h"``, ``"1w"``, int/float seconds, a
    ``timedelta``, or a ``datetime`` (naive = UTC; in the past = no wait). In a durable
    run the wake-up time is stored and the run suspends; the runtime resumes it when due.
    Outside a workflow, inside a step, or in a transient run this is ``asyncio.sleep``.

    Raises:
        ValueError: the duration is malformed (raised here, at the call site).
    """
    now = timer_now()
    wake_at = resolve_wake_time(duration, now)  # validates before anything is recorded
    ctx = current_context()
    if ctx is None or current_step_info() is not None:
        await asyncio.sleep(max(0.0, (wake_at - now).total_seconds()))
        return
    await ctx.sleep(wake_at, wake_at - now, name, until=isinstance(duration, datetime))
