"""Crash a workflow at every point its engine writes, and check it still ends the same.

:func:`check_crash_points` runs the workflow once, uninterrupted, counting the writes of
its history (each commit: the run's creation, each append of events). Then, for each
write ``k``, it runs the workflow again in a fresh engine and stops that engine right
after write ``k`` (write ``k + 1`` never lands, as when the process dies: nothing it
held in memory survives), resumes the run in another fresh engine over the same storage
(as a restarted worker would: the run is recovered once its lease runs out) and checks:

* the run completes, with the same result as the uninterrupted run;
* every step's completion is recorded once in every run of the family (children too).

How often each step body ran is reported per crash point: a body whose completion was
not committed when the engine stopped runs again (at-least-once), which is legitimate
for idempotent steps; ``check`` lets the test assert on its own side-effect counters.
Sleeps and retry delays pass at once (time skipping, :mod:`.environment`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyworkflow.observability import lifecycle
from pyworkflow.runtime import get_runtime, register_runtime
from pyworkflow.runtime.local import LocalRuntime
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.memory import InMemoryStorageBackend
from pyworkflow.storage.schemas import EventType, RunStatus
from pyworkflow.testing.environment import WorkflowEnvironment

# Recovery waits for the dead engine's lease to run out (real time): keep it short.
LEASE_TTL = 0.2
_WRITES = ("create_run", "append_events")

Drive = Callable[[WorkflowEnvironment, str], Awaitable[Any]]
Hook = Callable[..., Any]


class EngineCrashed(BaseException):  # noqa: N818 - a simulated process death
    """The engine "died" here (a ``BaseException``: no workflow or engine code catches it)."""


@dataclass(frozen=True, slots=True)
class CrashPoint:
    """One interrupted run: stopped after write ``after_write``, then resumed."""

    after_write: int
    write: str  # what write ``after_write`` was (e.g. "append step.completed, ...")
    executions: Counter[str]  # step name -> live attempts, across both engines
    result: Any = None


@dataclass(slots=True)
class CrashPointsReport:
    """What :func:`check_crash_points` found (it raises before returning a failure)."""

    result: Any
    writes: list[str]  # the uninterrupted run's writes, in order
    executions: Counter[str]  # the uninterrupted run's live step attempts
    points: list[CrashPoint] = field(default_factory=list)

    def reran(self) -> dict[int, list[str]]:
        """``{crash point: steps whose body ran more often than uninterrupted}``."""
        return {
            point.after_write: sorted(
                name for name, n in point.executions.items() if n > self.executions[name]
            )
            for point in self.points
            if any(n > self.executions[name] for name, n in point.executions.items())
        }


class CrashPointError(AssertionError):
    """A crash point after which the workflow did not end as it does uninterrupted."""


async def check_crash_points(
    workflow: Any,
    *args: Any,
    drive: Drive | None = None,
    reset: Hook | None = None,
    check: Hook | None = None,
    points: Sequence[int] | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 - real seconds per run, a public option
    **kwargs: Any,
) -> CrashPointsReport:
    """Run ``workflow(*args, **kwargs)`` uninterrupted, then crashed after each write.

    Args:
        drive: ``await drive(env, run_id)`` does what the outside world does for the run
            (deliver a hook, cancel it); called whenever every run waits, before time
            is skipped, so also before the run waits for it and again after a crash: it
            must tolerate that (a hook not created yet, or already delivered, is
            refused: ignore that).
        reset: called before every run (reset your side-effect counters).
        check: called as ``check(point)`` after each resumed run completed
            (``point`` the :class:`CrashPoint`; ``None`` after the uninterrupted run):
            assert on your own counters there.
        points: only these crash points (write numbers); default: every write but the
            last (after the last write the run has ended).
        timeout: real seconds each run may take.

    Raises:
        CrashPointError: after some crash point the run did not complete, its result
            differs, or a step's completion was recorded more than once (the message
            names the point and what happened).
    """
    counted = _Writes()
    executions = Counter[str]()
    await _call(reset)
    async with _Engine(executions, counted) as env:
        run_id = await env.start(workflow, *args, **kwargs)
        result = await _finish(env, run_id, drive, timeout)
        await _check_completions(env.storage, run_id, "the uninterrupted run")
    await _call(check, None)
    report = CrashPointsReport(result=result, writes=counted.log, executions=executions)
    chosen = range(1, len(counted.log)) if points is None else points
    for k in chosen:
        report.points.append(
            await _crash_after(k, counted.log, workflow, args, kwargs, drive, reset, timeout)
        )
        point = report.points[-1]
        if point.result != result:
            raise CrashPointError(
                f"crash after write {k} ({point.write}): the run completed with "
                f"{point.result!r}, uninterrupted it completes with {result!r} "
                f"(step bodies run: {dict(point.executions)}, uninterrupted: "
                f"{dict(executions)})"
            )
        await _call(check, point)
    return report


async def _crash_after(
    k: int,
    writes: list[str],
    workflow: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    drive: Drive | None,
    reset: Hook | None,
    limit: float,
) -> CrashPoint:
    where = f"crash after write {k} ({writes[k - 1]})"
    await _call(reset)
    executions = Counter[str]()
    storage = InMemoryStorageBackend()
    crash = _Writes(crash_after=k)
    run_id: str | None = None
    async with _Engine(executions, crash, storage=storage) as env:
        try:
            run_id = await env.start(workflow, *args, **kwargs)
            turn = _turn(env, run_id, drive)
            async with asyncio.timeout(limit):
                while not crash.crashed:  # (the crash may come in a background resume)
                    if await env.wait(run_id, timeout=env.poll * 5, quiet=True, on_idle=turn):
                        break  # ended before the crash point: reported below
        except EngineCrashed:
            pass
        if not crash.crashed:
            raise CrashPointError(f"{where}: the run ended before write {k + 1}")
    run_id = run_id or await _only_run(storage)
    async with _Engine(executions, None, storage=storage) as env:  # a restarted process
        try:
            result = await _finish(env, run_id, drive, limit)
        except TimeoutError:
            raise CrashPointError(f"{where}: the run did not end within {limit}s") from None
        except _NotCompleted as exc:
            raise CrashPointError(f"{where}: {exc}") from None
        await _check_completions(storage, run_id, where)
    await storage.close()
    return CrashPoint(k, writes[k - 1], executions, result)


class _NotCompleted(Exception):
    pass


async def _finish(env: WorkflowEnvironment, run_id: str, drive: Drive | None, limit: float) -> Any:
    run = await env.wait(run_id, timeout=limit, on_idle=_turn(env, run_id, drive))
    assert run is not None
    if run.status is not RunStatus.COMPLETED:
        raise _NotCompleted(f"run {run_id} ended {run.status.value}: {run.error}")
    return run.result


def _turn(
    env: WorkflowEnvironment, run_id: str, drive: Drive | None
) -> Callable[[], Awaitable[Any]] | None:
    if drive is None:
        return None

    async def outside_world() -> None:
        await drive(env, run_id)

    return outside_world


async def _only_run(storage: StorageBackend) -> str:
    runs = await storage.list_runs(limit=10)
    roots = [r for r in runs if r.parent_run_id is None and r.continued_from_run_id is None]
    if len(roots) != 1:
        raise CrashPointError(f"expected the one run the crash left, found {len(roots)}")
    return roots[0].run_id


async def _check_completions(storage: StorageBackend, run_id: str, where: str) -> None:
    """Every step of the run's family (children, continuations) completed at most once."""
    pending, seen = [run_id], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        events = await storage.get_events(current)
        done = Counter(
            str(e.data.get("step_id")) for e in events if e.type is EventType.STEP_COMPLETED
        )
        twice = sorted(step for step, n in done.items() if n > 1)
        if twice:
            raise CrashPointError(f"{where}: run {current} recorded {twice} completed twice")
        pending += [c.run_id for c in await storage.get_children(current)]
        run = await storage.get_run(current)
        if run is not None and run.continued_to_run_id:
            pending.append(run.continued_to_run_id)


