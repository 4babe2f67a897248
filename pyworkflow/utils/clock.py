"""The timer clock: what sleeps, retry delays, hook timeouts and ``max_duration``
deadlines are measured against.

It is the wall clock, unless a test environment skips time ahead
(:class:`pyworkflow.testing.WorkflowEnvironment`): then timers come due as if that much
time had passed, in this process. Leases, heartbeats and the worker registry keep the
wall clock, so skipping time never makes a live run look dead.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_skew = timedelta(0)


def timer_now() -> datetime:
    """The current time for timers (aware, UTC)."""
    return datetime.now(UTC) + _skew


def skew() -> timedelta:
    """How far the timer clock is ahead of the wall clock."""
    return _skew


def skip_ahead(delta: timedelta) -> None:
    """Move the timer clock ``delta`` further ahead (tests only: see the module doc)."""
    global _skew
    if delta < timedelta(0):
        raise ValueError(f"the timer clock only moves forward, not by {delta}")
    _skew += delta


def reset() -> None:
    """Back to the wall clock."""
    global _skew
    _skew = timedelta(0)
