"""How long a step waits before its next attempt."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from pyworkflow.utils.duration import DurationLike, duration_seconds

RetryDelay = str | int | float | timedelta | Sequence[int | float]

EXPONENTIAL_CAP_SECONDS = 300.0
FIXED_DEFAULT_SECONDS = 60.0


def validate_retry_delay(value: RetryDelay) -> None:
    """Raise ``ValueError`` now (at decoration time) for a policy that could never work."""
    attempts = len(value) if isinstance(value, list | tuple) else 1
    for attempt in range(1, max(attempts, 1) + 1):
        retry_delay_seconds(value, attempt)


def retry_delay_seconds(policy: RetryDelay, attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    ``"exponential"``: 1, 2, 4, ... capped at 300 s; ``"fixed"``: 60 s; a duration
    (``"5s"``, seconds, ``timedelta``): that constant; a list: one entry per attempt, the
    last one repeating.
    """
    if policy == "exponential":
        return float(min(2 ** (attempt - 1), EXPONENTIAL_CAP_SECONDS))
    if policy == "fixed":
        return FIXED_DEFAULT_SECONDS
    if isinstance(policy, list | tuple):
        if not policy:
            raise ValueError("retry_delay list must not be empty")
        return duration_seconds(policy[min(attempt, len(policy)) - 1])
    if isinstance(policy, str | int | float | timedelta):
        try:
            return duration_seconds(policy)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"invalid retry_delay {policy!r}: use 'exponential', 'fixed', a duration like "
                f"'5s', seconds, or a list of seconds ({exc})"
            ) from None
    raise ValueError(f"invalid retry_delay {policy!r}")


def retry_after_seconds(value: DurationLike | None) -> float | None:
    """``RetryableError.retry_after`` in seconds (``None`` when not given)."""
    return None if value is None else duration_seconds(value)
