"""When a schedule fires: cron expressions, fixed intervals and calendar specs, each in
a time zone, optionally bounded by a start and end time and spread by jitter.

Cron and calendar times are wall-clock times in the schedule's time zone. On a DST
change day a wall-clock time that does not exist (02:30 when clocks jump from 02:00 to
03:00) fires once, at the equivalent instant just after the jump; one that exists twice
(01:30 when clocks fall back) fires once, at its first occurrence. Intervals are
absolute durations, anchored at ``start_at`` (or the Unix epoch), so ``"15m"`` fires at
:00, :15, :30 and :45 of every hour whatever the time zone.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pyworkflow.scheduler.cron import check_cron
from pyworkflow.utils.duration import duration_seconds

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Looking back this far before "after" covers any DST shift of the wall clock.
_DST_MARGIN = timedelta(hours=3)
_MAX_CANDIDATES = 10_000


class OverlapPolicy(StrEnum):
    """What a tick does while the schedule's previous run is still running."""

    SKIP = "skip"  # drop the tick
    BUFFER_ONE = "buffer_one"  # run it after the current one ends (at most one waits)
    BUFFER_ALL = "buffer_all"  # run every tick, one after another
    CANCEL_OTHER = "cancel_other"  # cancel the running one, start when it has ended
    TERMINATE_OTHER = "terminate_other"  # terminate the running one, start at once
    ALLOW_ALL = "allow_all"  # start regardless


CronField = int | str | list[int]


