"""Replay stored histories against the code importable now, executing nothing and writing
nothing: whether a deploy would break runs in flight (``pyworkflow verify``,
:func:`pyworkflow.testing.verify_histories`, golden histories in a test suite).

A run replays in a :class:`~pyworkflow.engine.context.RunContext` whose options say
``replay_only``: recorded operations return their recorded outcomes as in any replay,
and the first thing the live run would do (an operation past the end of the history, a
step attempt the history does not settle) stops the replay instead, as does any storage
call. The code "replays" when every recorded operation was asked for, in order, with the
same operation id; the first mismatch is the run's :class:`Divergence`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

from pyworkflow.context.base import reset_context, set_context
from pyworkflow.context.step_context import restore_step_context
from pyworkflow.core.config import get_config
from pyworkflow.core.exceptions import (
    CancellationError,
    ContinueAsNewSignal,
    NonDeterminismError,
    SuspensionSignal,
)
from pyworkflow.core.registry import find_workflow
from pyworkflow.engine.context import ReplayMismatch, ReplayStop, RunContext, RunOptions
from pyworkflow.engine.log import EventLimits
from pyworkflow.engine.replay import History
from pyworkflow.storage.base import OPTIONAL_GROUPS, StorageBackend, run_cursor
from pyworkflow.storage.schemas import Event, RunStatus, WorkflowRun

#: The statuses verified by default: runs a deploy can still break.
UNFINISHED = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUSPENDED)


@dataclass(frozen=True, slots=True)
class Divergence:
    """Where the code stopped matching the history.

    Attributes:
        position: index of the operation in the run's order (0: the first).
        sequence: the event sequence where the recorded operation started (``None``
            when the history had no more operations there).
        recorded: the operation id the history holds there (``None``: none; the code
            asked for more than the run did at that point, which only ``strict`` flags).
        requested: the operation id the code asked for (``None``: the code returned or
            raised instead).
        message: the whole story in one line.
    """

    position: int
    sequence: int | None
    recorded: str | None
    requested: str | None
    message: str


@dataclass(frozen=True, slots=True)
class RunVerdict:
    """How one run's history replayed."""

    run_id: str
    workflow_name: str
    status: str
    operations: int  # recorded operations in the history
    divergence: Divergence | None = None
    error: str | None = None  # could not replay at all (code missing, unreadable input)
    # Patches whose old path this run took (it was recorded before the patch existed).
    old_paths: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.divergence is None and self.error is None

    @property
    def problem(self) -> str | None:
        """What is wrong, in one line (``None`` when the run replays)."""
        if self.error is not None:
            return self.error
        return self.divergence.message if self.divergence is not None else None


@dataclass(slots=True)
class VerifyReport:
    """Every run verified, in the order they were read."""

    verdicts: list[RunVerdict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)

    @property
    def failed(self) -> list[RunVerdict]:
        return [v for v in self.verdicts if not v.ok]

    def by_workflow(self) -> dict[str, tuple[int, int]]:
        """``{workflow: (runs, failed)}``, sorted by name."""
        counts: dict[str, list[int]] = {}
        for verdict in self.verdicts:
            entry = counts.setdefault(verdict.workflow_name, [0, 0])
            entry[0] += 1
            entry[1] += 0 if verdict.ok else 1
        return {name: (n, bad) for name, (n, bad) in sorted(counts.items())}

    def old_paths(self) -> dict[str, int]:
        """``{patch_id: runs}``: unfinished runs that still take a patch's old path (a
        patch can be retired once no run does)."""
        counts: dict[str, int] = {}
        for verdict in self.verdicts:
            for patch in verdict.old_paths:
                counts[patch] = counts.get(patch, 0) + 1
        return dict(sorted(counts.items()))


