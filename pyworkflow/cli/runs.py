"""``pyworkflow runs``: find runs, read their state and history, follow them live, ask why
one is not moving, signal, cancel and retry them.

Only ``retry`` needs the workflow's code (and only under the local runtime, which runs the
retry in this process); everything else reads storage, so an operator's shell with
nothing but ``--storage`` can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import click
from pydantic import ValidationError
from rich.live import Live
from rich.text import Text

from pyworkflow.api import cancel_workflow, get_workflow_chain, retry_workflow, wait_for_run
from pyworkflow.cli import CliContext, pass_cli
from pyworkflow.cli.hooks import parse_json_option
from pyworkflow.cli.output import console, emit_list, emit_one, to_json_data
from pyworkflow.cli.timeline import (
    TailView,
    TimelineBuilder,
    summarize,
    timeline,
)
from pyworkflow.core.config import discover_workflows, get_config
from pyworkflow.core.exceptions import RunNotFoundError
from pyworkflow.core.registry import get_workflow
from pyworkflow.engine.diagnosis import Diagnosis, diagnose
from pyworkflow.engine.flow import queued_for
from pyworkflow.engine.history_file import dump_history
from pyworkflow.queries import query_workflow
from pyworkflow.runtime import get_runtime
from pyworkflow.signals import send_signal
from pyworkflow.storage.base import (
    CANCELLATION,
    StorageBackend,
    parse_cursor,
    require_capability,
    run_cursor,
)
from pyworkflow.storage.schemas import Event, EventType, RunStatus, WorkflowRun, utcnow
from pyworkflow.utils.duration import human_duration, parse_duration

#: The columns ``runs list`` (and ``children``, ``chain``) show; JSON has every field.
RUN_COLUMNS = ("run_id", "workflow_name", "status", "created_at", "duration")


def _moment(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """``--since``: an ISO 8601 time (naive = UTC) or a duration back from now (``30m``,
    ``2h``, ``7d``)."""
    if value is None:
        return None
    text = value.strip()
    try:
        return utcnow() - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither an ISO 8601 time nor a duration like 30m, 2h, 7d",
            ctx=ctx,
            param=param,
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None:
        return None
    return round(((end or utcnow()) - start).total_seconds(), 6)


def run_row(run: WorkflowRun) -> dict[str, Any]:
    """The fields of a run listing (one JSON object per run; ``duration`` for people)."""
    seconds = _seconds(run.started_at or run.created_at, run.completed_at)
    return {
        "run_id": run.run_id,
        "workflow_name": run.workflow_name,
        "status": run.status,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "completed_at": run.completed_at,
        "duration_seconds": seconds,
        "duration": human_duration(seconds),
        "tags": list(run.tags),
        "parent_run_id": run.parent_run_id,
    }


async def _run_or_fail(storage: StorageBackend, run_id: str) -> WorkflowRun:
    run = await storage.get_run(run_id)
    if run is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    return run


def _tree(payload: str | None) -> Any:
    """A stored payload as its JSON tree (encoded values stay tagged, nothing is imported)."""
    return None if payload is None else json.loads(payload)


@click.group()
def runs() -> None:
    """Inspect and control workflow runs."""


# -- list ------------------------------------------------------------------------------------


@runs.command("list")
@click.option(
    "--status",
    type=click.Choice([s.value for s in RunStatus]),
    help="Only runs in this status.",
)
@click.option("--workflow", "workflow_name", help="Only runs of this workflow.")
@click.option("--tag", help="Only runs carrying this tag.")
@click.option("--since", callback=_moment, help="Created at or after: ISO 8601 or 30m, 2h, 7d.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--cursor", help="Continue a listing (the next_cursor of the previous page).")
@pass_cli
def list_runs(
    cli: CliContext,
    status: str | None,
    workflow_name: str | None,
    tag: str | None,
    since: datetime | None,
    limit: int,
    cursor: str | None,
) -> None:
    """List runs, newest first."""

    async def fetch() -> list[WorkflowRun]:
        storage = await cli.storage()
        return await storage.list_runs(
            status=RunStatus(status) if status else None,
            workflow_name=workflow_name,
            tag=tag,
            created_after=since,
            limit=limit + 1,  # one more tells whether there is a next page
            cursor=cursor,
        )

    if cursor is not None:
        try:
            parse_cursor(cursor)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--cursor") from None
    found = cli.run(fetch())
    page = found[:limit]
    next_cursor = run_cursor(page[-1]) if len(found) > limit else None
    emit_list(
        cli.output,
        "runs",
        [run_row(r) for r in page],
        RUN_COLUMNS,
        title="runs",
        next_cursor=next_cursor,
    )


# -- status ----------------------------------------------------------------------------------


@runs.command("status")
@click.argument("run_id")
@pass_cli
def status(cli: CliContext, run_id: str) -> None:
    """Show a run: status, times, result or error, recovery, timers, lease, links."""

    async def fetch() -> tuple[WorkflowRun, list[Event]]:
        storage = await cli.storage()
        run = await _run_or_fail(storage, run_id)
        return run, await storage.get_events(run_id)

    run, events = cli.run(fetch())
    started = next((e for e in events if e.type is EventType.WORKFLOW_STARTED), None)
    origin = started.data if started is not None else {}
    stored_input = _tree(run.input_payload) or {}
    listed = run_row(run)
    del listed["duration"]  # duration_seconds says it
    item: dict[str, Any] = {
        **listed,
        "args": stored_input.get("args", []),
        "kwargs": stored_input.get("kwargs", {}),
        "result": _tree(run.result_payload),
        "error": run.error,
        "idempotency_key": run.idempotency_key,
        "recovery_attempts": run.recovery_attempts,
        "max_recovery_attempts": run.max_recovery_attempts,
        "wake_at": run.wake_at,
        "deadline_at": run.deadline_at,
        "lease_owner": run.lease_owner,
        "lease_expires_at": run.lease_expires_at,
        "queued": queued_for(run),
        "cancel_requested_at": run.cancel_requested_at,
        "cancel_reason": run.cancel_reason,
        "continued_from_run_id": run.continued_from_run_id,
        "continued_to_run_id": run.continued_to_run_id,
        "retry_of": origin.get("retry_of"),
        "schedule_id": origin.get("schedule_id"),
        "events": run.last_sequence,
    }
    emit_one(cli.output, item, title=f"run {run.run_id}")


@runs.command("export")
@click.argument("run_id")
@pass_cli
def export(cli: CliContext, run_id: str) -> None:
    """Print a run's whole history (its record and every event) as a history file.

    Keep it in your tests and replay it against your code on every change:
    pyworkflow runs export RUN_ID > tests/histories/order.json, then
    pyworkflow.testing.assert_replays("tests/histories/order.json").
    """

    async def fetch() -> tuple[WorkflowRun, list[Event]]:
        storage = await cli.storage()
        run = await _run_or_fail(storage, run_id)
        return run, await storage.get_events(run_id)

    run, events = cli.run(fetch())
    click.echo(dump_history(run, events), nl=False)


# -- events and logs -------------------------------------------------------------------------


def _event_row(event: Event) -> dict[str, Any]:
    return {
        "sequence": event.sequence,
        "type": event.type,
        "timestamp": event.timestamp,
        "summary": summarize(event),
        "event_id": event.event_id,
        "data": event.data,
    }


async def _events(cli: CliContext, run_id: str, after: int = 0) -> list[Event]:
    storage = await cli.storage()
    await _run_or_fail(storage, run_id)
    return await storage.get_events(run_id, after_sequence=after)


@runs.command("events")
@click.argument("run_id")
@click.option("--after", type=click.IntRange(0), default=0, help="Only events after this sequence.")
@click.option(
    "--type",
    "types",
    multiple=True,
    help="Only these event types; a prefix like 'step' matches step.*. Repeatable.",
)
@pass_cli
def events(cli: CliContext, run_id: str, after: int, types: tuple[str, ...]) -> None:
    """Show a run's event log (a compact summary of each; every field with -o json)."""
    found = cli.run(_events(cli, run_id, after))
    if types:
        found = [e for e in found if any(_type_matches(e.type, t) for t in types)]
    emit_list(
        cli.output,
        "events",
        [_event_row(e) for e in found],
        ("sequence", "type", "timestamp", "summary"),
        title=f"events of {run_id}",
    )