class CalendarSpec(BaseModel):
    """Wall-clock times, e.g. ``CalendarSpec(day_of_week="mon-fri", hour=9, minute=30)``.

    Each field is an int, a list of ints, or cron text (``"*"``, ``"1-5"``, ``"*/15"``,
    ``"mon,wed"``). Unset fields default to ``"*"`` for dates and ``0`` for times.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    second: CronField = 0
    minute: CronField = 0
    hour: CronField = 0
    day_of_month: CronField = "*"
    month: CronField = "*"
    day_of_week: CronField = "*"

    @model_validator(mode="after")
    def _valid(self) -> CalendarSpec:
        check_cron(self.cron(), label="invalid calendar spec")  # also: never fires
        return self

    def cron(self) -> str:
        """The equivalent 6-field cron expression (seconds first)."""
        parts = [
            self.second,
            self.minute,
            self.hour,
            self.day_of_month,
            self.month,
            self.day_of_week,
        ]
        return " ".join(_cron_text(p) for p in parts)


def _cron_text(value: CronField) -> str:
    if isinstance(value, list):
        return ",".join(str(int(v)) for v in value)
    return str(value)


class ScheduleSpec(BaseModel):
    """Exactly one of ``cron``, ``interval`` or ``calendar``, plus options.

    Attributes:
        cron: 5 fields (minute hour day month weekday) or 6 with seconds first.
        interval: a duration (``"15m"``, ``"1h30m"``, seconds, ``timedelta``).
        calendar: one :class:`CalendarSpec` or several (fires at each one's times).
        timezone: IANA name for cron/calendar wall-clock times (default ``"UTC"``).
        start_at / end_at: no tick before / after these instants (naive = UTC).
        jitter: up to this much random delay per tick (deterministic per tick), so many
            schedules on the same cron do not all start in the same second.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    cron: str | None = None
    interval: str | int | float | timedelta | None = None
    calendar: list[CalendarSpec] | None = None
    timezone: str = "UTC"
    start_at: datetime | None = None
    end_at: datetime | None = None
    jitter: str | int | float | timedelta | None = Field(default=None)

    @field_validator("calendar", mode="before")
    @classmethod
    def _one_calendar(cls, value: Any) -> Any:
        if isinstance(value, CalendarSpec | dict):
            return [value]
        return value

    @field_validator("start_at", "end_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        # Names the field, value and range, and refuses a cron that can never fire.
        return None if value is None else check_cron(value)

    @field_validator("interval", "jitter")
    @classmethod
    def _valid_duration(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        seconds = duration_seconds(value)  # raises ValueError naming the bad text
        if seconds <= 0:
            raise ValueError(f"{info.field_name} must be a positive duration, got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleSpec:
        kinds = [k for k in ("cron", "interval", "calendar") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError("a schedule needs exactly one of cron, interval or calendar")
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValueError("end_at must be after start_at")
        return self

    # -- computing ticks -----------------------------------------------------------------

    def next_tick(self, after: datetime) -> datetime | None:
        """The first nominal tick strictly after ``after`` (UTC), or ``None`` past the end
        (or past the year 9999, which ``datetime`` cannot hold)."""
        if self.start_at is not None and after < self.start_at:
            after = self.start_at - timedelta(microseconds=1)
        try:
            if self.interval is not None:
                tick = self._next_interval(after)
            else:
                exprs = [self.cron] if self.cron else [c.cron() for c in self.calendar or ()]
                tick = min(self._next_cron(expr, after) for expr in exprs if expr)
        except OverflowError:
            return None
        if self.end_at is not None and tick > self.end_at:
            return None
        return tick

    def ticks_between(self, start: datetime, end: datetime, limit: int = 10_000) -> list[datetime]:
        """Nominal ticks ``t`` with ``start <= t <= end``."""
        out: list[datetime] = []
        tick = self.next_tick(start - timedelta(microseconds=1))
        while tick is not None and tick <= end and len(out) < limit:
            out.append(tick)
            tick = self.next_tick(tick)
        return out

    def jitter_for(self, schedule_id: str, tick: datetime) -> timedelta:
        """This tick's delay: a fixed fraction of ``jitter`` derived from the tick."""
        if self.jitter is None:
            return timedelta(0)
        digest = hashlib.sha256(f"{schedule_id}\0{tick.isoformat()}".encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2**64
        return timedelta(seconds=duration_seconds(self.jitter) * fraction)

    def describe(self) -> str:
        """One line for people: ``cron 0 9 * * 1-5 Europe/Paris``, ``every 15m``,
        ``calendar (2 entries)``."""
        if self.cron is not None:
            text = f"cron {self.cron}"
        elif self.interval is not None:
            text = f"every {_seconds_text(duration_seconds(self.interval))}"
        else:
            text = f"calendar ({len(self.calendar or [])} entries)"
        if self.timezone != "UTC" and self.interval is None:
            text += f" {self.timezone}"
        return text

    def _next_interval(self, after: datetime) -> datetime:
        assert self.interval is not None
        step = timedelta(seconds=duration_seconds(self.interval))
        anchor = self.start_at or _EPOCH
        if after < anchor:
            return anchor
        periods = (after - anchor) // step + 1
        return anchor + periods * step

    def _next_cron(self, expr: str, after: datetime) -> datetime:
        zone = ZoneInfo(self.timezone)
        # Iterate wall-clock times (naive, where DST does not exist), then map each to
        # an instant; the first instant after ``after`` wins.
        base = (after.astimezone(zone) - _DST_MARGIN).replace(tzinfo=None)
        six = len(expr.split()) == 6
        it = croniter(expr, base, second_at_beginning=six)
        for _ in range(_MAX_CANDIDATES):
            wall: datetime = it.get_next(datetime)
            instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
            if instant > after:
                return instant
        raise ValueError(f"cron expression {expr!r} has no time after {after.isoformat()}")


def _seconds_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_spec(spec: ScheduleSpec | str | dict[str, Any]) -> ScheduleSpec:
    """A :class:`ScheduleSpec` from itself, a dict, a cron text (has spaces) or an
    interval text (``"15m"``).

    Raises:
        ValueError: the spec is invalid (the message says what; a pydantic
            ``ValidationError`` is a ``ValueError``).
    """
    if isinstance(spec, ScheduleSpec):
        return spec
    if isinstance(spec, str):
        text = spec.strip()
        return ScheduleSpec(cron=text) if " " in text else ScheduleSpec(interval=text)
    if isinstance(spec, dict):
        return ScheduleSpec.model_validate(spec)
    raise TypeError(f"schedule spec must be a ScheduleSpec, str or dict, not {type(spec).__name__}")
