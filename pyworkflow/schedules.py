"""The schedules API: create, inspect, change and fire schedules that start workflow runs.

Schedules fire while a runtime serves the storage: the local runtime's timer loop (any
process running workflows locally, or ``LocalScheduler``) or, with Celery, the
``pyworkflow scheduler`` process / beat's timer task. See ``docs/schedules.md``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from pyworkflow.core.config import get_config, get_storage, resolve_storage
from pyworkflow.core.exceptions import DefinitionError, ScheduleNotFoundError
from pyworkflow.core.workflow import definition_of, workflow
from pyworkflow.runtime import get_runtime
from pyworkflow.scheduler.declared import DeclaredSchedule, activate_declared, declare
from pyworkflow.scheduler.model import DEFAULT_CATCHUP_WINDOW, Schedule, ScheduleEntry
from pyworkflow.scheduler.service import Clock, ScheduleService, tick_run_id
from pyworkflow.scheduler.specs import CalendarSpec, OverlapPolicy, ScheduleSpec, parse_spec
from pyworkflow.serialization import encode
from pyworkflow.storage.base import SCHEDULES, StorageBackend, require_capability
from pyworkflow.storage.schemas import ScheduleStatus, utcnow
from pyworkflow.utils.duration import duration_seconds

P = ParamSpec("P")
R = TypeVar("R")

SpecLike = ScheduleSpec | str | dict[str, Any]


async def _backend(storage: StorageBackend | str | None) -> StorageBackend:
    backend = get_storage() if storage is None else resolve_storage(storage)
    require_capability(backend, SCHEDULES)
    await backend.connect()
    return backend


def _policy(value: OverlapPolicy | str) -> OverlapPolicy:
    try:
        return OverlapPolicy(value)
    except ValueError:
        known = ", ".join(p.value for p in OverlapPolicy)
        raise ValueError(f"unknown overlap_policy {value!r}; use one of: {known}") from None


def _window(value: str | int | float | timedelta | None) -> float:
    if value is None:
        return DEFAULT_CATCHUP_WINDOW
    seconds = duration_seconds(value)
    if seconds < 0:
        raise ValueError("catchup_window must not be negative")
    return seconds


async def create_schedule(
    workflow: Any = None,
    spec: SpecLike | None = None,
    *args: Any,
    overlap_policy: OverlapPolicy | str = OverlapPolicy.SKIP,
    schedule_id: str | None = None,
    catchup_window: str | int | float | timedelta | None = None,
    storage: StorageBackend | str | None = None,
    **kwargs: Any,
) -> Schedule:
    """Create a schedule that starts ``workflow(*args, **kwargs)`` at each tick of ``spec``.

    Two forms:

    * ``create_schedule(workflow, spec, *args, **kwargs)``: ``workflow`` is a
      ``@workflow`` function or its registered name; extra positional and keyword
      arguments are the workflow's.
    * ``create_schedule(workflow_name="...", spec=..., args=(...), kwargs={...})`` (no
      workflow object): the workflow's arguments go only through ``args`` and
      ``kwargs``, so they cannot clash with the options. The name need not be
      registered in this process (a tool without the code can create schedules); the
      process that fires the schedule must have the code.

    Args:
        workflow: a ``@workflow`` function or its registered name.
        spec: a :class:`ScheduleSpec`, a cron text (``"0 9 * * mon-fri"``), an interval
            text (``"15m"``) or a dict of ``ScheduleSpec`` fields.
        overlap_policy: what a tick does while the previous run still runs.
        schedule_id: explicit id (default: generated).
        catchup_window: after downtime, missed ticks younger than this still run (per the
            overlap policy); older ones are skipped and recorded. Default 1 hour.

    Raises:
        ValueError: invalid spec, time zone, dates, policy, or the id exists (nothing is
            stored).
        TypeError: no spec, neither ``workflow`` nor ``workflow_name``, or another
            keyword next to ``workflow_name=`` than ``args`` and ``kwargs``.
        SerializationError: an argument cannot be stored.
    """
    if workflow is None:
        name, args, kwargs = _keyword_form(args, kwargs)
    else:
        name = definition_of(workflow).name
    if spec is None:
        raise TypeError("create_schedule() needs a spec (cron text, interval or ScheduleSpec)")
    parsed = parse_spec(spec)
    where = f"arguments of scheduled workflow {name!r}"
    now = utcnow()
    schedule = Schedule(
        schedule_id=schedule_id or f"sched_{uuid.uuid4().hex}",
        workflow_name=name,
        spec=parsed,
        overlap_policy=_policy(overlap_policy),
        catchup_window=_window(catchup_window),
        args=encode(list(args), where=where),
        kwargs=encode(dict(kwargs), where=where),
        next_tick=parsed.next_tick(now),
        created_at=now,
    )
    schedule.next_run_time = _first_run_time(schedule)
    backend = await _backend(storage)
    record = schedule.to_record()
    if not await backend.save_schedule(record, expected_version=None):
        raise ValueError(f"schedule {schedule.schedule_id!r} already exists")
    return Schedule.from_record(record)  # as it reads back (durations in seconds)


def _keyword_form(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """The workflow name and arguments of ``create_schedule(workflow_name=..., args=...,
    kwargs=...)``."""
    options = dict(kwargs)
    name = options.pop("workflow_name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(
            "create_schedule() needs a workflow: a @workflow function, its name, or "
            "workflow_name='...'"
        )
    if args:
        raise TypeError(
            "create_schedule(workflow_name=...) takes the workflow's arguments only "
            "through args=(...) and kwargs={...}"
        )
    wf_args = options.pop("args", ())
    wf_kwargs = options.pop("kwargs", None) or {}
    if options:
        unknown = ", ".join(sorted(options))
        raise TypeError(
            f"create_schedule(workflow_name=...) got unexpected keyword(s) {unknown}; pass "
            "the workflow's arguments through args=(...) and kwargs={...}"
        )
    if isinstance(wf_args, str | bytes) or not isinstance(wf_args, list | tuple):
        raise TypeError("create_schedule(): args must be a tuple or list")
    if not isinstance(wf_kwargs, dict) or not all(isinstance(k, str) for k in wf_kwargs):
        raise TypeError("create_schedule(): kwargs must be a dict with string keys")
    return name, tuple(wf_args), dict(wf_kwargs)


def _first_run_time(schedule: Schedule) -> datetime | None:
    tick = schedule.next_tick
    if tick is None:
        return None
    return tick + schedule.spec.jitter_for(schedule.schedule_id, tick)


async def get_schedule(
    schedule_id: str, *, storage: StorageBackend | str | None = None
) -> Schedule | None:
    """The schedule with this id, or ``None``."""
    record = await (await _backend(storage)).get_schedule(schedule_id)
    return Schedule.from_record(record) if record is not None else None


async def list_schedules(
    workflow_name: str | None = None,
    status: ScheduleStatus | str | None = None,
    *,
    storage: StorageBackend | str | None = None,
) -> list[Schedule]:
    """Schedules, optionally of one workflow and/or status, ordered by id."""
    backend = await _backend(storage)
    wanted = ScheduleStatus(status) if status is not None else None
    records = await backend.list_schedules(workflow_name=workflow_name, status=wanted)
    return [Schedule.from_record(r) for r in records]


async def _change(
    schedule_id: str,
    storage: StorageBackend | str | None,
    change: Callable[[Schedule], None],
) -> Schedule:
    """Apply ``change`` with compare-and-set, retrying if a scheduler wrote meanwhile."""
    backend = await _backend(storage)
    for _ in range(50):
        record = await backend.get_schedule(schedule_id)
        if record is None:
            raise ScheduleNotFoundError(f"no schedule with id {schedule_id!r}")
        schedule = Schedule.from_record(record)
        change(schedule)
        updated = schedule.to_record()
        updated.updated_at = utcnow()
        if await backend.save_schedule(updated, expected_version=schedule.version):
            schedule.version = updated.version
            return schedule
        await asyncio.sleep(0.01)
    raise RuntimeError(f"schedule {schedule_id!r} kept changing; try again")


async def update_schedule(
    schedule_id: str,
    spec: SpecLike | None = None,
    overlap_policy: OverlapPolicy | str | None = None,
    *,
    catchup_window: str | int | float | timedelta | None = None,
    storage: StorageBackend | str | None = None,
) -> Schedule:
    """Change a schedule's spec and/or policy; the next tick is recomputed from now."""
    parsed = parse_spec(spec) if spec is not None else None
    policy = _policy(overlap_policy) if overlap_policy is not None else None
    window = _window(catchup_window) if catchup_window is not None else None

    def change(schedule: Schedule) -> None:
        if parsed is not None:
            schedule.spec = parsed
            schedule.next_tick = parsed.next_tick(utcnow())
        if policy is not None:
            schedule.overlap_policy = policy
        if window is not None:
            schedule.catchup_window = window
        schedule.next_run_time = _first_run_time(schedule) if _active(schedule) else None

    return await _change(schedule_id, storage, change)