def _type_matches(kind: EventType, wanted: str) -> bool:
    return kind.value == wanted or kind.value.startswith(wanted.rstrip(".") + ".")


@runs.command("logs")
@click.argument("run_id")
@pass_cli
def logs(cli: CliContext, run_id: str) -> None:
    """Show what happened in a run, in order: steps with their durations, retries, sleeps,
    hooks, children, log messages, and how it ended."""
    found = cli.run(_events(cli, run_id))
    emit_list(
        cli.output,
        "timeline",
        [entry.row() for entry in timeline(found)],
        ("elapsed", "kind", "message"),
        title=f"timeline of {run_id}",
    )


# -- tail ------------------------------------------------------------------------------------


async def follow(
    storage: StorageBackend,
    run_id: str,
    interval: float,
    on_event: Callable[[Event], None],
    on_run: Callable[[WorkflowRun], None],
) -> WorkflowRun:
    """Poll a run's log every ``interval`` seconds, handing over each new event once, until
    the run has ended and its last event was handed over; returns the ended run."""
    last = 0
    while True:
        # The run first: if it has ended, the events read next include its last one.
        run = await _run_or_fail(storage, run_id)
        for event in await storage.get_events(run_id, after_sequence=last):
            on_event(event)
            last = event.sequence
        on_run(run)
        if run.status.is_terminal and last >= run.last_sequence:
            return run
        await asyncio.sleep(interval)