class _NoStorage:
    """What a replaying context gets for storage: any use means the live run would act
    here (poll a child, read a hook...), so the replay stops. It claims every capability:
    an operation's capability check comes before its recorded outcome is replayed."""

    capabilities = frozenset(OPTIONAL_GROUPS) | {"persistent", "cross_process"}

    def __getattr__(self, name: str) -> NoReturn:
        raise ReplayStop(f"storage.{name}")


async def replay_run(
    run: WorkflowRun, events: Sequence[Event], *, strict: bool = False
) -> RunVerdict:
    """Replay ``run``'s ``events`` with the workflow code registered in this process.

    ``strict`` also flags a changed sleep duration (or target time) of a recorded sleep.
    Never raises for what the code does; the verdict says it.
    """

    def verdict(operations: int = 0, **found: Any) -> RunVerdict:
        return RunVerdict(run.run_id, run.workflow_name, run.status.value, operations, **found)

    definition = find_workflow(run.workflow_name)
    if definition is None:
        return verdict(
            error=f"workflow {run.workflow_name!r} is not in the code (is its module imported?)"
        )
    try:
        history = History.from_events(run.run_id, events)
        args, kwargs = run.input_args, run.input_kwargs
    except Exception as exc:  # noqa: BLE001 - an unreadable history is this run's verdict
        return verdict(error=f"its history cannot be read: {exc}")
    recorded = list(history.op_order)
    ctx = replay_context(run, history, definition, strict=strict)
    divergence = await _replay(ctx, definition.func, args, kwargs, run, recorded)
    return verdict(len(recorded), divergence=divergence, old_paths=tuple(sorted(ctx.old_paths)))


def replay_context(
    run: WorkflowRun, history: History, definition: Any, *, strict: bool = False
) -> RunContext:
    """A context that replays ``history`` for ``run`` with ``definition``'s code and does
    nothing live: the first live action (or storage call) raises :class:`ReplayStop`."""
    cfg = get_config()
    options = RunOptions(
        # Nothing is written: a history over the soft limit replays like any other.
        limits=EventLimits(cfg.event_hard_limit, cfg.event_hard_limit, cfg.event_hard_limit),
        context_class=definition.context_class,
        nesting_depth=run.nesting_depth,
        max_nesting_depth=cfg.max_nesting_depth,
        replay_only=True,
        strict=strict,
    )
    ctx = RunContext(
        run_id=run.run_id,
        workflow_name=run.workflow_name,
        history=history,
        storage=_NoStorage(),  # type: ignore[arg-type]
        options=options,
    )
    if run.cancel_requested_at is not None:
        ctx.request_cancel(run.cancel_reason)
    return ctx


