"""``/api/schedules``: list, read, create, change, pause, resume, trigger, backfill and
delete schedules, through :mod:`pyworkflow.schedules`.

Creating and changing schedules needs no workflow code (a schedule stores the
workflow's name). ``trigger`` and ``backfill`` start runs now, like ``pyworkflow
schedules trigger``: the schedule service resolves the workflow in this process (under
Celery too, for its options), so without the code (``--module``) they answer 409.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic import BaseModel, BeforeValidator, Field, field_validator, model_validator

from pyworkflow.core.config import get_config
from pyworkflow.core.exceptions import SerializationError, WorkflowNotFoundError
from pyworkflow.core.registry import get_workflow
from pyworkflow.scheduler.model import spec_to_json
from pyworkflow.schedules import (
    OverlapPolicy,
    Schedule,
    ScheduleSpec,
    ScheduleStatus,
    backfill_schedule,
    create_schedule,
    delete_schedule,
    get_schedule,
    list_schedules,
    pause_schedule,
    resume_schedule,
    trigger_schedule,
    update_schedule,
)
from pyworkflow.server.deps import Admin, Reader, Storage
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import utcnow
from pyworkflow.utils.duration import duration_seconds

router = APIRouter(prefix="/api", tags=["schedules"])

#: How many upcoming fire times an answer shows.
NEXT_FIRE_TIMES = 5
#: How many entries of a schedule's history an answer shows (newest first).
RECENT_SHOWN = 10
#: The most ticks one backfill request may start (a longer range is split by the caller).
MAX_BACKFILL_TICKS = 1000
# Names and ids are stored as text: no control characters (PostgreSQL refuses NUL), and a
# new id must be usable as one path segment.
_TEXT = r"^[^\x00-\x1f\x7f]+$"
_NEW_ID = r"^[^/?#\s\x00-\x1f\x7f]+$"
ScheduleId = Annotated[str, Path(min_length=1, max_length=255, pattern=_TEXT)]


def _spec_of_text(value: Any) -> Any:
    # The library's rule (parse_spec): text with spaces is cron, else an interval.
    if isinstance(value, str):
        text = value.strip()
        return {"cron": text} if " " in text else {"interval": text}
    return value


SpecIn = Annotated[
    ScheduleSpec,
    BeforeValidator(_spec_of_text, json_schema_input_type=str | ScheduleSpec),
    Field(
        description='A cron text ("0 9 * * mon-fri"), an interval text ("15m"), or an '
        "object with exactly one of cron, interval, calendar, plus timezone, start_at, "
        "end_at, jitter."
    ),
]


def _check_window(value: str | float | None) -> str | float | None:
    if value is not None and duration_seconds(value) < 0:
        raise ValueError("catchup_window must not be negative")
    return value


class ScheduleCreate(BaseModel):
    """A new schedule: ``workflow(*args, **kwargs)`` at each tick of ``spec``."""

    workflow: str = Field(
        min_length=1, max_length=255, pattern=_TEXT, description="The workflow's name."
    )
    spec: SpecIn
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    overlap_policy: OverlapPolicy = OverlapPolicy.SKIP
    catchup_window: str | float | None = Field(
        default=None,
        description='How late a missed tick may still run ("1h", seconds); default 1h.',
    )
    schedule_id: str | None = Field(default=None, min_length=1, max_length=255, pattern=_NEW_ID)

    _window = field_validator("catchup_window")(_check_window)


class ScheduleUpdate(BaseModel):
    """What to change (the next tick is recomputed from now)."""

    spec: SpecIn | None = None
    overlap_policy: OverlapPolicy | None = None
    catchup_window: str | float | None = None

    _window = field_validator("catchup_window")(_check_window)

    @model_validator(mode="after")
    def _something(self) -> ScheduleUpdate:
        if self.spec is None and self.overlap_policy is None and self.catchup_window is None:
            raise ValueError("nothing to change: give spec, overlap_policy or catchup_window")
        return self


class BackfillRequest(BaseModel):
    """Start a run for every tick from ``start`` to ``end`` (both included; naive = UTC)."""

    start: datetime
    end: datetime | None = Field(default=None, description="Default: now.")

    @model_validator(mode="after")
    def _ordered(self) -> BackfillRequest:
        if self.end is not None and _utc(self.end) < _utc(self.start):
            raise ValueError("end must not be before start")
        return self


class TickOut(BaseModel):
    """One tick of a schedule's history."""

    tick: datetime
    outcome: str = Field(description='"started" or "skipped: <why>".')
    run_id: str | None = None
    at: datetime | None = None