@runs.command("tail")
@click.argument("run_id")
@click.option(
    "--interval",
    type=click.FloatRange(0.05),
    default=0.5,
    show_default=True,
    help="Seconds between polls of storage.",
)
@pass_cli
def tail(cli: CliContext, run_id: str, interval: float) -> None:
    """Follow a run live until it ends, printing each new event as it arrives.

    Table output also shows a live view of the run's steps, sleeps, hooks and children;
    plain prints one tab-separated line per event, json one object per line. Ctrl-C
    stops following (exit 0); the run is not affected.
    """
    with contextlib.suppress(KeyboardInterrupt):
        if cli.output == "table":
            _tail_live(cli, run_id, interval)
        else:
            cli.run(_tail_lines(cli, run_id, interval))


async def _tail_lines(cli: CliContext, run_id: str, interval: float) -> None:
    def show(event: Event) -> None:
        row = _event_row(event)
        if cli.output == "json":
            click.echo(json.dumps(to_json_data(row)))
        else:
            click.echo(
                "\t".join(
                    str(to_json_data(row[c])) for c in ("sequence", "type", "timestamp", "summary")
                )
            )

    storage = await cli.storage()
    await follow(storage, run_id, interval, show, lambda _run: None)


def _tail_live(cli: CliContext, run_id: str, interval: float) -> None:
    out = console()
    builder = TimelineBuilder()

    async def watch() -> WorkflowRun:
        storage = await cli.storage()
        first = await _run_or_fail(storage, run_id)
        view = TailView(first)
        with Live(view, console=out, refresh_per_second=4, transient=False) as live:

            def on_event(event: Event) -> None:
                view.feed(event)
                for entry in builder.feed(event):
                    # A Text, not markup: messages hold brackets ("[info] ...", "[0, 2]").
                    elapsed = Text(f"+{entry.row()['elapsed'][1:]:>8}  ", style="dim")
                    live.console.print(elapsed + Text(entry.message), highlight=False)

            def on_run(run: WorkflowRun) -> None:
                view.run = run
                live.refresh()

            return await follow(storage, run_id, interval, on_event, on_run)

    run = cli.run(watch())
    if not out.is_terminal:
        out.line()  # Live printed its last frame without ending the line
    took = _seconds(run.started_at or run.created_at, run.completed_at)
    out.print(f"run {run.run_id} {run.status.value} after {human_duration(took)}", highlight=False)


# -- cancel ----------------------------------------------------------------------------------


def _wait_options(fn: Any) -> Any:
    """``--wait`` and ``--timeout`` (of ``cancel`` and ``retry``)."""
    fn = click.option(
        "--timeout",
        type=click.FloatRange(0, min_open=True),
        help="With --wait: give up after this many seconds (exit 1; the run goes on).",
    )(fn)
    return click.option("--wait", is_flag=True, help="Wait until the run has ended.")(fn)


@runs.command("cancel")
@click.argument("run_id")
@click.option("--reason", help="Recorded with the request; the workflow sees it.")
@_wait_options
@pass_cli
def cancel(
    cli: CliContext, run_id: str, reason: str | None, wait: bool, timeout: float | None
) -> None:
    """Ask a run to cancel (it runs its cleanup and ends cancelled).

    Returns at once unless --wait; the process serving the run acts on the request. A run
    that already ended is left alone (cancel_requested false).
    """

    async def request() -> tuple[bool, WorkflowRun]:
        storage = await cli.storage()
        try:
            requested = await _request_cancel(storage, run_id, reason, serve=wait)
            run = await _run_or_fail(storage, run_id)
            if wait and requested:
                run = await _until_ended(storage, run_id, timeout)
            return requested, run
        finally:
            await get_runtime(get_config().default_runtime).shutdown()

    requested, run = cli.run(request())
    emit_one(
        cli.output,
        {
            "run_id": run.run_id,
            "cancel_requested": requested,
            "status": run.status,
            "cancel_reason": run.cancel_reason,
        },
        title=f"cancel {run_id}",
    )


