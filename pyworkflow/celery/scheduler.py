"""Timer firing and crash recovery for Celery deployments.

A :class:`TimerSweeper` fires due schedules, claims due timers from storage and sends
their runs to the workflow queue, and re-sends runs whose worker died (expired lease, or a same-host
owner process that no longer exists). Claims are atomic leases, so any number of
sweepers (``pyworkflow scheduler`` processes, beat-driven timer tasks) may run at once
without firing anything twice. A claimed run whose message is lost is claimed again
when the claim's lease (``dispatch_timeout``) expires.

At scale (say 100,000 runs due in the same minute) two rules keep a sweeper cheap and
its claims useful:

* **Backpressure.** While a burst is under way (the last claim was a full batch) the
  sweeper asks the broker how many messages wait in the workflow queue and claims only
  up to :data:`MAX_BACKLOG` of them. Claiming faster than the workers take runs would
  only lengthen the queue, make every claim skip more claimed-but-untaken rows, and let
  claims expire (``dispatch_timeout``) before a worker reached them, which sends the same
  runs again.
* **Recovery at most once per poll interval.** A burst makes :meth:`TimerSweeper.tick`
  loop without pausing; the recovery pass (which pages through every running and pending
  run, see :mod:`pyworkflow.engine.recovery`) runs at most every
  ``timer_poll_interval`` seconds meanwhile.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial

from pyworkflow.celery.app import WORKFLOWS_QUEUE, sending_app
from pyworkflow.celery.messages import Route, route_of, routes_of, send_workflow
from pyworkflow.celery.metrics_server import DueRunsReporter, start_scheduler_metrics
from pyworkflow.celery.publishing import is_broker_fault, publish, send_off_loop
from pyworkflow.celery.runtime import CeleryRuntime
from pyworkflow.celery.worker import round_messages, start_beat
from pyworkflow.core.config import discover_workflows, get_config
from pyworkflow.core.registry import list_workflows
from pyworkflow.engine.log import is_storage_fault
from pyworkflow.engine.owners import OwnerKind, new_owner, owner_kind, sweeper_of
from pyworkflow.engine.recovery import (
    awaiting_delivery,
    runs_to_recover,
    signalled_suspended_runs,
)
from pyworkflow.engine.workers import Liveness, prune_workers, read_liveness
from pyworkflow.scheduler.declared import activate_declared
from pyworkflow.scheduler.service import ScheduleService
from pyworkflow.storage.base import SCHEDULES, StorageBackend
from pyworkflow.storage.schemas import utcnow
from pyworkflow.utils.log import logger

_BATCH = 100
_FLOOR = 0.05
#: Messages the workflow queues may hold in all before a sweeper in a burst stops claiming.
MAX_BACKLOG = 1000
# Pause of a sweeper held back by a full queue (seconds).
_THROTTLED = 0.2
# The scheduler logs how many runs it claimed at most this often (seconds).
_REPORT_EVERY = 10.0


class TimerSweeper:
    """One sweeper per process; :meth:`tick` does one pass."""

    def __init__(
        self,
        storage: StorageBackend,
        *,
        owner: str | None = None,
        max_backlog: int = MAX_BACKLOG,
    ) -> None:
        self.storage = storage
        self.max_backlog = max_backlog
        # Not a process id: a run this sweeper claimed never counts as executing here.
        self.owner = owner or new_owner(OwnerKind.SWEEP)
        runtime = CeleryRuntime()
        self.schedules = ScheduleService(
            storage,
            start=lambda request: runtime.start(request, storage),
            wake=lambda run_id: runtime.wake(run_id, storage),
        )
        self._activated = False
        self._deaths_seen: frozenset[str] = frozenset()
        self._burst = False  # the last claim was a full batch: more are due
        self._throttled = False  # the last claim was held back by a full queue
        self._recovered_at = float("-inf")  # monotonic time of the last recovery pass
        # The queues due runs are sent to: the default one, the registered workflows'
        # (``@workflow(queue=)``), and any other a claimed run was stored with.
        self.queues = {WORKFLOWS_QUEUE} | {
            definition.queue for definition in list_workflows().values() if definition.queue
        }
        #: Runs this sweeper claimed and sent, in total (the benchmark and tests read it).
        self.claimed_total = 0

    async def tick(self, *, full: bool = True) -> float:
        """Fire due timers and recover dead runs; return seconds until the next timer.

        ``full`` also runs the slower check (hook payloads and cancellations that arrived
        while nobody could wake their run).
        """
        await self.storage.connect()
        with_schedules = SCHEDULES in self.storage.capabilities  # a third-party backend may not
        if not self._activated and with_schedules:
            await activate_declared(self.storage)  # @scheduled_workflow in imported modules
            self._activated = True
        await self.fire_due()
        next_schedule = await self.schedules.tick() if with_schedules else None
        if full or time.monotonic() - self._recovered_at >= get_config().timer_poll_interval:
            self._recovered_at = time.monotonic()
            await self.recover()
        if full:
            await self.rewake_signalled()
            await prune_workers(self.storage, utcnow())
        nxt = await self.storage.next_wake_time()
        if next_schedule is not None and (nxt is None or next_schedule < nxt):
            nxt = next_schedule
        if self._throttled:
            return _THROTTLED  # the queue is full: wait for the workers to take some
        if self._burst:
            return 0.0  # more are due right now
        if nxt is None:
            return float("inf")
        # A due run stays 'suspended' (still listed by next_wake_time) until its worker
        # takes it: the floor keeps this loop from spinning meanwhile.
        return max(_FLOOR, (nxt - utcnow()).total_seconds())

    async def fire_due(self) -> int:
        """Claim due runs (a batch, fewer while the queue is full) and send them; return
        how many."""
        limit = _BATCH
        if self._burst:
            room = await self._queue_room()
            limit = _BATCH if room is None else min(_BATCH, room)
        self._throttled = limit <= 0
        if self._throttled:
            return 0
        now = utcnow()
        expires = now + timedelta(seconds=get_config().dispatch_timeout)
        # A fresh owner per claim: this sweeper's earlier claims (runs already sent, not
        # yet taken by a worker) are leased to other owners and are not claimed again.
        claim = f"{self.owner}/{uuid.uuid4().hex[:8]}"
        claimed = await self.storage.claim_due_runs(now, claim, expires, limit=limit)
        self._burst = len(claimed) >= limit
        routes = await routes_of(self.storage, claimed)  # each run's queue is stored with it
        self.queues.update(route.queue for route in routes.values() if route.queue)
        await send_off_loop(
            [
                partial(send_workflow, run_id, route=routes[run_id], steal_from=claim)
                for run_id in claimed
                if run_id in routes
            ]
        )
        self.claimed_total += len(claimed)
        return len(claimed)

    async def _queue_room(self) -> int | None:
        """How many more messages the workflow queues take, in all, before
        :attr:`max_backlog`; ``None`` when the broker cannot say (claim as usual: a
        broker fault shows up when sending).

        One budget for every queue, because a claim cannot pick runs by queue: a routed
        queue nobody consumes therefore holds back the timers of the others once it is
        full (said once at WARNING) rather than growing without bound."""
        depths = await asyncio.to_thread(queue_depths, sorted(self.queues))
        if depths is None:
            return None
        room = self.max_backlog - sum(depths.values())
        if room <= 0 and not self._throttled:
            logger.warning(
                "scheduler {} holds back due runs: the workflow queues hold {} messages "
                "(max {}): {}",
                self.owner,
                sum(depths.values()),
                self.max_backlog,
                ", ".join(f"{queue}={depth}" for queue, depth in depths.items() if depth),
            )
        return room

    async def recover(self) -> None:
        """Runs whose worker died (stopped beating in the worker registry, lease expired,
        or a same-host holder that no longer exists) or whose queued message was lost:
        claim each, then re-send it."""
        now = utcnow()
        expires = now + timedelta(seconds=get_config().dispatch_timeout)
        ttl = get_config().lease_ttl
        liveness = await read_liveness(self.storage, now, ttl)
        sent: set[str] = set()
        async for found in runs_to_recover(
            self.storage, now, self.owner, lease_ttl=ttl, liveness=liveness
        ):
            if found.lost_round is not None:
                await self._redispatch(found.run_id, found.lost_round, expires)
                sent.add(found.run_id)
            elif await self.storage.acquire_lease(
                found.run_id, self.owner, expires, now, steal_from=found.steal_from
            ):
                await self._resend(found.run_id, fresh=not found.counts)
                sent.add(found.run_id)
        died = liveness.dead - self._deaths_seen
        self._deaths_seen = liveness.dead
        if died:
            await self.redeliver(liveness, died, already_sent=sent)

    async def _redispatch(self, run_id: str, round_owner: str, expires: datetime) -> None:
        """A round's step messages were lost: give the round the queue allowance again
        and send its unrecorded steps (or, with none left, the run) once more."""
        if not await self.storage.acquire_lease(
            run_id, round_owner, expires, utcnow(), steal_from=round_owner
        ):
            return  # taken meanwhile
        messages = await round_messages(self.storage, run_id)
        if not messages:  # every step recorded: the run itself waits to go on
            route = await route_of(self.storage, run_id)
            if route is None:
                return
            messages = [partial(send_workflow, run_id, route=route, steal_from=round_owner)]
        logger.warning("run {} lost its step messages; sending them again", run_id)
        await publish(run_id, messages)

    async def redeliver(
        self, liveness: Liveness, died: frozenset[str], *, already_sent: Iterable[str] = ()
    ) -> None:
        """Workers stopped beating: send again the messages of runs that wait for one
        (they may have been fetched by a dead worker, which a Redis broker hands out again
        only after its visibility timeout; duplicates lose harmlessly). ``already_sent``:
        runs this pass sent already (recovered just now), not sent twice."""
        sent = 0
        skip = set(already_sent)
        async for run in awaiting_delivery(self.storage, liveness):
            if run.run_id in skip:
                continue
            owner = run.lease_owner
            if owner is not None and owner_kind(owner) is OwnerKind.ROUND:
                messages = await round_messages(self.storage, run.run_id)
                if messages is None:
                    continue
            else:
                route = Route.of(run)
                messages = [partial(send_workflow, run.run_id, route=route, steal_from=owner)]
            await publish(run.run_id, messages)
            sent += 1
        logger.warning(
            "{} worker process(es) stopped beating ({}); re-sent the messages of {} waiting run(s)",
            len(died),
            ", ".join(sorted(died)),
            sent,
        )

    async def _resend(self, run_id: str, *, fresh: bool) -> None:
        route = await route_of(self.storage, run_id)
        if route is None:
            return  # deleted meanwhile
        if not fresh:
            logger.warning("run {} lost its worker; sending it for recovery", run_id)
        await send_off_loop(
            [partial(send_workflow, run_id, route=route, steal_from=self.owner, recovery=not fresh)]
        )

    async def rewake_signalled(self) -> None:
        """Suspended runs with a hook payload or a cancellation nobody delivered (the
        process that accepted it could not send the wake-up)."""
        signalled = await signalled_suspended_runs(self.storage)
        routes = await routes_of(self.storage, signalled)
        await send_off_loop(
            [
                partial(send_workflow, run_id, route=routes[run_id], force=True)
                for run_id in signalled
                if run_id in routes
            ]
        )


def queue_depths(queues: list[str]) -> dict[str, int] | None:
    """Messages waiting in each of ``queues`` (not those fetched by workers; a queue the
    broker does not know holds none), or ``None`` when the broker does not answer. One
    round trip per queue: ``LLEN`` on Redis, a passive queue declaration on RabbitMQ."""
    depths: dict[str, int] = {}
    try:
        with sending_app().pool.acquire(block=True, timeout=5) as conn:
            for queue in queues:
                # A channel per queue: RabbitMQ closes the channel of a passive
                # declaration that names a queue it does not have.
                with conn.channel() as channel:
                    try:
                        declared = channel.queue_declare(queue=queue, passive=True)
                    except conn.channel_errors:
                        depths[queue] = 0  # never declared: nothing was sent to it
                        continue
                    depths[queue] = int(declared.message_count)
    except Exception as exc:  # noqa: BLE001 - no answer is no reason to stop claiming
        logger.debug("could not read the depths of queues {}: {}", queues, exc)
        return None
    return depths


async def run_scheduler(
    storage: StorageBackend,
    *,
    poll_interval: float | None = None,
    duration: float | None = None,
    metrics_port: int | None = None,
) -> None:
    """The ``pyworkflow scheduler`` loop: sleep until the next stored wake-up time (at
    most ``poll_interval``), fire, repeat; the slow checks run every few polls. With
    ``metrics_port`` (default: the ``metrics_port`` setting) it serves ``/metrics``
    there, the overdue backlog included."""
    cfg = get_config()
    poll = poll_interval if poll_interval is not None else cfg.timer_poll_interval
    port = metrics_port if metrics_port is not None else cfg.metrics_port
    discover_workflows()  # schedules start runs by workflow name; declarations register
    sending_app()  # build the Celery app now, not while the first due timer waits
    sweeper = TimerSweeper(storage)
    due_runs = start_scheduler_metrics(port) if port is not None else None
    # In the registry as well: a run this scheduler claimed and could not send before it
    # died is taken back as soon as its beats stop, not when the claim's lease runs out.
    beat = start_beat(sweeper_of(sweeper.owner) or sweeper.owner, kind="scheduler")
    try:
        await _serve(sweeper, poll, duration, due_runs)
    finally:
        logger.info(
            "scheduler {} claimed {} due run(s) in total", sweeper.owner, sweeper.claimed_total
        )
        if beat is not None:
            await asyncio.to_thread(beat.stop)


async def _serve(
    sweeper: TimerSweeper, poll: float, duration: float | None, due_runs: DueRunsReporter | None
) -> None:
    loop = asyncio.get_running_loop()
    stop_at = None if duration is None else loop.time() + duration
    passes = 0
    logger.info("pyworkflow scheduler {} polling every {}s", sweeper.owner, poll)
    failing = False
    reported, reported_at = 0, loop.time()
    counted_at = -poll
    while stop_at is None or loop.time() < stop_at:
        if sweeper.claimed_total != reported and loop.time() - reported_at >= _REPORT_EVERY:
            logger.info(
                "scheduler {} claimed {} due run(s) in the last {:.0f}s ({} in total)",
                sweeper.owner,
                sweeper.claimed_total - reported,
                loop.time() - reported_at,
                sweeper.claimed_total,
            )
            reported, reported_at = sweeper.claimed_total, loop.time()
        try:
            delay = await sweeper.tick(full=passes % 5 == 0)
            if due_runs is not None and loop.time() - counted_at >= poll:
                counted_at = loop.time()  # (a count per poll, not per pass of a burst)
                await due_runs.report(sweeper.storage, utcnow())
            if failing:
                logger.info("scheduler passes work again")
            failing = False
        except Exception as exc:  # noqa: BLE001 - an outage must not stop the timers
            if not (is_storage_fault(exc) or is_broker_fault(exc)):
                logger.exception("scheduler pass failed; retrying")
            elif not failing:  # one line per outage, not one traceback per pass
                logger.warning("scheduler pass failed ({}: {}); retrying", type(exc).__name__, exc)
            failing = True
            delay = poll
        passes += 1
        delay = min(delay, poll)
        if stop_at is not None:
            delay = min(delay, max(0.0, stop_at - loop.time()))
        await asyncio.sleep(delay)
