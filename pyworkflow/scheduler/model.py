"""A schedule as users see it, and its round trip through a storage record."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pyworkflow.engine.events import schedule_entry
from pyworkflow.scheduler.specs import OverlapPolicy, ScheduleSpec
from pyworkflow.serialization import decode
from pyworkflow.storage.payloads import refuse_non_finite
from pyworkflow.storage.schemas import ScheduleRecord, ScheduleStatus
from pyworkflow.utils.duration import duration_seconds

HISTORY_SIZE = 50
DEFAULT_CATCHUP_WINDOW = 3600.0


@dataclass(slots=True)
class ScheduleEntry:
    """One tick in a schedule's history: what happened to it."""

    tick: datetime
    outcome: str  # "started" or "skipped: <why>"
    run_id: str | None = None
    at: datetime | None = None


@dataclass
class Schedule:
    """A schedule: which workflow, with which arguments, when, and what to do on overlap.

    ``recent`` holds the last ticks (newest last): started runs and skipped ticks.
    ``args``/``kwargs`` are the stored (encoded) arguments; ``decoded_args()`` gives values.
    """

    schedule_id: str
    workflow_name: str
    spec: ScheduleSpec
    status: ScheduleStatus = ScheduleStatus.ACTIVE
    overlap_policy: OverlapPolicy = OverlapPolicy.SKIP
    catchup_window: float = DEFAULT_CATCHUP_WINDOW
    args: list[Any] = field(default_factory=list)  # encoded trees
    kwargs: dict[str, Any] = field(default_factory=dict)  # encoded trees
    next_tick: datetime | None = None  # nominal time of the next tick
    next_run_time: datetime | None = None  # when the scheduler looks again (jitter, buffer)
    last_run_id: str | None = None
    buffer: list[datetime] = field(default_factory=list)  # ticks waiting for the last run
    pending: list[ScheduleEntry] = field(default_factory=list)  # claimed, start to confirm
    recent: list[ScheduleEntry] = field(default_factory=list)
    fired: int = 0
    skipped: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 0

    def decoded_args(self) -> tuple[list[Any], dict[str, Any]]:
        return list(decode(self.args)), dict(decode(self.kwargs))

    def note(self, entry: ScheduleEntry) -> None:
        if entry.outcome.startswith("skipped"):
            self.skipped += 1
        elif entry.outcome == "started":
            self.fired += 1
        self.recent = [*self.recent, entry][-HISTORY_SIZE:]

    # -- storage round trip ----------------------------------------------------------

    def to_record(self) -> ScheduleRecord:
        data = {
            "spec": spec_to_json(self.spec),
            "overlap_policy": self.overlap_policy.value,
            "catchup_window": self.catchup_window,
            "args": self.args,
            "kwargs": self.kwargs,
            "next_tick": _iso(self.next_tick),
            "last_run_id": self.last_run_id,
            "buffer": [t.isoformat() for t in self.buffer],
            "pending": [_entry_json(e, self.schedule_id) for e in self.pending],
            "recent": [_entry_json(e, self.schedule_id) for e in self.recent],
            "fired": self.fired,
            "skipped": self.skipped,
        }
        record = ScheduleRecord(
            schedule_id=self.schedule_id,
            workflow_name=self.workflow_name,
            status=self.status,
            next_run_time=self.next_run_time,
            data=_strict_dumps(data, f"data of schedule {self.schedule_id!r}"),
            version=self.version,
        )
        if self.created_at is not None:
            record.created_at = self.created_at
        return record

    @classmethod
    def from_record(cls, record: ScheduleRecord) -> Schedule:
        data = json.loads(record.data)
        return cls(
            schedule_id=record.schedule_id,
            workflow_name=record.workflow_name,
            spec=ScheduleSpec.model_validate(data["spec"]),
            status=record.status,
            overlap_policy=OverlapPolicy(data.get("overlap_policy", "skip")),
            catchup_window=float(data.get("catchup_window", DEFAULT_CATCHUP_WINDOW)),
            args=data.get("args", []),
            kwargs=data.get("kwargs", {}),
            next_tick=_dt(data.get("next_tick")),
            next_run_time=record.next_run_time,
            last_run_id=data.get("last_run_id"),
            buffer=[datetime.fromisoformat(t) for t in data.get("buffer", [])],
            pending=[_entry(e) for e in data.get("pending", [])],
            recent=[_entry(e) for e in data.get("recent", [])],
            fired=int(data.get("fired", 0)),
            skipped=int(data.get("skipped", 0)),
            created_at=record.created_at,
            updated_at=record.updated_at,
            version=record.version,
        )


def spec_to_json(spec: ScheduleSpec) -> dict[str, Any]:
    """The spec as JSON values (durations as seconds, so they read back unchanged)."""
    out = spec.model_dump(mode="json", exclude_none=True)
    for name in ("interval", "jitter"):
        value = getattr(spec, name)
        if value is not None:
            out[name] = duration_seconds(value)
    return out


def _strict_dumps(data: dict[str, Any], what: str) -> str:
    try:
        return json.dumps(data, allow_nan=False)
    except ValueError:
        refuse_non_finite(data, what)  # names where the NaN or infinity is
        raise


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _entry_json(entry: ScheduleEntry, schedule_id: str) -> dict[str, Any]:
    """A history entry as its ``schedule.triggered`` / ``schedule.skipped`` event payload,
    plus ``type`` and the ``outcome`` earlier versions read."""
    skipped = entry.outcome.partition("skipped: ")[2] if entry.outcome != "started" else None
    type_, data = schedule_entry(
        schedule_id, entry.tick, run_id=entry.run_id, skipped_reason=skipped, at=entry.at
    )
    return {"type": type_.value, **data, "outcome": entry.outcome, "run_id": entry.run_id}


def _entry(data: dict[str, Any]) -> ScheduleEntry:
    return ScheduleEntry(
        tick=datetime.fromisoformat(data["tick"]),
        outcome=data["outcome"],
        run_id=data.get("run_id"),
        at=_dt(data.get("at")),
    )
