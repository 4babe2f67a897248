"""The local runtime: workflows and steps run in this process on asyncio.

Steps run inline, so a run that never suspends is never replayed. For each storage it
serves, the runtime keeps one small service on the running event loop:

* a **timer loop** that sleeps until the earliest stored wake-up time (woken early when
  a run of this process suspends sooner), claims due runs through their lease and
  resumes them;
* a **heartbeat** renewing the leases of runs executing here;
* **recovery**: when the service starts (and every few poll intervals) it resumes runs
  whose process died mid-execution: same-host owners that no longer exist, or leases
  that expired.

The service lives as long as its event loop; a synchronous ``start()`` stops it again
before returning.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from loguru import logger

from pyworkflow.core.config import get_config
from pyworkflow.core.exceptions import (
    RunNotFoundError,
    WorkflowAlreadyRunningError,
    WorkflowNotFoundError,
)
from pyworkflow.engine.context import deliver_cancel
from pyworkflow.engine.executor import Outcome
from pyworkflow.engine.log import is_storage_fault
from pyworkflow.engine.recovery import backoff_delay, runs_to_recover, signalled_suspended_runs
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

_RECOVERY_EVERY_POLLS = 5
_TRANSIENT_MEMORY = 1000


class _Service:
    """Timers, heartbeat and recovery for one storage on one event loop."""

    def __init__(self, runtime: LocalRuntime, storage: StorageBackend) -> None:
        self.runtime = runtime
        self.storage = storage
        self.loop = asyncio.get_running_loop()
        self.active: set[str] = set()
        # Runs whose execution storage failed, waiting to be resumed again (their lease
        # stays ours meanwhile), and how many times in a row that happened to each.
        self.backing_off: set[str] = set()
        self._faults: dict[str, int] = {}
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
        if outcome is not None and outcome.wake_at is not None:
            self.notify(outcome.wake_at)
        if outcome is not None and outcome.next_run_id is not None:
            self.spawn(outcome.next_run_id)  # the continuation runs on in the background
        if outcome is not None and outcome.parent_run_id is not None:
            self.wake(outcome.parent_run_id)  # a child ended: its parent may be waiting
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
            return
        self.active.add(run_id)  # reserve before the task starts: no double spawn
        self._track(self._resume(run_id, recovery, steal_from))

    def wake(self, run_id: str) -> None:
        """Resume ``run_id`` now even if its timer is not due (what it waits for happened)."""
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
            logger.debug("not resuming {} here: {}", run_id, exc)
        except Exception as exc:  # noqa: BLE001 - a background resume must not kill the service
            if is_storage_fault(exc):
                self.retry_later(run_id, exc)
            else:
                logger.exception("resuming run {} failed", run_id)
        else:
            self._faults.pop(run_id, None)

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
                delay = await self._fire_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - storage hiccups must not stop the timers
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
        now = utcnow()
        expires = now + timedelta(seconds=self.lease_ttl)
        fresh = 0
        for run_id in await self.storage.claim_due_runs(now, self.runtime.owner, expires):
            fresh += run_id not in self.active
            self.spawn(run_id)
        nxt = await self.storage.next_wake_time()
        sched = await self._fire_schedules()
        if sched is not None and (nxt is None or sched < nxt):
            nxt = sched
        self._next_wake = nxt
        if nxt is None:
            return self.poll
        remaining = (nxt - utcnow()).total_seconds()
        if remaining > 0:
            return min(self.poll, remaining)
        # A due run stays 'suspended' until its resumer's first write (here, or in another
        # process that claimed it); a pause keeps this loop from spinning meanwhile.
        return min(self.poll, 0.005 if fresh else 0.05)

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
        and runs whose hook payload arrived while nobody could wake them."""
        await self._recover_runs()
        for run_id in await signalled_suspended_runs(self.storage):
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
                    _log_loop_error("lease renewal", exc)

    async def _beat(self) -> None:
        held = list(self.active | self.backing_off)
        await keep_leases(self.storage, held, self.runtime.owner, self.lease_ttl)

    async def stop(self) -> None:
        for task in [*self._loops, *self.tasks]:
            task.cancel()
        await asyncio.gather(*self._loops, *self.tasks, return_exceptions=True)


def _log_loop_error(what: str, exc: Exception) -> None:
    """A storage outage is expected weather: one line per failed pass, not a traceback."""
    if is_storage_fault(exc):
        logger.warning("{} failed, storage unavailable ({}); retrying", what, exc)
    else:
        logger.opt(exception=exc).error("{} failed; retrying", what)


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
            result = await run_transient(ctx, request.definition.func, request.args, request.kwargs)
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
        await storage.connect()
        self.service(storage).wake(run_id)

    async def shutdown(self) -> None:
        """Stop the services running on the current loop (timers, heartbeat, resumes)."""
        loop = asyncio.get_running_loop()
        for key, service in list(self._services.items()):
            if service.loop is loop:
                del self._services[key]
                await service.stop()