def _active(schedule: Schedule) -> bool:
    return schedule.status == ScheduleStatus.ACTIVE


async def pause_schedule(
    schedule_id: str, *, storage: StorageBackend | str | None = None
) -> Schedule:
    """Stop firing (ticks while paused are not run later)."""

    def change(schedule: Schedule) -> None:
        schedule.status = ScheduleStatus.PAUSED
        schedule.next_run_time = None

    return await _change(schedule_id, storage, change)


async def resume_schedule(
    schedule_id: str, *, storage: StorageBackend | str | None = None
) -> Schedule:
    """Fire again, from the next tick after now."""

    def change(schedule: Schedule) -> None:
        schedule.status = ScheduleStatus.ACTIVE
        schedule.next_tick = schedule.spec.next_tick(utcnow())
        schedule.next_run_time = _first_run_time(schedule)

    return await _change(schedule_id, storage, change)


async def delete_schedule(schedule_id: str, *, storage: StorageBackend | str | None = None) -> bool:
    """Remove a schedule (runs it started are kept); ``False`` if there was none."""
    return await (await _backend(storage)).delete_schedule(schedule_id)


async def trigger_schedule(schedule_id: str, *, storage: StorageBackend | str | None = None) -> str:
    """Start a run of the schedule now, whatever its spec and overlap policy."""
    backend = await _backend(storage)
    record = await backend.get_schedule(schedule_id)
    if record is None:
        raise ScheduleNotFoundError(f"no schedule with id {schedule_id!r}")
    now = utcnow()
    run_id = tick_run_id(schedule_id, now)
    schedule = Schedule.from_record(record)
    if not await _service(backend).start_run(schedule, now, run_id):
        return run_id  # the same instant was triggered twice: one run

    def change(current: Schedule) -> None:
        current.last_run_id = run_id
        current.note(ScheduleEntry(now, "started", run_id=run_id, at=now))

    await _change(schedule_id, backend, change)
    return run_id