class ScheduleOut(BaseModel):
    """A schedule, its upcoming fire times and its recent ticks."""

    schedule_id: str
    workflow_name: str
    workflow_registered: bool = Field(
        description="This server imported the workflow (it can trigger and backfill)."
    )
    status: ScheduleStatus
    spec: dict[str, Any] = Field(description="The spec; interval and jitter in seconds.")
    overlap_policy: OverlapPolicy
    catchup_window: float = Field(description="Seconds.")
    args: list[Any] = Field(description="As stored (JSON trees).")
    kwargs: dict[str, Any]
    next_fire_times: list[datetime] = Field(
        description=f"When the next {NEXT_FIRE_TIMES} ticks start runs (jitter included); "
        "empty while paused or past end_at."
    )
    next_run_time: datetime | None = Field(default=None, description="When a scheduler looks next.")
    last_run_id: str | None = None
    fired: int
    skipped: int
    recent: list[TickOut] = Field(description=f"The last {RECENT_SHOWN} ticks, newest first.")
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def of(cls, schedule: Schedule) -> ScheduleOut:
        recent = list(reversed(schedule.recent[-RECENT_SHOWN:]))
        return cls(
            schedule_id=schedule.schedule_id,
            workflow_name=schedule.workflow_name,
            workflow_registered=get_workflow(schedule.workflow_name) is not None,
            status=schedule.status,
            spec=spec_to_json(schedule.spec),
            overlap_policy=schedule.overlap_policy,
            catchup_window=schedule.catchup_window,
            args=list(schedule.args),
            kwargs=dict(schedule.kwargs),
            next_fire_times=next_fire_times(schedule, utcnow()),
            next_run_time=schedule.next_run_time,
            last_run_id=schedule.last_run_id,
            fired=schedule.fired,
            skipped=schedule.skipped,
            recent=[
                TickOut(tick=e.tick, outcome=e.outcome, run_id=e.run_id, at=e.at) for e in recent
            ],
            created_at=schedule.created_at,
            updated_at=schedule.updated_at,
        )


def next_fire_times(
    schedule: Schedule, now: datetime, count: int = NEXT_FIRE_TIMES
) -> list[datetime]:
    """When the next ``count`` ticks after ``now`` start runs (none while paused)."""
    if schedule.status != ScheduleStatus.ACTIVE:
        return []
    spec, out = schedule.spec, list[datetime]()
    tick = spec.next_tick(now)
    while tick is not None and len(out) < count:
        out.append(tick + spec.jitter_for(schedule.schedule_id, tick))
        tick = spec.next_tick(tick)
    return out


class ScheduleList(BaseModel):
    schedules: list[ScheduleOut]


class Triggered(BaseModel):
    schedule_id: str
    run_id: str
    runtime: str


class Backfilled(BaseModel):
    schedule_id: str
    run_ids: list[str] = Field(description="One run per tick; ticks that had one keep it.")
    runtime: str


async def schedule_or_404(storage: StorageBackend, schedule_id: str) -> Schedule:
    schedule = await get_schedule(schedule_id, storage=storage)
    if schedule is None:
        raise HTTPException(404, f"no schedule with id {schedule_id!r}")
    return schedule


