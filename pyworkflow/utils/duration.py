"""Parse the duration forms users write: ``"30s"``, ``"1h30m"``, ``"2d12h"``, ``"1w"``,
int/float seconds, ``timedelta``, and ``datetime`` deadlines.

Every duration is finite, not negative and at most :data:`MAX_DURATION` (100 years):
longer ones (``float("inf")``, ``"99999999999d"``) are refused with a ``ValueError``
naming the value, instead of overflowing later when a deadline is computed from them.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")

DurationLike = str | int | float | timedelta

#: The longest duration accepted anywhere (sleeps, timeouts, retry delays, ``max_duration``,
#: hook expiry, schedule intervals): 100 years, far beyond any real wait, and far enough
#: below ``datetime.max`` that "now + duration" can always be computed.
MAX_DURATION = timedelta(days=36525)
_MAX_SECONDS = MAX_DURATION.total_seconds()


def parse_duration(value: DurationLike) -> timedelta:
    """Turn a duration in any supported form into a ``timedelta``.

    Raises:
        ValueError: the string is malformed (``"5 minutes"``, ``"abc"``, ``""``), or the
            value is negative, NaN, infinite or longer than :data:`MAX_DURATION`.
        TypeError: the value is of an unsupported type.
    """
    if isinstance(value, bool):
        raise TypeError(f"duration must be a string, number or timedelta, not {value!r}")
    if isinstance(value, timedelta):
        seconds: float = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = value
    elif isinstance(value, str):
        seconds = _parse_string(value)
    else:
        raise TypeError(
            f"duration must be a string like '30s', a number of seconds or a timedelta, "
            f"not {type(value).__name__}"
        )
    _check_range(seconds, value)
    return value if isinstance(value, timedelta) else timedelta(seconds=seconds)


def _check_range(seconds: float, value: DurationLike) -> None:
    # Ints compare exactly with the float limit, so 10**400 needs no float conversion.
    if isinstance(seconds, float) and math.isnan(seconds):
        raise ValueError(f"duration must be a number of seconds, not NaN ({_show(value)})")
    if seconds < 0:
        raise ValueError(f"duration must not be negative: {_show(value)}")
    if seconds > _MAX_SECONDS:  # also +inf, and strings whose number overflows to inf
        raise ValueError(
            f"duration {_show(value)} is too long: the maximum is {MAX_DURATION.days} days "
            "(100 years)"
        )


def _show(value: DurationLike) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_string(text: str) -> float:
    compact = text.strip().lower().replace(" ", "")
    if compact and re.fullmatch(r"\d+(?:\.\d+)?", compact):
        return float(compact)
    if not compact or not _WHOLE.fullmatch(compact):
        raise ValueError(
            f"invalid duration {text!r}: use a number with a unit, e.g. '30s', '5m', '2h', "
            "'3d', '1w' or combined like '1h30m'"
        )
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(compact))


def duration_seconds(value: DurationLike) -> float:
    """:func:`parse_duration` as float seconds."""
    return parse_duration(value).total_seconds()


def resolve_wake_time(value: DurationLike | datetime, now: datetime) -> datetime:
    """The absolute UTC time a sleep of ``value`` started at ``now`` ends.

    A naive ``datetime`` is taken as UTC; an aware one keeps its zone (converted to UTC).
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    return now + parse_duration(value)


def human_duration(seconds: float | None) -> str:
    """``0.4ms``, ``12ms``, ``1.23s``, ``2m05s``, ``3h02m``, ``2d04h`` (``-`` for ``None``)."""
    if seconds is None:
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 time from event data, or ``None`` when it is missing or malformed
    (readers of old or foreign logs show what they can)."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