async def _request_cancel(
    storage: StorageBackend, run_id: str, reason: str | None, *, serve: bool
) -> bool:
    """``cancel_workflow`` (which also wakes the run: on a worker under Celery, in this
    process under the local runtime), except under the local runtime when this process
    will not stay to run the cleanup (``serve`` false: no ``--wait``) or cannot (the
    workflow's code is not here). Then the request is only recorded, and the process
    serving the run acts on it (at the run's wake-up, or its next recovery pass)."""
    run = await _run_or_fail(storage, run_id)
    if get_config().default_runtime == "local":
        discover_workflows()
        if not serve or get_workflow(run.workflow_name) is None:
            require_capability(storage, CANCELLATION)
            return await storage.request_cancellation(run_id, reason, utcnow())
    return await cancel_workflow(run_id, reason, storage=storage)


async def _until_ended(storage: StorageBackend, run_id: str, seconds: float | None) -> WorkflowRun:
    try:
        async with asyncio.timeout(seconds):
            while True:
                run = await _run_or_fail(storage, run_id)
                if run.status.is_terminal:
                    return run
                await asyncio.sleep(0.2)
    except TimeoutError:
        run = await _run_or_fail(storage, run_id)
        raise click.ClickException(
            f"run {run_id} has not ended within {seconds:g}s (status {run.status.value}); "
            "the cancellation stays requested"
        ) from None


# -- signal ----------------------------------------------------------------------------------


@runs.command("signal")
@click.argument("run_id")
@click.argument("name")
@click.option("--payload", "payload_text", metavar="JSON", help="The payload, a JSON value.")
@click.option(
    "--payload-file",
    type=click.File("r"),
    help="Read the JSON payload from this file (- for standard input).",
)
@click.option(
    "--signal-id",
    help="Send at most once: a second send with this id to the run stores nothing.",
)
@pass_cli
def signal(
    cli: CliContext,
    run_id: str,
    name: str,
    payload_text: str | None,
    payload_file: Any,
    signal_id: str | None,
) -> None:
    """Send signal NAME to RUN_ID (the payload defaults to null).

    The run takes it at its next wait_for_signal(NAME); signals wait in the run's inbox
    until then. The process serving the run wakes it (a worker under Celery, the timers
    of a process running it locally). A payload the signal's model refuses (where the
    configured modules define one) is not sent.
    """
    if payload_text is not None and payload_file is not None:
        raise click.UsageError("give the payload once: --payload or --payload-file")
    text = payload_file.read() if payload_file is not None else payload_text
    option = "--payload-file" if payload_file is not None else "--payload"
    payload = None if text is None else parse_json_option(text, option)

    async def send() -> dict[str, Any]:
        storage = await cli.storage()
        try:
            stored = await send_signal(
                run_id, name, payload, signal_id=signal_id, storage=storage, wake_here=False
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(payload)'}: {e['msg']}"
                for e in exc.errors()
            )
            raise click.ClickException(f"payload refused by signal {name!r}: {problems}") from None
        finally:
            await get_runtime(get_config().default_runtime).shutdown()
        return {
            "run_id": stored.run_id,
            "name": stored.name,
            "sequence": stored.sequence,
            "signal_id": stored.signal_id,
        }

    emit_one(cli.output, cli.run(send()), title=f"signal {name} sent")


# -- query -----------------------------------------------------------------------------------


@runs.command("query")
@click.argument("run_id")
@click.argument("name")
@click.argument("args", nargs=-1)
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True)
@pass_cli
def query(cli: CliContext, run_id: str, name: str, args: tuple[str, ...], timeout: float) -> None:
    """Ask RUN_ID's query handler NAME (set_query_handler) for its answer; each ARG is a
    JSON value. Prints the answer as JSON.

    Answered here when the workflow's module is imported (--module), else by a worker
    under --runtime celery. Runs no step and writes nothing.
    """
    values = [parse_json_option(text, f"ARG {i + 1}") for i, text in enumerate(args)]

    async def ask() -> Any:
        storage = await cli.storage()
        try:
            return await query_workflow(run_id, name, *values, timeout=timeout, storage=storage)
        finally:
            await get_runtime(get_config().default_runtime).shutdown()

    answer = cli.run(ask())
    click.echo(json.dumps(answer) if cli.output == "json" else json.dumps(answer, indent=2))


