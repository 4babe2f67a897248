"""``pyworkflow schedules create|list|show|pause|resume|trigger|update|delete|backfill``:
the schedules API (``pyworkflow.schedules``) from the shell.

Creating, listing and changing schedules needs no workflow code (a schedule stores the
workflow's name). ``trigger`` and ``backfill`` start runs now: under the local runtime
they execute in this process, so they need the code (``--module``) and the command waits
until those runs completed or suspended; under Celery they are enqueued.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import click

from pyworkflow.cli import CliContext, pass_cli
from pyworkflow.cli.arguments import argument_options, workflow_arguments
from pyworkflow.cli.output import emit_list, emit_one
from pyworkflow.core.config import discover_workflows, get_config
from pyworkflow.core.exceptions import ScheduleNotFoundError
from pyworkflow.core.registry import get_workflow
from pyworkflow.schedules import (
    OverlapPolicy,
    Schedule,
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
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import RunStatus
from pyworkflow.utils.duration import duration_seconds, parse_duration

_POLICIES = [p.value for p in OverlapPolicy]
_LIST_COLUMNS = (
    "schedule_id",
    "workflow_name",
    "spec",
    "status",
    "overlap_policy",
    "next_run_time",
    "last_run_id",
)


@click.group("schedules")
def schedules() -> None:
    """Create, inspect, change and fire schedules."""


def _row(schedule: Schedule) -> dict[str, Any]:
    return {
        "schedule_id": schedule.schedule_id,
        "workflow_name": schedule.workflow_name,
        "spec": schedule.spec.describe(),
        "status": schedule.status,
        "overlap_policy": schedule.overlap_policy,
        "next_run_time": schedule.next_run_time,
        "last_run_id": schedule.last_run_id,
    }


def _detail(schedule: Schedule) -> dict[str, Any]:
    args, kwargs = schedule.decoded_args()
    spec = schedule.spec.model_dump(mode="json", exclude_none=True)
    for name in ("interval", "jitter"):
        value = getattr(schedule.spec, name)
        if value is not None:
            spec[name] = duration_seconds(value)  # seconds, as stored
    return {
        **_row(schedule),
        "spec": spec,
        "catchup_window": schedule.catchup_window,
        "args": args,
        "kwargs": kwargs,
        "next_tick": schedule.next_tick,
        "fired": schedule.fired,
        "skipped": schedule.skipped,
        "created_at": schedule.created_at,
        "updated_at": schedule.updated_at,
        "recent": [
            {"tick": e.tick, "outcome": e.outcome, "run_id": e.run_id, "at": e.at}
            for e in schedule.recent
        ],
    }


def _spec(
    cron: str | None,
    interval: str | None,
    timezone: str | None,
    *,
    required: bool,
) -> dict[str, Any] | None:
    if cron is not None and interval is not None:
        raise click.UsageError("give either --cron or --interval, not both")
    if cron is None and interval is None:
        if required:
            raise click.UsageError("give --cron or --interval")
        if timezone is not None:
            raise click.UsageError("--timezone needs --cron (it sets the cron's wall clock)")
        return None
    spec: dict[str, Any] = {"cron": cron} if cron is not None else {"interval": interval}
    if timezone is not None:
        spec["timezone"] = timezone
    return spec


def _spec_options(fn: Any) -> Any:
    fn = click.option(
        "--catchup-window", help="How late a missed tick may still run (e.g. 1h; default 1h)."
    )(fn)
    fn = click.option(
        "--overlap",
        type=click.Choice(_POLICIES),
        help="What a tick does while the previous run still runs (default skip).",
    )(fn)
    fn = click.option("--timezone", help="IANA time zone of the cron (default UTC).")(fn)
    fn = click.option("--interval", help='A fixed interval, e.g. "15m", "1h30m".')(fn)
    fn = click.option("--cron", help='A cron expression, e.g. "0 9 * * mon-fri".')(fn)
    return fn


@schedules.command("create")
@click.option("--workflow", "workflow_name", required=True, help="Name of the workflow to run.")
@_spec_options
@click.option("--id", "schedule_id", help="Schedule id (default: generated).")
@argument_options
@pass_cli
def create_command(
    cli: CliContext,
    workflow_name: str,
    cron: str | None,
    interval: str | None,
    timezone: str | None,
    overlap: str | None,
    catchup_window: str | None,
    schedule_id: str | None,
    arg_pairs: tuple[str, ...],
    args_json: str | None,
) -> None:
    """Create a schedule starting workflow --workflow at each tick.

    The workflow's code is not needed here: the process that fires the schedule (a
    local runtime, `pyworkflow scheduler`) must import it.
    """
    spec = _spec(cron, interval, timezone, required=True)
    args, kwargs = workflow_arguments(arg_pairs, args_json)
    if not _known_here(workflow_name):
        click.echo(
            f"note: workflow {workflow_name!r} is not registered in this process; the "
            "process that fires this schedule must import its module",
            err=True,
        )

    async def create() -> Schedule:
        return await create_schedule(
            workflow_name=workflow_name,
            spec=spec,
            overlap_policy=overlap or OverlapPolicy.SKIP,
            schedule_id=schedule_id,
            catchup_window=catchup_window,
            storage=await cli.storage(),
            args=tuple(args),
            kwargs=kwargs,
        )

    schedule = cli.run(create())
    emit_one(cli.output, _detail(schedule), title=f"schedule {schedule.schedule_id}")


def _known_here(name: str) -> bool:
    try:
        discover_workflows()
    except ValueError:  # ConfigurationError: a configured module does not import here
        return False
    return get_workflow(name) is not None


@schedules.command("list")
@click.option("--workflow", "workflow_name", help="Only schedules of this workflow.")
@click.option(
    "--status", type=click.Choice([s.value for s in ScheduleStatus]), help="Only this status."
)
@pass_cli
def list_command(cli: CliContext, workflow_name: str | None, status: str | None) -> None:
    """Schedules, ordered by id."""

    async def fetch() -> list[Schedule]:
        return await list_schedules(workflow_name, status, storage=await cli.storage())

    rows = [_row(s) for s in cli.run(fetch())]
    emit_list(cli.output, "schedules", rows, _LIST_COLUMNS, title="schedules")


async def _one(cli: CliContext, schedule_id: str) -> Schedule:
    schedule = await get_schedule(schedule_id, storage=await cli.storage())
    if schedule is None:
        raise ScheduleNotFoundError(f"no schedule with id {schedule_id!r}")
    return schedule


@schedules.command("show")
@click.argument("schedule_id")
@pass_cli
def show_command(cli: CliContext, schedule_id: str) -> None:
    """A schedule: spec, policy, arguments, next tick and its recent ticks."""
    schedule = cli.run(_one(cli, schedule_id))
    emit_one(cli.output, _detail(schedule), title=f"schedule {schedule_id}")


def _status_command(name: str, change: Any, help_text: str) -> click.Command:
    """``pause`` and ``resume``: one call of ``change`` on a schedule, which is shown."""

    @schedules.command(name, help=help_text)
    @click.argument("schedule_id")
    @pass_cli
    def command(cli: CliContext, schedule_id: str) -> None:
        async def apply() -> Schedule:
            return cast(Schedule, await change(schedule_id, storage=await cli.storage()))

        emit_one(cli.output, _row(cli.run(apply())), title=f"schedule {schedule_id}")

    return command


pause_command = _status_command(
    "pause", pause_schedule, "Stop firing (ticks while paused are not run later)."
)
resume_command = _status_command(
    "resume", resume_schedule, "Fire again, from the next tick after now."
)


@schedules.command("update")
@click.argument("schedule_id")
@_spec_options
@pass_cli
def update_command(
    cli: CliContext,
    schedule_id: str,
    cron: str | None,
    interval: str | None,
    timezone: str | None,
    overlap: str | None,
    catchup_window: str | None,
) -> None:
    """Change a schedule's spec, overlap policy or catch-up window (the next tick is
    recomputed from now)."""
    spec = _spec(cron, interval, timezone, required=False)
    if spec is None and overlap is None and catchup_window is None:
        raise click.UsageError("nothing to change: give --cron, --interval, --overlap or ...")

    async def update() -> Schedule:
        return await update_schedule(
            schedule_id,
            spec,
            overlap,
            catchup_window=catchup_window,
            storage=await cli.storage(),
        )

    emit_one(cli.output, _detail(cli.run(update())), title=f"schedule {schedule_id}")


@schedules.command("delete")
@click.argument("schedule_id")
@pass_cli
def delete_command(cli: CliContext, schedule_id: str) -> None:
    """Remove a schedule (the runs it started are kept)."""

    async def delete() -> bool:
        return await delete_schedule(schedule_id, storage=await cli.storage())

    if not cli.run(delete()):
        raise ScheduleNotFoundError(f"no schedule with id {schedule_id!r}")
    emit_one(cli.output, {"schedule_id": schedule_id, "deleted": True})


@schedules.command("trigger")
@click.argument("schedule_id")
@pass_cli
def trigger_command(cli: CliContext, schedule_id: str) -> None:
    """Start a run of the schedule now, whatever its spec and overlap policy."""

    async def trigger() -> str:
        storage = await cli.storage()
        run_id = await trigger_schedule(schedule_id, storage=storage)
        await _let_local_runs_settle(storage, [run_id])
        return run_id

    run_id = cli.run(trigger())
    emit_one(cli.output, {"schedule_id": schedule_id, "run_id": run_id})


@schedules.command("backfill")
@click.argument("schedule_id")
@click.option("--start", "start", required=True, help="First instant: ISO 8601 or 2h (ago).")
@click.option("--end", "end", help="Last instant: ISO 8601 or 30m (ago); default now.")
@pass_cli
def backfill_command(cli: CliContext, schedule_id: str, start: str, end: str | None) -> None:
    """Start a run for every tick between --start and --end (both included); a tick
    that already has a run is not started again."""
    now = datetime.now(UTC)
    first = parse_when(start, now, "--start")
    last = parse_when(end, now, "--end") if end is not None else now

    async def backfill() -> list[str]:
        storage = await cli.storage()
        run_ids = await backfill_schedule(schedule_id, first, last, storage=storage)
        await _let_local_runs_settle(storage, run_ids)
        return run_ids

    rows = [{"run_id": run_id} for run_id in cli.run(backfill())]
    emit_list(cli.output, "runs", rows, ("run_id",), title=f"backfill of {schedule_id}")


def parse_when(text: str, now: datetime, option: str) -> datetime:
    """An instant from ISO 8601 (naive = UTC) or a duration meaning that long ago.

    Raises:
        click.BadParameter: neither form.
    """
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        pass
    else:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    try:
        return now - parse_duration(text)
    except (ValueError, TypeError):
        raise click.BadParameter(
            f"{text!r} is neither an ISO 8601 time nor a duration like 2h", param_hint=option
        ) from None


async def _let_local_runs_settle(
    storage: StorageBackend, run_ids: list[str], patience: float = 300.0
) -> None:
    """Under the local runtime the started runs execute on this command's event loop:
    wait until each completed or suspended, so the command does not stop them midway."""
    if get_config().default_runtime != "local":
        return
    loop = asyncio.get_running_loop()
    give_up = loop.time() + patience
    waiting = list(run_ids)
    while waiting and loop.time() < give_up:
        runs = [await storage.get_run(run_id) for run_id in waiting]
        waiting = [
            run.run_id
            for run in runs
            if run is not None and not run.status.is_terminal and run.status != RunStatus.SUSPENDED
        ]
        if waiting:
            await asyncio.sleep(0.05)


COMMANDS = [schedules]
