"""The local runtime: workflows and steps run in this process on asyncio.

Steps run inline, so a run that never suspends is never replayed. For each storage it
serves, the runtime keeps one small service on the running event loop:

* a **timer loop** that sleeps until the earliest stored wake-up time (woken early when
  a run of this process suspends sooner), claims due runs through their lease and
  resumes them;
* a **heartbeat** renewing the leases of runs executing here;
* **recovery**: when the service starts (and every few poll intervals) it resumes runs
  whose process died mid-execution: same-host owners that no longer exist, or leases
  that expired;
* **cancellations** recorded by other processes (an operator's script without the
  workflow code records the request and returns): checked once per poll interval, so a
  waiting run is woken to cancel, and a run executing here sees the request, within
  that interval.

A run whose workflow is not registered in this process (its code is not imported here)
is left to a process that has it: its lease is released at once, one INFO line says so,
and the run is not touched again for a backoff (:func:`backoff_delay`, at least one poll
interval), so a due run of another application never makes the timer loop spin.

The service lives as long as its event loop; a synchronous ``start()`` stops it again
before returning.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pyworkflow.core.config import get_config
from pyworkflow.core.exceptions import (
    RunNotFoundError,
    WorkflowAlreadyRunningError,
    WorkflowNotFoundError,
)
from pyworkflow.core.registry import find_workflow
from pyworkflow.engine.context import deliver_cancel
from pyworkflow.engine.executor import Outcome
from pyworkflow.engine.log import is_storage_fault
from pyworkflow.engine.recovery import (
    BACKOFF_CAP,
    backoff_delay,
    cancel_requested_runs,
    cancel_signalled_runs,
    payload_signalled_runs,
    runs_to_recover,
)
from pyworkflow.engine.runner import (
    connect,
    execute_new,
    keep_leases,
    new_owner_id,
    resume_run,
    store_new_run,
)
from pyworkflow.engine.runs import RunRequest, build_run
from pyworkflow.engine.transient import TransientContext, run_transient
from pyworkflow.runtime.base import Runtime
from pyworkflow.scheduler.declared import activate_declared
from pyworkflow.scheduler.service import ScheduleService
from pyworkflow.serialization import dumps
from pyworkflow.storage.base import SCHEDULES, StorageBackend
from pyworkflow.storage.schemas import RunStatus, WorkflowRun, utcnow
from pyworkflow.utils.clock import timer_now
from pyworkflow.utils.log import logger

_RECOVERY_EVERY_POLLS = 5
_TRANSIENT_MEMORY = 1000
_CLAIM_BATCH = 100  # due runs claimed per timer pass (claim_due_runs' default)


@dataclass(slots=True)
class _Absent:
    """A run whose workflow is not registered in this process, left to other processes.

    Attributes:
        attempts: how many times in a row this process found it could not resume it.
        until: loop time before which the run is not touched again.
        due: it was found waiting for its timer (not crashed mid-execution): the timer
            loop lists due runs and leases only the others while it is left to others.
    """

    attempts: int
    until: float
    due: bool = False


class _Service:
    """Timers, heartbeat and recovery for one storage on one event loop."""

    def __init__(self, runtime: LocalRuntime, storage: StorageBackend) -> None:
        self.runtime = runtime
        self.storage = storage
        self.loop = asyncio.get_running_loop()
        self.active: set[str] = set()
        self._again: set[str] = set()  # asked to resume while executing: resume after
        # Runs whose execution storage failed, waiting to be resumed again (their lease
        # stays ours meanwhile), and how many times in a row that happened to each.
        self.backing_off: set[str] = set()
        self._faults: dict[str, int] = {}
        # Runs whose workflow is not registered here (see the module docstring).
        self._absent: dict[str, _Absent] = {}
        self._cancels_checked = float("-inf")  # loop time of the last cancellation check
        self.tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._schedules: ScheduleService | None = None
        self._next_wake: datetime | None = None
        cfg = get_config()
        self.poll = cfg.timer_poll_interval
        self.lease_ttl = cfg.lease_ttl
        self._loops = [
            asyncio.ensure_future(self._timer_loop()),
            asyncio.ensure_future(self._heartbeat_loop()),
        ]

    async def run(
        self, run_id: str, work: Callable[[], Awaitable[Outcome | None]]
    ) -> Outcome | None:
        """Execute ``work`` for ``run_id`` with its lease kept alive; wake timers after."""
        self.active.add(run_id)
        try:
            outcome = await work()
        finally:
            self.active.discard(run_id)
            if run_id in self._again:
                self._again.discard(run_id)
                self.spawn(run_id)
        if outcome is not None and outcome.wake_at is not None:
            self.notify(outcome.wake_at)
        if outcome is not None and outcome.next_run_id is not None:
            self.spawn(outcome.next_run_id)  # the continuation runs on in the background
        if outcome is not None and outcome.parent_run_id is not None:
            self.wake(outcome.parent_run_id)  # a child ended: its parent may be waiting
        for waiter in outcome.handoff if outcome is not None else ():
            self.spawn(waiter)  # its turn for a concurrency slot came
        if outcome is not None and outcome.queued_until is not None:
            # A start a rate limit delayed: resumed at its time (recovery is the fallback).
            delay = (outcome.queued_until - utcnow()).total_seconds()
            self._track(self._resume_after(run_id, max(delay, 0.0)))
        for child in outcome.cancelled_children if outcome is not None else ():
            run = await self.storage.get_run(child)
            if run is not None and not deliver_cancel(child, run.cancel_reason):
                self.wake(child)  # parent_close_policy: the child cleans up or ends now
        return outcome

    def notify(self, wake_at: datetime) -> None:
        if self._next_wake is None or wake_at < self._next_wake:
            self._wake.set()

    def spawn(self, run_id: str, *, recovery: bool = False, steal_from: str | None = None) -> None:
        if run_id in self.active:
            # Asked while it executes here (e.g. handed a concurrency slot while it
            # stores itself as waiting): resume it again once this execution ends.
            self._again.add(run_id)
            return
        if self._left_to_others(run_id):
            return
        self.active.add(run_id)  # reserve before the task starts: no double spawn
        self._track(self._resume(run_id, recovery, steal_from))

    def wake(self, run_id: str) -> None:
        """Resume ``run_id`` now even if its timer is not due (what it waits for happened)."""
        if not self._left_to_others(run_id):
            self._track(self._wake_up(run_id))

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        # A fresh context: a run resumed from inside another run's task (a child started
        # by its parent) must not inherit that run's contextvars (step context, ...).
        task = asyncio.get_running_loop().create_task(work, context=contextvars.Context())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _wake_up(self, run_id: str, patience: float = 10.0) -> None:
        # The run may still be finishing the execution that decided to wait (it holds
        # its lease until it has stored 'suspended'): retry until it is free.
        loop = asyncio.get_running_loop()
        give_up = loop.time() + patience
        while loop.time() < give_up:
            if run_id not in self.active:
                try:
                    outcome = await self.run(run_id, lambda: self._resume_now(run_id))
                except RunNotFoundError:
                    return  # deleted meanwhile: nothing to wake
                except WorkflowNotFoundError as exc:  # its code is not registered here
                    await self._leave_to_others(run_id, exc)
                    return
                except Exception:  # noqa: BLE001 - the poll fallback will still wake it
                    logger.exception("waking run {} failed", run_id)
                    return
                if outcome is not None:
                    return
                run = await self.storage.get_run(run_id)
                if run is None or run.status.is_terminal:
                    return
            await asyncio.sleep(0.02)

    def _resume_now(self, run_id: str) -> Awaitable[Outcome | None]:
        return resume_run(
            self.storage,
            run_id,
            owner=self.runtime.owner,
            lease_ttl=self.lease_ttl,
            force=True,
            on_child_created=self.spawn,
        )

    async def _resume(self, run_id: str, recovery: bool, steal_from: str | None) -> None:
        self.active.discard(run_id)
        try:
            await self.run(
                run_id,
                lambda: resume_run(
                    self.storage,
                    run_id,
                    owner=self.runtime.owner,
                    lease_ttl=self.lease_ttl,
                    recovery=recovery,
                    steal_from=steal_from,
                    on_child_created=self.spawn,
                ),
            )
        except RunNotFoundError as exc:  # deleted meanwhile: nothing left to resume
            logger.warning("run {} no longer exists; not resumed: {}", run_id, exc)
        except WorkflowNotFoundError as exc:  # its code is not registered in this process
            await self._leave_to_others(run_id, exc)
        except Exception as exc:  # noqa: BLE001 - a background resume must not kill the service
            if is_storage_fault(exc):
                self.retry_later(run_id, exc)
            else:
                logger.exception("resuming run {} failed", run_id)
        else:
            self._faults.pop(run_id, None)
            self._absent.pop(run_id, None)

    def _left_to_others(self, run_id: str) -> bool:
        """Whether ``run_id``'s workflow was missing here and its backoff has not passed."""
        absent = self._absent.get(run_id)
        return absent is not None and self.loop.time() < absent.until

    async def _leave_to_others(self, run_id: str, exc: WorkflowNotFoundError) -> None:
        """The run's workflow is not registered here: give back the lease this process
        may hold on it (a claim of the timer loop) so a process with the code takes it
        now, and leave it alone for a backoff. One INFO line the first time."""
        absent = self._absent.get(run_id)
        attempts = 1 if absent is None else absent.attempts + 1
        delay = max(self.poll, backoff_delay(attempts))
        entry = _Absent(attempts, self.loop.time() + delay, absent is not None and absent.due)
        self._absent[run_id] = entry
        try:
            await self.storage.release_lease(run_id, self.runtime.owner)
            if absent is not None:
                return
            run = await self.storage.get_run(run_id)
        except Exception as error:  # noqa: BLE001 - the lease expires on its own
            _log_loop_error(f"releasing run {run_id}", error)
            return
        if run is None:
            logger.debug("not resuming {} here: {}", run_id, exc)
        else:
            name = run.workflow_name
            suspended = run.status == RunStatus.SUSPENDED
            entry.due = suspended
            due = suspended and (run.wake_at is None or run.wake_at <= timer_now())
            logger.info(
                "run {} of workflow {!r} {} but {!r} is not registered here; leaving it to "
                "a process that has it",
                run_id,
                name,
                "is due" if due else "needs resuming",
                name,
            )

    def _forget_absent(self) -> None:
        """Drop runs left to others that nobody asked this process about for a while
        (another process took them): the map stays as small as what is left over."""
        grace = 2 * max(BACKOFF_CAP, _RECOVERY_EVERY_POLLS * self.poll)
        now = self.loop.time()
        for run_id in [r for r, a in self._absent.items() if now > a.until + grace]:
            del self._absent[run_id]

    def retry_later(self, run_id: str, exc: BaseException) -> None:
        """Storage failed the run's execution: resume it again after a backoff, from what
        storage holds (as after a crash), keeping its lease meanwhile."""
        attempt = self._faults.get(run_id, 0) + 1
        self._faults[run_id] = attempt
        delay = backoff_delay(attempt)
        logger.warning(
            "storage failed while executing run {} ({}); resuming it in {:.2f}s",
            run_id,
            exc,
            delay,
        )
        self.backing_off.add(run_id)
        self._track(self._resume_after(run_id, delay))

    async def _resume_after(self, run_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        self.backing_off.discard(run_id)
        self.spawn(run_id)

    async def _timer_loop(self) -> None:
        polls = 0
        while True:
            try:
                if polls % _RECOVERY_EVERY_POLLS == 0:
                    await self.recover()
                polls += 1
                await self._pass_cancellations()
                delay = await self._fire_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - storage hiccups must not stop the timers
                _stop_if_cancelled(exc)
                _log_loop_error("timer loop", exc)
                delay = self.poll
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that races with the event being set, and the loop would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _fire_due(self) -> float:
        """Claim due runs and resume them; return seconds until the next check."""
        # Due by the timer clock (see pyworkflow.utils.clock); the claim's lease is
        # real time. (The one `now` a claim takes also judges whether another claim's
        # lease ran out: with the timer clock skipped ahead, in a test, it looks sooner.)
        now = timer_now()
        expires = utcnow() + timedelta(seconds=self.lease_ttl)
        fresh = 0
        claimed, left = await self._claim_due(now, expires)
        for run_id in claimed:
            if self._left_to_others(run_id):
                # Claimed in one batch although left to others (it was not waiting when
                # last seen): give it back now, and list around it from now on.
                self._absent[run_id].due = True
                await self.storage.release_lease(run_id, self.runtime.owner)
                continue
            fresh += run_id not in self.active
            self.spawn(run_id)
        nxt = await self.storage.next_wake_time()
        sched = await self._fire_schedules()
        if sched is not None and (nxt is None or sched < nxt):
            nxt = sched
        self._next_wake = nxt
        if nxt is None:
            return self.poll
        remaining = (nxt - timer_now()).total_seconds()
        if remaining > 0:
            return min(self.poll, remaining)
        if left is not None:
            # Every due run is one this process leaves to others: the earliest stored
            # wake-up is one of theirs, so check again when a backoff ends or after a
            # poll interval (this process's own runs still wake the loop through notify).
            delay = max(0.005, min(self.poll, left - self.loop.time()))
            self._next_wake = timer_now() + timedelta(seconds=delay)
            return delay
        # A due run stays 'suspended' until its resumer's first write (here, or in another
        # process that claimed it); a pause keeps this loop from spinning meanwhile.
        return min(self.poll, 0.005 if fresh else 0.05)

    async def _claim_due(self, now: datetime, expires: datetime) -> tuple[list[str], float | None]:
        """Lease due runs to this process: the ids it got, and, when every due run was
        one left to others (see :meth:`_leave_to_others`), the loop time the first of
        their backoffs ends (else ``None``).

        With no waiting run left to others, one atomic ``claim_due_runs``. Otherwise the due runs
        are listed first and only the others are leased, one by one, so a run left to a
        process with the code is never leased (and so never held from it) during its
        backoff, and the runs behind it are still reached.
        """
        owner = self.runtime.owner
        around = sum(absent.due for absent in self._absent.values())
        if not around:
            return await self.storage.claim_due_runs(now, owner, expires, _CLAIM_BATCH), None
        due = await self.storage.list_due_runs(now, _CLAIM_BATCH + around)
        claimed: list[str] = []
        skipped: list[float] = []
        for run_id in due:
            absent = self._absent.get(run_id)
            if absent is not None and self.loop.time() < absent.until:
                skipped.append(absent.until)
            elif len(claimed) < _CLAIM_BATCH and await self.storage.acquire_lease(
                run_id, owner, expires, now
            ):
                claimed.append(run_id)
        if skipped and len(skipped) == len(due):
            return claimed, min(skipped)
        return claimed, None

    async def _pass_cancellations(self) -> None:
        """Once per poll interval: wake waiting runs asked to cancel since their last
        write (by a process that could not wake them), and hand requests to runs
        executing here (the heartbeat does too, but only every ``lease_ttl / 3``)."""
        now = self.loop.time()
        if now - self._cancels_checked < self.poll:
            return
        self._cancels_checked = now
        for run_id in await cancel_signalled_runs(self.storage):
            if run_id not in self.active:
                self.wake(run_id)
        if self.active:
            for run in await cancel_requested_runs(self.storage, RunStatus.RUNNING):
                if run.run_id in self.active and not deliver_cancel(run.run_id, run.cancel_reason):
                    self.wake(run.run_id)  # it is suspending: resumed, it sees the request

    async def _fire_schedules(self) -> datetime | None:
        """Start the runs of due schedule ticks; return when the next tick is due."""
        if SCHEDULES not in self.storage.capabilities:
            return None  # a third-party backend without schedule storage
        if self._schedules is None:
            storage, runtime = self.storage, self.runtime
            self._schedules = ScheduleService(
                storage,
                start=lambda request: runtime.start_detached(request, storage),
                wake=lambda run_id: runtime.wake(run_id, storage),
            )
            await activate_declared(storage)
        return await self._schedules.tick()

    async def recover(self) -> None:
        """Resume runs whose executing process died (same host) or whose lease expired,
        and runs whose hook payload arrived while nobody could wake them (cancellations:
        :meth:`_pass_cancellations`, every poll)."""
        self._forget_absent()
        await self._recover_runs()
        for run_id in await payload_signalled_runs(self.storage):
            self.wake(run_id)

    async def _recover_runs(self) -> None:
        async for found in runs_to_recover(
            self.storage, utcnow(), self.runtime.owner, lease_ttl=self.lease_ttl
        ):
            # This runtime sends no step messages: a round that lost its messages is
            # recovered here as an attempt (its steps run again inline).
            recovery = found.counts or found.lost_round is not None
            self.spawn(found.run_id, recovery=recovery, steal_from=found.steal_from)

    async def _heartbeat_loop(self) -> None:
        interval = self.lease_ttl / 3
        while True:
            await asyncio.sleep(interval)
            if self.active or self.backing_off:
                try:
                    await self._beat()
                except Exception as exc:  # noqa: BLE001 - retried next beat
                    _stop_if_cancelled(exc)
                    _log_loop_error("lease renewal", exc)

    async def _beat(self) -> None:
        held = list(self.active | self.backing_off)
        await keep_leases(self.storage, held, self.runtime.owner, self.lease_ttl)

    async def stop(self) -> None:
        for task in [*self._loops, *self.tasks]:
            task.cancel()
        await asyncio.gather(*self._loops, *self.tasks, return_exceptions=True)


def _stop_if_cancelled(exc: Exception) -> None:
    """Stop a service loop whose task was cancelled even if the cancellation surfaced as
    another error (a driver that closes its connection when a call is cancelled can
    raise its own error in the cleanup): retrying would keep a stopped service alive."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


def _log_loop_error(what: str, exc: Exception) -> None:
    """A storage outage is expected weather: one line per failed pass, not a traceback."""
    if is_storage_fault(exc):
        logger.warning("{} failed, storage unavailable ({}); retrying", what, exc)
    else:
        logger.failure(exc, "{} failed; retrying", what)


class LocalRuntime(Runtime):
    """Runs workflows in the calling process; see the module docstring."""

    name = "local"

    def __init__(self) -> None:
        self.owner = new_owner_id()
        self._services: dict[int, _Service] = {}
        self._transient: dict[str, WorkflowRun] = {}

    @staticmethod
    def default() -> LocalRuntime:
        """The process-wide local runtime (the one ``start()`` uses)."""
        from pyworkflow.runtime import get_runtime

        runtime = get_runtime("local")
        assert isinstance(runtime, LocalRuntime)
        return runtime

    def service(self, storage: StorageBackend) -> _Service:
        """The service for ``storage`` on the running loop (started on first use)."""
        loop = asyncio.get_running_loop()
        key = id(storage)
        service = self._services.get(key)
        if service is None or service.loop is not loop or service.storage is not storage:
            service = self._services[key] = _Service(self, storage)
        return service

    async def start(self, request: RunRequest, storage: StorageBackend) -> str:
        await connect(storage)
        service = self.service(storage)
        run, started = build_run(request, owner=self.owner, lease_ttl=service.lease_ttl)
        stored = await store_new_run(storage, run, started, request.idempotency_key)
        if stored.run_id != run.run_id:
            return stored.run_id  # another start with the same idempotency key won
        try:
            await service.run(
                run.run_id,
                lambda: execute_new(
                    storage, run, request, on_child_created=service.spawn, log=[started]
                ),
            )
        except Exception as exc:
            if not is_storage_fault(exc):
                raise
            service.retry_later(run.run_id, exc)  # the run is stored: it goes on later
        return run.run_id

    async def start_detached(self, request: RunRequest, storage: StorageBackend) -> str:
        """Create the run 'pending' and execute it in the background on this loop."""
        await connect(storage)
        service = self.service(storage)
        run, started = build_run(request, owner=None, lease_ttl=0)
        stored = await store_new_run(storage, run, started, request.idempotency_key)
        service.spawn(stored.run_id)
        return stored.run_id

    async def start_transient(self, request: RunRequest) -> str:
        run, _ = build_run(request, owner=None, lease_ttl=0)
        run.status = RunStatus.RUNNING
        self._remember(run)
        ctx = TransientContext(run.run_id, run.workflow_name)
        where = f"result of workflow {run.workflow_name!r}"
        try:
            result = await run_transient(
                ctx, request.definition.func, request.args, request.kwargs, run.trace_context
            )
            run.result_payload = dumps(result, where=where)
        except Exception as exc:
            run.status, run.error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
            logger.error("transient run {} failed: {}", run.run_id, run.error)
        else:
            run.status = RunStatus.COMPLETED
        run.completed_at = run.updated_at = utcnow()
        return run.run_id

    def _remember(self, run: WorkflowRun) -> None:
        self._transient[run.run_id] = run
        while len(self._transient) > _TRANSIENT_MEMORY:
            self._transient.pop(next(iter(self._transient)))

    def get_transient_run(self, run_id: str) -> WorkflowRun | None:
        return self._transient.get(run_id)

    async def resume(self, run_id: str, storage: StorageBackend) -> None:
        await storage.connect()
        service = self.service(storage)
        if run_id in service.active:
            raise WorkflowAlreadyRunningError(
                f"run {run_id!r} is already executing in this process"
            )
        await service.run(
            run_id,
            lambda: resume_run(
                storage,
                run_id,
                owner=self.owner,
                lease_ttl=service.lease_ttl,
                raise_if_busy=True,
                on_child_created=service.spawn,
            ),
        )

    async def serve(
        self, storage: StorageBackend | None = None, *, duration: float | None = None
    ) -> None:
        """Serve timers, lease heartbeats and crash recovery for ``storage`` (default: the
        configured one) until cancelled, or for ``duration`` seconds: the loop of a
        long-lived worker process using the local runtime."""
        from pyworkflow.core.config import get_storage

        backend = storage if storage is not None else get_storage()
        await backend.connect()
        self.service(backend)
        await asyncio.sleep(float("inf") if duration is None else duration)

    async def wake(self, run_id: str, storage: StorageBackend) -> None:
        """Resume the run here if this process has its workflow. Otherwise (an operator's
        script without the code) do nothing: what woke it is stored, and a process
        serving the run with the code acts on it (a cancellation within its poll
        interval, a hook payload within a few)."""
        await storage.connect()
        run = await storage.get_run(run_id)
        if run is None or run.status.is_terminal:
            return
        if find_workflow(run.workflow_name) is None:
            logger.debug(
                "run {}: workflow {!r} is not registered in this process; a process "
                "serving it with the code picks up the change",
                run_id,
                run.workflow_name,
            )
            return
        self.service(storage).wake(run_id)

    async def shutdown(self) -> None:
        """Stop the services running on the current loop (timers, heartbeat, resumes)."""
        loop = asyncio.get_running_loop()
        for key, service in list(self._services.items()):
            if service.loop is loop:
                del self._services[key]
                await service.stop()
