"""Firing schedules: turn due ticks into runs, exactly once, whatever the number of
scheduler processes.

One pass (:meth:`ScheduleService.tick`) takes each due schedule and

1. works out its due ticks (skipping, and recording, those older than the catch-up
   window), decides each one by the overlap policy, and *claims* the result with a
   compare-and-set on the schedule's version: runs to start are written as ``pending``
   with run ids derived from (schedule, tick). Of several schedulers only one claim wins.
2. starts the pending runs. A derived run id makes a start idempotent, so a scheduler
   that crashed after claiming leaves work the next pass finishes, never duplicates.
3. records them as started (a second compare-and-set; losing it is harmless).

The runtime supplies how a run starts (in this process, or enqueued for workers) and
how a run is woken (to see a cancellation).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from pyworkflow.core.exceptions import RunAlreadyExistsError, WorkflowNotFoundError
from pyworkflow.core.registry import get_workflow, require_workflow
from pyworkflow.engine.context import TERMINATE_PREFIX
from pyworkflow.engine.runs import RunRequest, derived_run_id
from pyworkflow.scheduler.model import Schedule, ScheduleEntry
from pyworkflow.scheduler.specs import OverlapPolicy
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import ScheduleRecord, ScheduleStatus, utcnow
from pyworkflow.utils.log import logger

Starter = Callable[[RunRequest], Awaitable[str]]
Waker = Callable[[str], Awaitable[None]]
Clock = Callable[[], datetime]

# A schedule with a buffered tick is looked at again this often (its run may have ended).
BUFFER_RECHECK = timedelta(seconds=1)
# Claimed starts not confirmed by then are retried by the next pass.
PENDING_RETRY = timedelta(seconds=5)
# A tick is late by the scheduler's own delay (poll, load); this much lateness never
# counts against the catch-up window.
CATCHUP_GRACE = timedelta(seconds=5)


def tick_run_id(schedule_id: str, tick: datetime) -> str:
    """The run id of a schedule's tick: the same in every scheduler process."""
    return derived_run_id(schedule_id, f"schedule-tick:{tick.isoformat()}")


