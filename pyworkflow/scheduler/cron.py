"""Check cron expressions field by field, so a bad one is refused with the field, the
value and the allowed range (``minute value 99 is out of range 0-59``) rather than a
generic "invalid", and one that can never fire (February 30th) is refused when the
schedule is created instead of failing at its first tick.

The grammar checked here is the common one: ``*``/``?``, numbers, month and weekday
names, ranges ``a-b`` and steps ``/n``, comma-separated. croniter's extensions (``L``,
``W``, ``#``) are left to croniter, which still validates the whole expression last.
"""

from __future__ import annotations

import re
from datetime import datetime

from croniter import CroniterBadDateError, croniter

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


class CronField:
    """One field of a cron expression: its name, its range and its value names."""

    __slots__ = ("high", "low", "name", "names")

    def __init__(
        self, name: str, low: int, high: int, names: tuple[str, ...] = (), first: int = 0
    ) -> None:
        self.name, self.low, self.high = name, low, high
        self.names = {n: i + first for i, n in enumerate(names)}

    def value(self, token: str, expr_label: str) -> int:
        """The number ``token`` (digits or a name) stands for, checked against the range."""
        if token.isdigit():
            number = int(token)
        elif token.lower() in self.names:
            return self.names[token.lower()]
        else:
            hint = f" or a name ({', '.join(self.names)})" if self.names else ""
            raise ValueError(
                f"{expr_label}: {self.name} value {token!r} is not a number "
                f"{self.low}-{self.high}{hint}"
            )
        if not self.low <= number <= self.high:
            raise ValueError(
                f"{expr_label}: {self.name} value {number} is out of range {self.low}-{self.high}"
            )
        return number


SECOND = CronField("second", 0, 59)
MINUTE = CronField("minute", 0, 59)
HOUR = CronField("hour", 0, 23)
DAY_OF_MONTH = CronField("day-of-month", 1, 31)
MONTH = CronField("month", 1, 12, _MONTHS, first=1)
# 7 is Sunday too, as in most crons.
DAY_OF_WEEK = CronField("day-of-week", 0, 7, _WEEKDAYS)

FIVE_FIELDS = (MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK)
SIX_FIELDS = (SECOND, *FIVE_FIELDS)

_ITEM = re.compile(r"(?P<base>\*|\?|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(?P<step>[^/]*))?", re.I)
_EXTENSION = re.compile(r"[LW#]", re.I)  # croniter's L, W and # forms: croniter checks them
# A fixed, non-leap starting point for the "can it ever fire" probe: croniter looks
# decades ahead, so a February 29th is found, a February 30th is not.
_PROBE_BASE = datetime(2001, 1, 1)


def check_cron(expr: str, *, label: str | None = None) -> str:
    """Validate a 5-field (minute first) or 6-field (seconds first) cron expression.

    Args:
        expr: the expression.
        label: how messages name it (default ``invalid cron expression '<expr>'``).

    Returns:
        ``expr`` unchanged.

    Raises:
        ValueError: the message names the field, the value and the allowed range, or says
            the expression can never fire.
    """
    where = label or f"invalid cron expression {expr!r}"
    parts = expr.split()
    if len(parts) not in (5, 6):
        raise ValueError(
            f"{where}: it has {len(parts)} field{'s' if len(parts) != 1 else ''}; expected 5 "
            "(minute hour day-of-month month day-of-week) or 6 with seconds first"
        )
    fields = FIVE_FIELDS if len(parts) == 5 else SIX_FIELDS
    for field, text in zip(fields, parts, strict=True):
        for item in text.split(","):
            _check_item(field, item, where)
    six = len(parts) == 6
    try:
        croniter(expr, _PROBE_BASE, second_at_beginning=six).get_next(datetime)
    except CroniterBadDateError:
        day, month = parts[-3], parts[-2]
        raise ValueError(
            f"{where}: it never fires (day-of-month {day!r} does not exist in month {month!r})"
        ) from None
    except (ValueError, KeyError) as exc:  # croniter's own errors are ValueErrors
        raise ValueError(f"{where}: {exc}") from None
    return expr


def _check_item(field: CronField, item: str, where: str) -> None:
    if _EXTENSION.search(item) and field in (DAY_OF_MONTH, DAY_OF_WEEK):
        return
    match = _ITEM.fullmatch(item)
    if match is None:
        raise ValueError(
            f"{where}: {field.name} item {item!r} is not a value, a range (a-b), a list "
            "(a,b) or a step (*/n)"
        )
    base, step = match.group("base"), match.group("step")
    if base not in ("*", "?"):
        low, _, high = base.partition("-")
        field.value(low, where)
        if high:
            field.value(high, where)
    if step is not None and (not step.isdigit() or int(step) < 1):
        raise ValueError(f"{where}: {field.name} step {step!r} must be a whole number >= 1")


__all__ = ["FIVE_FIELDS", "SIX_FIELDS", "CronField", "check_cron"]
