"""``pyworkflow workflows list|info|run``: what workflows exist and starting one by name.

A workflow is *registered* when this process imported its code (``--module`` or the
configured ``modules``); storage also remembers the names of workflows that have runs,
so ``list`` and ``info`` show both and say which is which. ``run`` executes in this
process under the local runtime (the code must be imported) and only enqueues under
the Celery runtime (the workers have the code, so a name is enough).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import CodeType
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    Progress,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from pyworkflow.api import get_workflow_run, start_by_name
from pyworkflow.cli import CliContext, pass_cli
from pyworkflow.cli.arguments import argument_options, workflow_arguments
from pyworkflow.cli.output import emit_list, emit_one, to_json_data
from pyworkflow.core.config import discover_workflows, get_config
from pyworkflow.core.queues import validate_queue
from pyworkflow.core.registry import list_workflows
from pyworkflow.core.workflow import WorkflowDefinition
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import Event, EventType, RunStatus, WorkflowRun, utcnow

#: How many of the newest runs ``workflows list`` counts per workflow name (one query,
#: whatever the size of the storage).
RECENT_RUNS_SCANNED = 1000
#: A run that suspends until at most this many seconds from now (a step retry's backoff,
#: a short sleep) is still watched by ``workflows run``: it is about to go on.
SHORT_SUSPENSION = 5.0
_POLL = 0.1

_LIST_COLUMNS = (
    "name",
    "registered",
    "durable",
    "max_duration",
    "max_recovery_attempts",
    "tags",
    "recent_runs",
)
_RUN_COLUMNS = ("run_id", "status", "created_at", "completed_at")


@click.group("workflows")
def workflows() -> None:
    """List, inspect and run workflows."""


def _registered() -> dict[str, WorkflowDefinition]:
    discover_workflows()  # --module and the configured modules
    return list_workflows()


def _options(definition: WorkflowDefinition) -> dict[str, Any]:
    return {
        "durable": definition.durable,
        "max_duration": definition.max_duration,
        "max_recovery_attempts": definition.max_recovery_attempts,
        "recover_on_worker_loss": definition.recover_on_worker_loss,
        "tags": list(definition.tags),
    }


def _module_of(definition: WorkflowDefinition) -> str:
    fn = definition.func
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')}"


@workflows.command("list")
@pass_cli
def list_command(cli: CliContext) -> None:
    """Workflows registered here (--module) and workflow names that have runs in storage.

    The run count covers the newest runs of the storage (up to 1000), so it stays one
    cheap query on a large storage.
    """
    registered = _registered()
    counts = cli.run(_recent_counts(cli))
    rows = []
    for name in sorted(set(registered) | set(counts)):
        definition = registered.get(name)
        row: dict[str, Any] = {"name": name, "registered": definition is not None}
        if definition is not None:
            row["module"] = _module_of(definition)
            row.update(_options(definition))
        row["recent_runs"] = counts.get(name, 0)
        rows.append(row)
    emit_list(
        cli.output,
        "workflows",
        rows,
        _LIST_COLUMNS,
        title=f"workflows (registered here: {len(registered)})",
    )


async def _recent_counts(cli: CliContext) -> Counter[str]:
    storage = await cli.storage()
    runs = await storage.list_runs(limit=RECENT_RUNS_SCANNED)
    return Counter(run.workflow_name for run in runs)


@workflows.command("info")
@click.argument("name")
@click.option("--runs", "recent", default=5, show_default=True, help="How many recent runs.")
@pass_cli
def info_command(cli: CliContext, name: str, recent: int) -> None:
    """A workflow's signature, docstring, options, the steps its code calls and its
    recent runs."""
    definition = _registered().get(name)
    runs = cli.run(_recent_runs(cli, name, recent))
    if definition is None and not runs:
        raise click.ClickException(
            f"no workflow named {name!r}: it is not registered here (pass --module with "
            "the module that defines it) and storage has no runs of it"
        )
    item: dict[str, Any] = {"name": name, "registered": definition is not None}
    if definition is not None:
        fn = definition.func
        item["module"] = _module_of(definition)
        item["signature"] = f"{name}{inspect.signature(fn)}"
        if cli.output != "table":  # people read the signature; scripts get the parts
            item["parameters"] = _parameters(fn)
        item["docstring"] = inspect.getdoc(fn)
        item.update(_options(definition))
        item["steps"] = referenced_steps(fn)
    run_rows = [_run_row(run) for run in runs]
    if cli.output == "table":
        emit_one(cli.output, item, title=f"workflow {name}")
        emit_list(cli.output, "runs", run_rows, _RUN_COLUMNS, title="recent runs")
        return
    item["recent_runs"] = run_rows
    emit_one(cli.output, item, title=f"workflow {name}")


async def _recent_runs(cli: CliContext, name: str, limit: int) -> list[WorkflowRun]:
    storage = await cli.storage()
    return await storage.list_runs(workflow_name=name, limit=max(limit, 1))


def _run_row(run: WorkflowRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "status": run.status,
        "created_at": run.created_at,
        "completed_at": run.completed_at,
    }


def _parameters(fn: Any) -> list[dict[str, Any]]:
    out = []
    for param in inspect.signature(fn).parameters.values():
        entry: dict[str, Any] = {"name": param.name, "kind": param.kind.name.lower()}
        if param.annotation is not inspect.Parameter.empty:
            annotation = param.annotation
            entry["annotation"] = inspect.formatannotation(annotation)
        if param.default is not inspect.Parameter.empty:
            entry["default"] = _jsonable(param.default)
        out.append(entry)
    return out


def referenced_steps(fn: Any) -> list[str]:
    """Names of the steps ``fn``'s code refers to by a global name (``await charge(...)``,
    ``await Charge()(...)``, also in nested functions); a step reached another way
    (an attribute, a parameter) is not found."""
    names: list[str] = []
    namespace = getattr(fn, "__globals__", {})
    code = getattr(fn, "__code__", None)
    for global_name in _global_names(code):
        definition = getattr(namespace.get(global_name), "__step__", None)
        step_name = getattr(definition, "name", None)
        if isinstance(step_name, str) and step_name not in names:
            names.append(step_name)
    return names


def _global_names(code: CodeType | None) -> Iterator[str]:
    if code is None:
        return
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _global_names(const)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(to_json_data(value))
    except (TypeError, ValueError):
        return repr(value)
    return value


# -- run ----------------------------------------------------------------------------------


@workflows.command("run")
@click.argument("name")
@argument_options
@click.option("--idempotency-key", help="A second run with the same key returns the first run.")
@click.option(
    "--queue",
    help="Celery: the broker queue of this run's workflow messages (default: the "
    "workflow's @workflow(queue=...), else pyworkflow.workflows).",
)
@click.option(
    "--no-wait",
    is_flag=True,
    help="Print the run id and exit (local runtime: once the run completed or suspended "
    "in this process; celery: once it is enqueued).",
)
@pass_cli
def run_command(
    cli: CliContext,
    name: str,
    arg_pairs: tuple[str, ...],
    args_json: str | None,
    idempotency_key: str | None,
    queue: str | None,
    no_wait: bool,
) -> None:
    """Start a run of workflow NAME and follow its steps until it ends or suspends.

    Local runtime (default): the workflow runs in this process, so its code must be
    imported (--module). With --runtime celery the run is enqueued by name for the
    workers. Exit code 1 when the run failed.
    """
    args, kwargs = workflow_arguments(arg_pairs, args_json)
    if queue is not None:
        try:
            validate_queue(queue, "--queue")
        except ValueError as exc:
            raise click.BadParameter(str(exc).removeprefix("--queue: ")) from None
    runtime = get_config().default_runtime
    if runtime == "local":
        _require_local_code(name)
    else:
        try:
            discover_workflows()  # with the code here, the run gets the workflow's options
        except ValueError as exc:  # ConfigurationError: the workers import it instead
            if cli.verbose:
                click.echo(f"note: {exc}; enqueueing {name!r} by name", err=True)
    watch = not no_wait
    show_live = watch and cli.output == "table"
    run = cli.run(_run(cli, name, args, kwargs, idempotency_key, watch, show_live, queue))
    if not watch:
        click.echo(run.run_id)
        return
    emit_one(cli.output, _result_row(run), title=f"run {run.run_id}")
    if run.status == RunStatus.FAILED:
        sys.exit(1)


def _require_local_code(name: str) -> None:
    if _registered().get(name) is None:
        modules = ", ".join(get_config().modules) or "none"
        raise click.ClickException(
            f"workflow {name!r} is not registered in this process (modules imported: "
            f"{modules}); pass --module MODULE (the module that defines it) or run it with "
            "--runtime celery"
        )


async def _run(
    cli: CliContext,
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    idempotency_key: str | None,
    watch: bool,
    show_live: bool,
    queue: str | None = None,
) -> WorkflowRun:
    storage = await cli.storage()
    run_id = f"run_{uuid.uuid4().hex}"
    started = asyncio.ensure_future(
        start_by_name(
            name,
            args,
            kwargs,
            storage=storage,
            idempotency_key=idempotency_key,
            run_id=run_id,
            queue=queue,
        )
    )
    if not watch:
        return WorkflowRun(run_id=await started, workflow_name=name)
    view = StepView(name, Console(stderr=True, highlight=False)) if show_live else None
    try:
        if view is not None:
            with view.progress:
                return await _follow(storage, name, started, run_id, view)
        return await _follow(storage, name, started, run_id, None)
    finally:
        if not started.done():
            started.cancel()


async def _follow(
    storage: StorageBackend,
    name: str,
    started: asyncio.Future[str],
    run_id: str,
    view: StepView | None,
) -> WorkflowRun:
    """Poll the run and its new events until it ends or suspends for longer than
    :data:`SHORT_SUSPENSION` (the start may still be executing it: local runtime)."""
    seen = 0
    while True:
        done = started.done()
        if done:
            run_id = started.result()  # raises what the start raised; another id: idempotency
        run = await get_workflow_run(run_id, storage=storage)  # also a transient run here
        if run is None and done:
            # A transient run (durable=False) sent to workers: nothing stores it.
            click.echo(f"note: run {run_id} is not stored (transient): nothing to follow", err=True)
            return WorkflowRun(run_id=run_id, workflow_name=name, status=RunStatus.PENDING)
        if run is not None:
            events = await storage.get_events(run_id, after_sequence=seen)
            if events:
                seen = events[-1].sequence
            if view is not None:
                view.update(run, events)
            if done and _settled(run):
                return run
        await asyncio.sleep(_POLL)


def _settled(run: WorkflowRun) -> bool:
    if run.status.is_terminal:
        return True
    if run.status != RunStatus.SUSPENDED:
        return False
    if run.wake_at is None:
        return True  # a hook or a cancellation: nothing here moves it
    return (run.wake_at - utcnow()).total_seconds() > SHORT_SUSPENSION


def _result_row(run: WorkflowRun) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": run.run_id,
        "workflow": run.workflow_name,
        "status": run.status,
    }
    if run.status == RunStatus.COMPLETED:
        row["result"] = _jsonable(run.result)
    if run.error:
        row["error"] = run.error
    if run.status == RunStatus.SUSPENDED:
        row["wake_at"] = run.wake_at
    row["started_at"] = run.started_at
    row["completed_at"] = run.completed_at
    if run.started_at and run.completed_at:
        row["duration_seconds"] = round((run.completed_at - run.started_at).total_seconds(), 3)
    return row


class _StateColumn(SpinnerColumn):
    """A spinner while a line is going on, then a green tick, or a red cross if it failed."""

    def render(self, task: Task) -> Any:
        if task.finished and task.fields.get("failed"):
            return Text("✗", style="red")
        return super().render(task)


@dataclass
class StepView:
    """The live display of ``workflows run``: one line for the run, one per step (and
    per sleep, hook and child run) with its state, updated from new events."""

    workflow_name: str
    console: Console
    progress: Progress = field(init=False)
    _run_task: TaskID | None = None
    _tasks: dict[str, TaskID] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.progress = Progress(
            _StateColumn(finished_text="[green]✓[/]"),
            TextColumn("{task.description}"),
            TextColumn("[dim]{task.fields[state]}[/]"),
            TimeElapsedColumn(),
            console=self.console,
        )

    def update(self, run: WorkflowRun, events: list[Event]) -> None:
        if self._run_task is None:
            self._run_task = self.progress.add_task(
                f"[bold]{self.workflow_name}[/] {run.run_id}", total=1, state="", failed=False
            )
        for event in events:
            self._apply(event)
        self.progress.update(
            self._run_task,
            state=run.status.value,
            completed=1 if run.status.is_terminal else 0,
            failed=run.status == RunStatus.FAILED,
        )

    def _apply(self, event: Event) -> None:
        data: Mapping[str, Any] = event.data or {}
        kind = event.type
        if kind in (EventType.STEP_STARTED, EventType.STEP_RETRYING):
            attempt = data.get("attempt")
            state = "running" if kind == EventType.STEP_STARTED else "retrying"
            self._set(data.get("step_id"), f"step {data.get('step_name')}", f"{state} #{attempt}")
        elif kind == EventType.STEP_COMPLETED:
            self._set(data.get("step_id"), f"step {data.get('step_name')}", "done", done=True)
        elif kind == EventType.STEP_FAILED:
            retry = bool(data.get("will_retry"))
            state = "failed, will retry" if retry else "failed"
            step = f"step {data.get('step_name')}"
            self._set(data.get("step_id"), step, state, done=not retry, failed=not retry)
        elif kind == EventType.SLEEP_STARTED:
            until = _short_time(data.get("fire_at"))
            label = f"sleep {data['name']}" if data.get("name") else "sleep"
            self._set(data.get("sleep_id"), label, f"until {until}")
        elif kind == EventType.SLEEP_COMPLETED:
            self._set(data.get("sleep_id"), "sleep", "done", done=True)
        elif kind == EventType.HOOK_CREATED:
            self._set(data.get("hook_id"), f"hook {data.get('name')}", "waiting for payload")
        elif kind == EventType.HOOK_RECEIVED:
            self._set(data.get("hook_id"), "hook", "received", done=True)
        elif kind == EventType.CHILD_WORKFLOW_STARTED:
            child = data.get("child_run_id")
            self._set(child, f"child {data.get('workflow_name') or child}", "running")
        elif kind in (
            EventType.CHILD_WORKFLOW_COMPLETED,
            EventType.CHILD_WORKFLOW_FAILED,
            EventType.CHILD_WORKFLOW_CANCELLED,
        ):
            state = kind.value.rsplit(".", 1)[-1]
            failed = kind != EventType.CHILD_WORKFLOW_COMPLETED
            self._set(data.get("child_run_id"), "child", state, done=True, failed=failed)

    def _set(
        self, key: Any, description: str, state: str, *, done: bool = False, failed: bool = False
    ) -> None:
        if not isinstance(key, str):
            return
        task = self._tasks.get(key)
        if task is None:
            task = self._tasks[key] = self.progress.add_task(
                description, total=1, state=state, failed=False
            )
        self.progress.update(task, state=state, completed=1 if done else 0, failed=failed)


def _short_time(text: Any) -> str:
    if not isinstance(text, str):
        return "?"
    try:
        return datetime.fromisoformat(text).strftime("%H:%M:%S")
    except ValueError:
        return text


COMMANDS = [workflows]
