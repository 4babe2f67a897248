"""The ``pyworkflow`` command (Click). For now: the processes of a Celery deployment,
``pyworkflow worker`` and ``pyworkflow scheduler``; both also accept ``run``."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import click

from pyworkflow.core.config import configure

_QUEUE_ALIASES = {
    "workflows": "pyworkflow.workflows",
    "steps": "pyworkflow.steps",
    "schedules": "pyworkflow.schedules",
}


@click.group()
@click.option("--module", "-m", "modules", multiple=True, help="Workflow module to import.")
@click.option("--storage", help="Storage URL (e.g. postgresql://..., sqlite:///path.db).")
@click.option("--broker", help="Celery broker URL (default: redis://localhost:6379/0).")
def main(modules: tuple[str, ...], storage: str | None, broker: str | None) -> None:
    """PyWorkflow: durable workflows for Python."""
    options: dict[str, Any] = {}
    if modules:
        options["modules"] = list(modules)
    if storage:
        options["storage"] = storage
    if broker:
        options["celery_broker"] = broker
    if options:
        configure(**options)


def _worker_options(fn: Any) -> Any:
    fn = click.option(
        "--queues",
        "-Q",
        default="workflows,steps,schedules",
        show_default=True,
        help="Comma-separated queues: workflows, steps, schedules (or full names).",
    )(fn)
    fn = click.option("--concurrency", "-c", type=int, help="Pool processes (default: CPUs).")(fn)
    fn = click.option("--loglevel", "-l", default="info", show_default=True)(fn)
    fn = click.option("--beat", is_flag=True, help="Also run Celery beat in this worker.")(fn)
    fn = click.option("--pool", "-P", help="Celery pool (prefork, solo, threads).")(fn)
    fn = click.option("--hostname", "-n", help="Worker node name (e.g. w1@%h).")(fn)
    return fn


@main.group(invoke_without_command=True)
@_worker_options
@click.pass_context
def worker(ctx: click.Context, /, **options: Any) -> None:
    """Run a Celery worker for pyworkflow's queues."""
    if ctx.invoked_subcommand is None:
        _start_worker(**options)


@worker.command("run")
@_worker_options
def worker_run(**options: Any) -> None:
    """Run a Celery worker for pyworkflow's queues."""
    _start_worker(**options)


def _start_worker(
    queues: str,
    concurrency: int | None,
    loglevel: str,
    beat: bool,
    pool: str | None,
    hostname: str | None,
) -> None:
    from pyworkflow.celery.app import app

    names = [_QUEUE_ALIASES.get(q.strip(), q.strip()) for q in queues.split(",") if q.strip()]
    argv = ["worker", f"--loglevel={loglevel}", f"--queues={','.join(names)}"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if beat:
        argv.append("--beat")
    if pool:
        argv.append(f"--pool={pool}")
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main(argv)


def _scheduler_options(fn: Any) -> Any:
    fn = click.option(
        "--poll-interval", type=float, help="Longest sleep between checks (s); default: config."
    )(fn)
    fn = click.option("--duration", type=float, help="Stop after this many seconds.")(fn)
    return fn


@main.group(invoke_without_command=True)
@_scheduler_options
@click.pass_context
def scheduler(ctx: click.Context, poll_interval: float | None, duration: float | None) -> None:
    """Fire due timers and recover runs of dead workers (instead of Celery beat)."""
    if ctx.invoked_subcommand is None:
        _start_scheduler(poll_interval, duration)


@scheduler.command("run")
@_scheduler_options
def scheduler_run(poll_interval: float | None, duration: float | None) -> None:
    """Fire due timers and recover runs of dead workers (instead of Celery beat)."""
    _start_scheduler(poll_interval, duration)


def _start_scheduler(poll_interval: float | None, duration: float | None) -> None:
    from pyworkflow.celery.scheduler import run_scheduler
    from pyworkflow.core.config import get_storage

    async def serve() -> None:
        storage = get_storage()
        try:
            await run_scheduler(storage, poll_interval=poll_interval, duration=duration)
        finally:
            await storage.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