class ScheduleService:
    """Fires the schedules of one storage; see the module docstring."""

    def __init__(
        self,
        storage: StorageBackend,
        start: Starter,
        wake: Waker,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self.storage = storage
        self._start = start
        self._wake = wake
        self.clock = clock

    async def tick(self, limit: int = 100) -> datetime | None:
        """Fire up to ``limit`` due schedules whose workflow this process can start;
        return when the next such one is due (``None``: none). A schedule of a workflow
        not imported here is left, unclaimed, to a process that has it, and does not
        count: however many of those stand first in line, the ones behind are reached."""
        for record in await self._startable(self.clock(), limit):
            try:
                await self.fire(Schedule.from_record(record))
            except Exception:  # noqa: BLE001 - one broken schedule must not stop the rest
                logger.exception("firing schedule {} failed", record.schedule_id)
        return await self.next_due()

    async def next_due(self) -> datetime | None:
        """When the earliest schedule this process can start is due."""
        first = await self._startable(datetime.max.replace(tzinfo=UTC), 1)
        return first[0].next_run_time if first else None

    async def _startable(self, now: datetime, wanted: int) -> list[ScheduleRecord]:
        """The first ``wanted`` schedules due by ``now`` whose workflow is imported here.

        The due list has no cursor, so the window widens by the number of schedules left
        to other processes until enough startable ones are in it or the list ends: no
        cap, at the cost of reading the others again (they are few: a deployment's
        schedulers usually import every scheduled workflow).
        """
        look_at = wanted
        while True:
            records = await self.storage.list_due_schedules(now, look_at)
            mine = [r for r in records if get_workflow(r.workflow_name) is not None]
            if len(mine) >= wanted or len(records) < look_at:
                return mine[:wanted]
            look_at = max(wanted + len(records) - len(mine), 2 * look_at)

    async def fire(self, schedule: Schedule) -> bool:
        """Process one schedule's due ticks; ``False`` if another scheduler won the claim."""
        now = self.clock()
        await self._decide(schedule, now)
        schedule.next_run_time = _next_time(schedule, now)
        if schedule.pending:
            retry = now + PENDING_RETRY
            nxt = schedule.next_run_time
            schedule.next_run_time = retry if nxt is None else min(nxt, retry)
        if not await self._save(schedule):
            return False
        if schedule.pending:
            await self.start_pending(schedule)
        return True

    async def _decide(self, schedule: Schedule, now: datetime) -> None:
        spec, policy = schedule.spec, schedule.overlap_policy
        running = await self._is_running(schedule.last_run_id) or bool(schedule.pending)
        if schedule.buffer and not running:
            self._claim(schedule, schedule.buffer.pop(0), now)
            running = True
        tick = schedule.next_tick
        window = timedelta(seconds=schedule.catchup_window) + CATCHUP_GRACE
        while tick is not None and tick <= now:
            late = now - tick - spec.jitter_for(schedule.schedule_id, tick)
            if late > window:
                schedule.note(ScheduleEntry(tick, "skipped: outside the catch-up window", at=now))
            elif not running or policy == OverlapPolicy.ALLOW_ALL:
                self._claim(schedule, tick, now)
                running = True
            elif policy == OverlapPolicy.SKIP:
                schedule.note(ScheduleEntry(tick, "skipped: previous run still running", at=now))
            elif policy == OverlapPolicy.BUFFER_ONE and schedule.buffer:
                schedule.note(ScheduleEntry(tick, "skipped: a tick is already buffered", at=now))
            elif policy in (OverlapPolicy.BUFFER_ONE, OverlapPolicy.BUFFER_ALL):
                schedule.buffer.append(tick)
            elif policy == OverlapPolicy.CANCEL_OTHER:
                await self._stop_last(schedule, terminate=False)
                for old in schedule.buffer:
                    schedule.note(ScheduleEntry(old, "skipped: replaced by a newer tick", at=now))
                schedule.buffer = [tick]  # starts once the cancelled run has ended
            else:  # TERMINATE_OTHER
                await self._stop_last(schedule, terminate=True)
                self._claim(schedule, tick, now)
            tick = spec.next_tick(tick)
        schedule.next_tick = tick

    def _claim(self, schedule: Schedule, tick: datetime, now: datetime) -> None:
        run_id = tick_run_id(schedule.schedule_id, tick)
        schedule.pending.append(ScheduleEntry(tick, "started", run_id=run_id, at=now))
        schedule.last_run_id = run_id

    async def start_pending(self, schedule: Schedule) -> None:
        """Start the claimed runs (idempotent), then move them from ``pending`` to the
        history; a concurrent change of the schedule (pause, update, another scheduler)
        is merged in by re-reading and retrying."""
        entries = list(schedule.pending)
        for entry in entries:
            assert entry.run_id is not None
            await self.start_run(schedule, entry.tick, entry.run_id)
        started = {entry.run_id for entry in entries}
        for _ in range(50):
            moved = [e for e in schedule.pending if e.run_id in started]
            if not moved:
                return  # someone else recorded them
            schedule.pending = [e for e in schedule.pending if e.run_id not in started]
            for entry in moved:
                schedule.note(entry)
            schedule.next_run_time = _next_time(schedule, self.clock())
            if await self._save(schedule):
                return
            record = await self.storage.get_schedule(schedule.schedule_id)
            if record is None:
                return  # deleted meanwhile
            schedule = Schedule.from_record(record)
        logger.warning("schedule {}: could not record started runs", schedule.schedule_id)

    async def start_run(self, schedule: Schedule, tick: datetime, run_id: str) -> bool:
        """Start the run of ``tick``; ``False`` if it already existed (nothing started)."""
        try:
            definition = require_workflow(schedule.workflow_name)
        except WorkflowNotFoundError:
            logger.error(
                "schedule {}: workflow {!r} is not registered in this process",
                schedule.schedule_id,
                schedule.workflow_name,
            )
            raise
        args, kwargs = schedule.decoded_args()
        request = RunRequest(
            definition=definition,
            args=tuple(args),
            kwargs=kwargs,
            run_id=run_id,
            schedule={"schedule_id": schedule.schedule_id, "scheduled_time": tick.isoformat()},
        )
        try:
            await self._start(request)
        except RunAlreadyExistsError:
            return False  # started by an earlier pass or another scheduler
        logger.info("schedule {} started run {} for {}", schedule.schedule_id, run_id, tick)
        return True

    async def _stop_last(self, schedule: Schedule, *, terminate: bool) -> None:
        run_id = schedule.last_run_id
        if run_id is None:
            return
        why = f"schedule {schedule.schedule_id!r}: a newer tick replaces it"
        reason = f"{TERMINATE_PREFIX}{why}" if terminate else why
        if await self.storage.request_cancellation(run_id, reason, self.clock()):
            await self._wake(run_id)

    async def _is_running(self, run_id: str | None) -> bool:
        if run_id is None:
            return False
        run = await self.storage.get_run(run_id)
        return run is not None and not run.status.is_terminal

    async def _save(self, schedule: Schedule) -> bool:
        record = schedule.to_record()
        record.updated_at = self.clock()
        if not await self.storage.save_schedule(record, expected_version=schedule.version):
            logger.debug("schedule {} was updated by another scheduler", schedule.schedule_id)
            return False
        schedule.version = record.version
        return True


def _next_time(schedule: Schedule, now: datetime) -> datetime | None:
    """When the scheduler must look at ``schedule`` again."""
    if schedule.status != ScheduleStatus.ACTIVE:
        return None
    nxt = None
    if schedule.next_tick is not None:
        nxt = schedule.next_tick + schedule.spec.jitter_for(
            schedule.schedule_id, schedule.next_tick
        )
    if schedule.buffer:
        recheck = now + BUFFER_RECHECK
        nxt = recheck if nxt is None else min(nxt, recheck)
    return nxt