async def backfill_schedule(
    schedule_id: str,
    start_time: datetime,
    end_time: datetime,
    *,
    storage: StorageBackend | str | None = None,
) -> list[str]:
    """Start a run for every tick between ``start_time`` and ``end_time`` (inclusive;
    naive = UTC). A tick that already has a run is not started again. Backfilled runs
    ignore the overlap policy."""
    start_time, end_time = _utc(start_time), _utc(end_time)
    if end_time < start_time:
        raise ValueError("backfill end_time must not be before start_time")
    backend = await _backend(storage)
    record = await backend.get_schedule(schedule_id)
    if record is None:
        raise ScheduleNotFoundError(f"no schedule with id {schedule_id!r}")
    schedule = Schedule.from_record(record)
    service = _service(backend)
    run_ids, started = [], []
    for tick in schedule.spec.ticks_between(start_time, end_time):
        run_id = tick_run_id(schedule_id, tick)
        run_ids.append(run_id)
        if await service.start_run(schedule, tick, run_id):
            started.append((tick, run_id))  # ticks that already had a run are not new
    now = utcnow()

    def change(current: Schedule) -> None:
        for tick, run_id in started:
            current.note(ScheduleEntry(tick, "started", run_id=run_id, at=now))

    if started:
        await _change(schedule_id, backend, change)
    return run_ids


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _service(backend: StorageBackend, clock: Clock = utcnow) -> ScheduleService:
    """A schedule service starting runs with the configured default runtime."""
    runtime = get_runtime(get_config().default_runtime)
    return ScheduleService(
        backend,
        start=lambda request: runtime.start_detached(request, backend),
        wake=lambda run_id: runtime.wake(run_id, backend),
        clock=clock,
    )


