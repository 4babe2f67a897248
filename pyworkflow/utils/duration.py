"""Parse the duration forms users write: ``"30s"``, ``"1h30m"``, ``"2d12h"``, ``"1w"``,
int/float seconds, ``timedelta``, and ``datetime`` deadlines.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")

DurationLike = str | int | float | timedelta


def parse_duration(value: DurationLike) -> timedelta:
    """Turn a duration in any supported form into a ``timedelta``.

    Raises:
        ValueError: the string is malformed (``"5 minutes"``, ``"abc"``, ``""``) or the
            value is negative.
        TypeError: the value is of an unsupported type.
    """
    if isinstance(value, bool):
        raise TypeError(f"duration must be a string, number or timedelta, not {value!r}")
    if isinstance(value, timedelta):
        delta = value
    elif isinstance(value, int | float):
        delta = timedelta(seconds=value)
    elif isinstance(value, str):
        delta = _parse_string(value)
    else:
        raise TypeError(
            f"duration must be a string like '30s', a number of seconds or a timedelta, "
            f"not {type(value).__name__}"
        )
    if delta < timedelta(0):
        raise ValueError(f"duration must not be negative: {value!r}")
    return delta


def _parse_string(text: str) -> timedelta:
    compact = text.strip().lower().replace(" ", "")
    if compact and re.fullmatch(r"\d+(?:\.\d+)?", compact):
        return timedelta(seconds=float(compact))
    if not compact or not _WHOLE.fullmatch(compact):
        raise ValueError(
            f"invalid duration {text!r}: use a number with a unit, e.g. '30s', '5m', '2h', "
            "'3d', '1w' or combined like '1h30m'"
        )
    seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(compact))
    return timedelta(seconds=seconds)


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
