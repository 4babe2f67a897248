"""A fresh embedded engine per test, with a timer clock the test controls.

    async with WorkflowEnvironment(time_skipping=True) as env:
        run_id = await env.start(drip_campaign, "ada@example.com")   # sleeps 30 days
        assert await env.result(run_id) == "sent 4 emails"            # in milliseconds

* Storage of its own (in memory unless given), the local runtime, fast polling.
* :meth:`WorkflowEnvironment.advance` moves the timer clock ahead and returns once the
  runs that came due have run as far as they can.
* ``time_skipping=True``: whenever every unfinished run waits for a timer (none is
  running), :meth:`WorkflowEnvironment.result` jumps the clock to the earliest one, so
  sleeps and retry delays of any length pass at once, in order, deterministically.

Only timers move (sleeps, retry delays, hook timeouts, ``max_duration``; see
:mod:`pyworkflow.utils.clock`): leases and heartbeats keep real time, so skipping never
makes a run look crashed. One environment at a time per process (the clock is global).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from pyworkflow.api import start, wait_for_run
from pyworkflow.core.config import configure, reset_config
from pyworkflow.core.exceptions import WorkflowError
from pyworkflow.runtime import get_runtime
from pyworkflow.runtime.local import LocalRuntime
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.schemas import RunStatus, WorkflowRun
from pyworkflow.utils import clock
from pyworkflow.utils.duration import parse_duration

_UNFINISHED = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUSPENDED)
_active: WorkflowEnvironment | None = None


class WorkflowEnvironment:
    """See the module docstring.

    Args:
        storage: the backend runs are stored in (default: a new in-memory one); the
            environment's own, so "every run" means this test's runs.
        time_skipping: jump the timer clock whenever every run waits for a timer.
        poll: how often (real seconds) the local runtime checks for due runs and the
            environment checks whether runs are still moving.
        lease_ttl: the runs' lease time (real seconds; default: the configured one). A
            short one lets a run whose engine "crashed" be recovered quickly.
    """

    def __init__(
        self,
        *,
        storage: StorageBackend | None = None,
        time_skipping: bool = False,
        poll: float = 0.01,
        lease_ttl: float | None = None,
    ) -> None:
        self.storage = storage if storage is not None else InMemoryStorageBackend()
        self._owns_storage = storage is None  # (a given one is closed by its owner)
        self.time_skipping = time_skipping
        self.poll = poll
        self.lease_ttl = lease_ttl
        self._entered = False

    async def __aenter__(self) -> WorkflowEnvironment:
        global _active
        if _active is not None:
            raise RuntimeError("another WorkflowEnvironment is active in this process")
        _active = self
        reset_config()
        options: dict[str, Any] = {"lease_ttl": self.lease_ttl} if self.lease_ttl else {}
        configure(
            storage=self.storage, default_runtime="local", timer_poll_interval=self.poll, **options
        )
        await self.storage.connect()
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _active
        try:
            await get_runtime("local").shutdown()
            if self._owns_storage:
                await self.storage.close()
        finally:
            clock.reset()
            reset_config()
            self._entered = False
            _active = None

    # -- the clock ---------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The timer clock's time (the wall clock plus what was skipped)."""
        return clock.timer_now()

    @property
    def skipped(self) -> timedelta:
        """How much time was skipped so far."""
        return clock.skew()

    async def advance(self, duration: str | int | float | timedelta) -> None:
        """Let ``duration`` pass (``"30d"``, seconds, a ``timedelta``) and return once
        the runs that came due have run until they wait again or end.

        Time passes as it would: each wake-up time on the way is reached in turn and
        its run goes on from there (a run sleeping 3 days and then 11 days is woken at
        day 3 and at day 14 of a 20-day advance), not all at the end."""
        self._require_entered()
        target = clock.timer_now() + parse_duration(duration)
        await self._settle()
        while True:
            nxt = await self.storage.next_wake_time()
            stop = target if nxt is None or nxt > target else nxt
            now = clock.timer_now()
            if stop > now:
                clock.skip_ahead(stop - now)
            await self._settle()
            if stop >= target:
                return

    # -- runs ------------------------------------------------------------------------------

    async def start(self, workflow: Any, *args: Any, **kwargs: Any) -> str:
        """``pyworkflow.start`` on this environment's storage and the local runtime."""
        self._require_entered()
        run_id: str = await start(workflow, *args, storage=self.storage, runtime="local", **kwargs)
        return run_id

    async def wait(
        self,
        run_id: str,
        *,
        timeout: float = 30.0,  # noqa: ASYNC109 - real seconds, as wait_for_run's
        quiet: bool = False,
        on_idle: Callable[[], Awaitable[Any]] | None = None,
    ) -> WorkflowRun | None:
        """Wait until ``run_id`` ends (skipping time if enabled; ``timeout`` is real
        seconds) and return its record, whatever its status (``quiet``: return ``None``
        when the timeout passes instead of raising ``TimeoutError``). ``on_idle`` is
        awaited whenever every run waits, before time is skipped: the outside world's
        turn (deliver a hook); if that set a run moving, no time is skipped."""
        self._require_entered()
        try:
            if not self.time_skipping:
                return await wait_for_run(run_id, timeout=timeout, storage=self.storage)
            async with asyncio.timeout(timeout):
                while True:
                    run = await self.storage.get_run(run_id)
                    if run is not None and run.status.is_terminal:
                        return run
                    await self._skip_if_idle(on_idle)
                    await asyncio.sleep(self.poll)
        except TimeoutError:
            if quiet:
                return None
            raise

    async def result(self, run_id: str, *, timeout: float = 30.0) -> Any:  # noqa: ASYNC109
        """The result of ``run_id`` once it completes (see :meth:`wait`).

        Raises:
            WorkflowError: the run ended otherwise (failed, cancelled, continued as new:
                the message says how).
        """
        run = await self.wait(run_id, timeout=timeout)
        assert run is not None  # (not quiet: a timeout raised)
        if run.status is not RunStatus.COMPLETED:
            raise WorkflowError(f"run {run_id} ended {run.status.value}: {run.error}")
        return run.result

    # -- internals ---------------------------------------------------------------------------

    def _require_entered(self) -> None:
        if not self._entered:
            raise RuntimeError("use the environment inside 'async with WorkflowEnvironment()'")

    def _service(self) -> Any:
        runtime = get_runtime("local")
        assert isinstance(runtime, LocalRuntime)
        return runtime.service(self.storage)

    async def _moving(self) -> bool:
        """Whether any run is being executed or is due now (not merely waiting)."""
        service = self._service()
        if service.active or service.backing_off:
            return True
        for status in (RunStatus.PENDING, RunStatus.RUNNING):
            if await self.storage.list_runs(status=status, limit=1):
                return True
        return bool(await self.storage.list_due_runs(clock.timer_now(), limit=1))

    async def _settle(self, limit: float = 30.0) -> None:
        """Wake the timer loop and wait until no run is moving.

        Raises:
            TimeoutError: runs still move after ``limit`` real seconds (a step that
                blocks, or a due run whose workflow is not registered in this process).
        """
        service = self._service()
        service.notify(clock.timer_now())
        quiet = 0
        async with asyncio.timeout(limit):
            while quiet < 3:  # a few quiet polls in a row: a resume may just be starting
                await asyncio.sleep(self.poll)
                quiet = 0 if await self._moving() else quiet + 1

    async def _skip_if_idle(self, on_idle: Callable[[], Awaitable[Any]] | None = None) -> None:
        """Every unfinished run waits: jump to the earliest stored wake-up time."""
        if await self._moving():
            return
        if on_idle is not None:
            await on_idle()
            await self._settle()
            if await self._moving():
                return
        nxt = await self._next_timer()
        now = clock.timer_now()
        if nxt is not None and nxt > now:
            clock.skip_ahead(nxt - now)
        if nxt is not None:
            await self._settle()

    async def _next_timer(self) -> datetime | None:
        """The earliest wake-up time a run really waits for. A parent waiting for its
        child also has a wake-up time (a poll, in case the child's end is not told), which
        would make skipping crawl in 30-second steps while the child sleeps for days: it
        is passed over unless nothing else waits."""
        polls: list[datetime] = []
        timers: list[datetime] = []
        for run in await self.storage.list_runs(status=RunStatus.SUSPENDED, limit=1000):
            if run.wake_at is None:
                continue
            last = await self.storage.get_events(run.run_id, after_sequence=run.last_sequence - 1)
            reason = last[-1].data.get("reason", "") if last else ""
            (polls if str(reason).startswith("waiting for child") else timers).append(run.wake_at)
        if timers:
            return min(timers)
        return min(polls) if polls else None