async def _call(hook: Hook | None, *args: Any) -> None:
    if hook is not None:
        outcome = hook(*args)
        if inspect.isawaitable(outcome):
            await outcome


class _Writes:
    """Counts the history writes of one storage (and, with ``crash_after``, lets that
    many land, then "kills the engine": the next write and every call after it raise
    :class:`EngineCrashed`)."""

    def __init__(self, crash_after: int | None = None) -> None:
        self.crash_after = crash_after
        self.log: list[str] = []
        self.crashed = False
        self._storage: StorageBackend | None = None
        self._wrapped: list[str] = []

    def install(self, storage: StorageBackend) -> None:
        self._storage = storage
        self._wrapped = [
            name
            for name in dir(StorageBackend)
            if not name.startswith("_")
            and name not in ("connect", "close")
            and inspect.iscoroutinefunction(getattr(StorageBackend, name))
        ]
        for name in self._wrapped:
            setattr(storage, name, self._wrap(name, getattr(storage, name)))

    def remove(self) -> None:
        if self._storage is not None:
            for name in self._wrapped:
                delattr(self._storage, name)  # (the instance attribute shadowed the method)
            self._storage = None

    def _wrap(self, name: str, method: Callable[..., Awaitable[Any]]) -> Any:
        counted = name in _WRITES

        async def call(*args: Any, **kwargs: Any) -> Any:
            # A dead process does nothing more: no write lands, and no read lets a resume
            # run a step body again in the engine that "died".
            if self.crashed or (
                counted and self.crash_after is not None and len(self.log) >= self.crash_after
            ):
                self.crashed = True
                raise EngineCrashed(f"the engine stopped after write {self.crash_after}")
            outcome = await method(*args, **kwargs)
            if counted:
                self.log.append(_describe(name, args, kwargs))
            return outcome

        return call


def _describe(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    events = kwargs.get("events", args[1] if len(args) > 1 else ())
    kinds = ", ".join(
        f"{e.type.value} {e.data.get('step_id') or e.data.get('sleep_id') or ''}".strip()
        for e in events or ()
    )
    verb = "create run" if name == "create_run" else "append"
    return f"{verb}: {kinds}" if kinds else verb


class _Attempts(lifecycle.Observer):
    def __init__(self, executions: Counter[str]) -> None:
        self.executions = executions

    def step_attempt(self, attempt: lifecycle.StepAttempt) -> None:
        self.executions[attempt.step_name] += 1


class _Engine:
    """A fresh engine (its own local runtime) over ``storage``, time skipping, short
    leases; counting live step attempts, and writes through ``writes``."""

    def __init__(
        self,
        executions: Counter[str],
        writes: _Writes | None,
        *,
        storage: StorageBackend | None = None,
    ) -> None:
        self.env = WorkflowEnvironment(storage=storage, time_skipping=True, lease_ttl=LEASE_TTL)
        self.observer = _Attempts(executions)
        self.writes = writes
        self.previous = get_runtime("local")

    async def __aenter__(self) -> WorkflowEnvironment:
        register_runtime("local", LocalRuntime())  # a new process: nothing in memory
        lifecycle.add_observer(self.observer)
        if self.writes is not None:
            self.writes.install(self.env.storage)
        return await self.env.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.env.__aexit__(None, None, None)  # stops this engine's services
        finally:
            if self.writes is not None:
                self.writes.remove()
            lifecycle.remove_observer(self.observer)
            register_runtime("local", self.previous)