async def run_body(
    ctx: RunContext, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Run the workflow function under ``ctx`` (in a task of its own, as executions do)."""

    return await body_task(ctx, func, args, kwargs)


def body_task(
    ctx: RunContext, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> asyncio.Future[Any]:
    """The workflow function running under ``ctx``, as a task of its own."""

    async def body() -> Any:
        token = set_context(ctx)
        restore_step_context(None)
        try:
            return await func(*args, **kwargs)
        finally:
            reset_context(token)

    return asyncio.ensure_future(body())


async def _replay(
    ctx: RunContext,
    func: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    run: WorkflowRun,
    recorded: list[str],
) -> Divergence | None:
    task = body_task(ctx, func, args, kwargs)
    raised: BaseException | None = None
    try:
        await task
    except (ReplayStop, SuspensionSignal, ContinueAsNewSignal):
        pass  # the code reached the end of what the history settles
    except ReplayMismatch as mismatch:
        return Divergence(
            position=mismatch.position,
            sequence=ctx.history.sequence_at(mismatch.position),
            recorded=mismatch.op_id,
            requested=mismatch.op_id,
            message=f"operation {mismatch.position}: {mismatch}",
        )
    except asyncio.CancelledError:
        task.cancel()
        raise
    except BaseException as exc:  # noqa: BLE001 - what the code raised is the verdict
        raised = exc
    fatal = ctx.fatal  # (wins over what workflow code turned it into)
    if isinstance(fatal, NonDeterminismError):
        return _mismatch(ctx, fatal)
    if isinstance(raised, NonDeterminismError):
        return _mismatch(ctx, raised)
    position = ctx.position
    if raised is not None:
        if run.status is RunStatus.FAILED or (
            isinstance(raised, CancellationError) and ctx.cancel_delivered
        ):
            return None  # the recorded run ended this way too
        return Divergence(
            position=position,
            sequence=ctx.history.sequence_at(position),
            recorded=ctx.unconsumed_operation,
            requested=None,
            message=(
                f"the code raised {type(raised).__name__}: {raised} at operation {position}"
                + _after(recorded, position)
            ),
        )
    missing = ctx.unconsumed_operation
    if task.done() and not task.cancelled() and task.exception() is None and missing:
        return Divergence(
            position=position,
            sequence=ctx.history.sequence_at(position),
            recorded=missing,
            requested=None,
            message=(
                f"the code returned, but the history goes on with {missing} "
                f"(operation {position}, event sequence {ctx.history.sequence_at(position)})"
            ),
        )
    return None


def _after(recorded: list[str], position: int) -> str:
    return f" (after {recorded[position - 1]})" if 0 < position <= len(recorded) else ""


def _mismatch(ctx: RunContext, err: NonDeterminismError) -> Divergence:
    position, recorded, requested = err.position, err.expected, err.found
    sequence = ctx.history.sequence_at(position)
    return Divergence(
        position=position,
        sequence=sequence,
        recorded=recorded,
        requested=requested,
        message=(
            f"operation {position}: the history has {recorded} (event sequence {sequence}), "
            f"the code asks for {requested}"
        ),
    )


async def runs_to_verify(
    storage: StorageBackend,
    *,
    statuses: Iterable[RunStatus] = UNFINISHED,
    workflow: str | None = None,
    since: datetime | None = None,
    run_ids: Sequence[str] = (),
    sample: int | None = None,
    page_size: int = 500,
) -> list[WorkflowRun]:
    """The runs to verify: ``run_ids`` if given, else every run with one of ``statuses``
    (of ``workflow``, created at or after ``since``); ``sample``: at most that many,
    picked at random (uniformly, however many match)."""
    if run_ids:
        runs = await storage.get_runs(list(run_ids))
        found = {r.run_id for r in runs}
        missing = [r for r in run_ids if r not in found]
        if missing:
            raise LookupError(f"no run {missing[0]!r} in this storage")
        return runs
    picked: list[WorkflowRun] = []
    seen = 0
    rng = random.Random()  # noqa: S311 - sampling, not security
    async for run in _matching(storage, statuses, workflow, since, page_size):
        seen += 1
        if sample is None or len(picked) < sample:
            picked.append(run)
        else:  # reservoir sampling: each run kept with probability sample/seen
            slot = rng.randrange(seen)
            if slot < sample:
                picked[slot] = run
    return picked


async def _matching(
    storage: StorageBackend,
    statuses: Iterable[RunStatus],
    workflow: str | None,
    since: datetime | None,
    page_size: int,
) -> AsyncIterator[WorkflowRun]:
    for status in statuses:
        cursor = None
        while True:
            page = await storage.list_runs(
                status=status,
                workflow_name=workflow,
                created_after=since,
                limit=page_size,
                cursor=cursor,
            )
            for run in page:
                yield run
            if len(page) < page_size:
                break
            cursor = run_cursor(page[-1])


async def verify_runs(
    storage: StorageBackend, runs: Iterable[WorkflowRun], *, strict: bool = False
) -> VerifyReport:
    """Replay each of ``runs`` (its events read from ``storage``, nothing written)."""
    report = VerifyReport()
    for run in runs:
        events = await storage.get_events(run.run_id)
        report.verdicts.append(await replay_run(run, events, strict=strict))
    return report