class LocalScheduler:
    """Fires schedules (and runs them) in this process with the local runtime.

    ``tick_once()`` does one pass; ``run(duration=None)`` loops, sleeping until the next
    due schedule (at most ``poll_interval``). ``clock`` lets tests inject time.
    """

    def __init__(
        self,
        poll_interval: float = 1.0,
        *,
        storage: StorageBackend | str | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.poll_interval = poll_interval
        self._storage = storage
        self.clock = clock
        self._activated = False

    async def _service(self) -> ScheduleService:
        backend = await _backend(self._storage)
        runtime = get_runtime("local")
        return ScheduleService(
            backend,
            start=lambda request: runtime.start_detached(request, backend),
            wake=lambda run_id: runtime.wake(run_id, backend),
            clock=self.clock,
        )

    async def tick_once(self) -> datetime | None:
        """Fire due schedules once; return when the next one is due."""
        service = await self._service()
        if not self._activated:
            await activate_declared(service.storage)
            self._activated = True
        return await service.tick()

    async def run(self, duration: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        stop_at = None if duration is None else loop.time() + duration
        while stop_at is None or loop.time() < stop_at:
            nxt = await self.tick_once()
            delay = self.poll_interval
            if nxt is not None:
                delay = min(delay, max(0.0, (nxt - self.clock()).total_seconds()))
            if stop_at is not None:
                delay = min(delay, max(0.0, stop_at - loop.time()))
            await asyncio.sleep(delay)


async def activate_scheduled_workflows(storage: StorageBackend | str | None = None) -> list[str]:
    """Write the schedules declared with ``@scheduled_workflow`` to storage (new ones
    created, changed ones updated); workers and schedulers call this at start-up."""
    return await activate_declared(await _backend(storage))


def scheduled_workflow(
    cron: str | None = None,
    *,
    interval: str | int | float | timedelta | None = None,
    calendar: CalendarSpec | list[CalendarSpec] | None = None,
    timezone: str = "UTC",
    start_at: datetime | None = None,
    end_at: datetime | None = None,
    jitter: str | int | float | timedelta | None = None,
    overlap_policy: OverlapPolicy | str = OverlapPolicy.SKIP,
    schedule_id: str | None = None,
    catchup_window: str | int | float | timedelta | None = None,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    **workflow_options: Any,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """``@workflow`` plus a schedule, created in storage when a worker or scheduler that
    imports the module starts (or on :func:`activate_scheduled_workflows`).

    The schedule id defaults to ``"<workflow name>"``.

    Raises:
        DefinitionError: the spec, ``overlap_policy`` or ``catchup_window`` is invalid
            (raised at import, when the decorator runs).
    """
    try:
        spec = ScheduleSpec(
            cron=cron,
            interval=interval,
            calendar=calendar if calendar is None or isinstance(calendar, list) else [calendar],
            timezone=timezone,
            start_at=start_at,
            end_at=end_at,
            jitter=jitter,
        )
        policy = _policy(overlap_policy)
        window = _window(catchup_window)
    except ValueError as exc:  # a pydantic ValidationError is a ValueError too
        raise DefinitionError(f"@scheduled_workflow: {exc}") from exc

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        wrapped = workflow(**workflow_options)(fn)
        name = definition_of(wrapped).name
        where = f"arguments of scheduled workflow {name!r}"
        declare(
            DeclaredSchedule(
                schedule_id=schedule_id or name,
                workflow_name=name,
                spec=spec,
                overlap_policy=policy,
                catchup_window=window,
                args=encode(list(args), where=where),
                kwargs=encode(dict(kwargs or {}), where=where),
            )
        )
        return wrapped

    return decorate


__all__ = [
    "CalendarSpec",
    "LocalScheduler",
    "OverlapPolicy",
    "Schedule",
    "ScheduleNotFoundError",
    "ScheduleSpec",
    "ScheduleStatus",
    "activate_scheduled_workflows",
    "backfill_schedule",
    "create_schedule",
    "delete_schedule",
    "get_schedule",
    "list_schedules",
    "pause_schedule",
    "resume_schedule",
    "scheduled_workflow",
    "trigger_schedule",
]