# -- why -------------------------------------------------------------------------------------


@runs.command("why")
@click.argument("run_id")
@pass_cli
def why(cli: CliContext, run_id: str) -> None:
    """Why RUN_ID is not moving: what it waits for and since when (a timer, a hook, a
    signal, a child, a queue no worker consumes, a lease held by a stopped worker, a
    workflow no live worker has), with the command that fixes it where one exists.

    Reads storage and the worker registry only. Exits 0 when the run waits by design
    (or has ended), 1 when it should be moving and is not (a cause marked stuck).
    """

    async def read() -> Diagnosis:
        storage = await cli.storage()
        return await diagnose(storage, run_id, now=utcnow(), lease_ttl=get_config().lease_ttl)

    found = cli.run(read())
    if cli.output == "json":
        click.echo(json.dumps(to_json_data(found.to_dict())))
    else:
        rows = [
            {
                "cause": c.kind + (" (stuck)" if c.stuck else ""),
                "what": c.message,
                "since": c.since,
                "until": c.until,
                "fix": c.fix or "",
            }
            for c in found.causes
        ]
        title = f"why {run_id} ({found.workflow_name}) is {found.status.value}"
        emit_list(
            cli.output, "causes", rows, ("cause", "what", "since", "until", "fix"), title=title
        )
    if found.stuck:
        raise SystemExit(1)


# -- children, chain -------------------------------------------------------------------------


@runs.command("children")
@click.argument("run_id")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--cursor", help="Continue a listing (the next_cursor of the previous page).")
@pass_cli
def children(cli: CliContext, run_id: str, limit: int, cursor: str | None) -> None:
    """List the child runs a run started, newest first."""

    async def fetch() -> list[WorkflowRun]:
        storage = await cli.storage()
        await _run_or_fail(storage, run_id)
        return await storage.get_children(run_id, limit=limit + 1, cursor=cursor)

    found = cli.run(fetch())
    page = found[:limit]
    emit_list(
        cli.output,
        "runs",
        [run_row(r) for r in page],
        RUN_COLUMNS,
        title=f"children of {run_id}",
        next_cursor=run_cursor(page[-1]) if len(found) > limit else None,
    )


@runs.command("chain")
@click.argument("run_id")
@pass_cli
def chain(cli: CliContext, run_id: str) -> None:
    """List the continue-as-new chain a run belongs to, oldest first."""

    async def fetch() -> list[WorkflowRun]:
        return await get_workflow_chain(run_id, storage=await cli.storage())

    found = cli.run(fetch())
    rows = [
        {"position": i, "current": r.run_id == run_id, **run_row(r)} for i, r in enumerate(found, 1)
    ]
    emit_list(
        cli.output,
        "runs",
        rows,
        ("position", "current", "run_id", "status", "created_at"),
        title=f"chain of {run_id}",
    )


# -- retry -----------------------------------------------------------------------------------


@runs.command("retry")
@click.argument("run_id")
@_wait_options
@pass_cli
def retry(cli: CliContext, run_id: str, wait: bool, timeout: float | None) -> None:
    """Start a new run of the same workflow with the run's stored input, linked to it
    (tag retry-of:RUN_ID and retry_of in its started event); prints the new run.

    Under the local runtime the workflow's code must be importable (--module): the new
    run executes here until it completes or suspends (with --wait, until it ends, timers
    included). With --runtime celery it is enqueued by name and a worker runs it.
    """

    async def start_again() -> WorkflowRun:
        storage = await cli.storage()
        runtime = get_config().default_runtime
        try:
            new_id = await _awaitable(retry_workflow(run_id, runtime=runtime, storage=storage))
            if wait:
                try:
                    return await wait_for_run(new_id, timeout=timeout, storage=storage)
                except TimeoutError:
                    raise click.ClickException(
                        f"run {new_id} (retry of {run_id}) has not ended within {timeout:g}s"
                    ) from None
            return await _run_or_fail(storage, new_id)
        finally:
            await get_runtime(runtime).shutdown()

    run = cli.run(start_again())
    emit_one(
        cli.output,
        {
            "run_id": run.run_id,
            "retry_of": run_id,
            "workflow_name": run.workflow_name,
            "status": run.status,
            "tags": list(run.tags),
        },
        title="retry",
    )


async def _awaitable(value: Awaitable[str]) -> str:
    return await value


COMMANDS = [runs]