@router.get("/schedules", response_model=ScheduleList, summary="List schedules, by id")
async def list_all(
    storage: Storage,
    _: Reader,
    workflow: str | None = Query(
        None, max_length=255, pattern=_TEXT, description="Exact workflow name."
    ),
    status: ScheduleStatus | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> ScheduleList:
    found = await list_schedules(workflow or None, status, storage=storage)
    return ScheduleList(schedules=[ScheduleOut.of(s) for s in found[:limit]])


@router.get("/schedules/{schedule_id}", response_model=ScheduleOut, summary="One schedule")
async def get_one(schedule_id: ScheduleId, storage: Storage, _: Reader) -> ScheduleOut:
    return ScheduleOut.of(await schedule_or_404(storage, schedule_id))


@router.post("/schedules", response_model=ScheduleOut, status_code=201)
async def create(body: ScheduleCreate, storage: Storage, _: Admin) -> ScheduleOut:
    """Create a schedule (the workflow need not be imported here; the process that fires
    it must have the code). 409 if the id exists."""
    if body.schedule_id is not None and await get_schedule(body.schedule_id, storage=storage):
        raise HTTPException(409, f"schedule {body.schedule_id!r} already exists")
    try:
        schedule = await create_schedule(
            workflow_name=body.workflow,
            spec=body.spec,
            overlap_policy=body.overlap_policy,
            schedule_id=body.schedule_id,
            catchup_window=body.catchup_window,
            storage=storage,
            args=tuple(body.args),
            kwargs=body.kwargs,
        )
    except SerializationError as exc:  # NaN or Infinity (Python's JSON reader lets them in)
        raise HTTPException(422, str(exc)) from None
    return ScheduleOut.of(schedule)


@router.patch("/schedules/{schedule_id}", response_model=ScheduleOut)
async def update(
    schedule_id: ScheduleId, body: ScheduleUpdate, storage: Storage, _: Admin
) -> ScheduleOut:
    """Change the spec, overlap policy or catch-up window."""
    changed = await update_schedule(
        schedule_id,
        body.spec,
        body.overlap_policy,
        catchup_window=body.catchup_window,
        storage=storage,
    )
    return ScheduleOut.of(changed)


@router.post("/schedules/{schedule_id}/pause", response_model=ScheduleOut)
async def pause(schedule_id: ScheduleId, storage: Storage, _: Admin) -> ScheduleOut:
    """Stop firing (ticks while paused are not run later)."""
    return ScheduleOut.of(await pause_schedule(schedule_id, storage=storage))


@router.post("/schedules/{schedule_id}/resume", response_model=ScheduleOut)
async def resume(schedule_id: ScheduleId, storage: Storage, _: Admin) -> ScheduleOut:
    """Fire again, from the next tick after now."""
    return ScheduleOut.of(await resume_schedule(schedule_id, storage=storage))


@router.post("/schedules/{schedule_id}/trigger", response_model=Triggered, status_code=202)
async def trigger(schedule_id: ScheduleId, storage: Storage, _: Admin) -> Triggered:
    """Start a run now, whatever the spec and overlap policy."""
    schedule = await schedule_or_404(storage, schedule_id)
    try:
        run_id = await trigger_schedule(schedule_id, storage=storage)
    except WorkflowNotFoundError:
        raise HTTPException(409, _no_code(schedule)) from None
    return Triggered(schedule_id=schedule_id, run_id=run_id, runtime=_runtime())


@router.post("/schedules/{schedule_id}/backfill", response_model=Backfilled, status_code=202)
async def backfill(
    schedule_id: ScheduleId, body: BackfillRequest, storage: Storage, _: Admin
) -> Backfilled:
    """Start a run for every tick from ``start`` to ``end``; a tick that already has a
    run is not started again. At most 1000 ticks per request."""
    schedule = await schedule_or_404(storage, schedule_id)
    start, end = _utc(body.start), _utc(body.end or datetime.now(UTC))
    if end < start:
        raise HTTPException(400, "end (default: now) must not be before start")
    try:
        ticks = schedule.spec.ticks_between(start, end, limit=MAX_BACKFILL_TICKS + 1)
    except OverflowError:  # a start at the very first instant datetime holds
        raise HTTPException(400, "start is out of range") from None
    if len(ticks) > MAX_BACKFILL_TICKS:
        raise HTTPException(
            400,
            f"the range holds more than {MAX_BACKFILL_TICKS} ticks of this schedule; "
            "backfill it in shorter ranges",
        )
    try:
        run_ids = await backfill_schedule(schedule_id, start, end, storage=storage)
    except WorkflowNotFoundError:
        raise HTTPException(409, _no_code(schedule)) from None
    return Backfilled(schedule_id=schedule_id, run_ids=run_ids, runtime=_runtime())


@router.delete("/schedules/{schedule_id}", status_code=204, response_class=Response)
async def delete(schedule_id: ScheduleId, storage: Storage, _: Admin) -> Response:
    """Remove the schedule (the runs it started are kept)."""
    if not await delete_schedule(schedule_id, storage=storage):
        raise HTTPException(404, f"no schedule with id {schedule_id!r}")
    return Response(status_code=204)


def _no_code(schedule: Schedule) -> str:
    return (
        f"workflow {schedule.workflow_name!r} of schedule {schedule.schedule_id!r} is not "
        "imported in this server, which starts the runs of a trigger or backfill itself "
        "(under Celery too: it reads the workflow's options); serve the dashboard with "
        "pyworkflow --module MODULE dashboard, or use pyworkflow schedules trigger where "
        "the code is"
    )


def _runtime() -> str:
    return get_config().default_runtime


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
