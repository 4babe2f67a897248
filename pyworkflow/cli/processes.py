"""``pyworkflow worker`` and ``pyworkflow scheduler``: the processes of a Celery
deployment (both also accept ``run``). They need the ``celery`` extra; without it they
say so in one line."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import click

_QUEUE_ALIASES = {
    "workflows": "pyworkflow.workflows",
    "steps": "pyworkflow.steps",
    "schedules": "pyworkflow.schedules",
}


def _require_celery() -> None:
    try:
        import celery  # noqa: F401
    except ImportError:
        raise click.ClickException(
            'this command needs Celery: pip install "pyworkflow-engine[celery]"'
        ) from None


def _worker_options(fn: Any) -> Any:
    fn = click.option(
        "--queues",
        "-Q",
        default="workflows,steps,schedules",
        show_default=True,
        help="Comma-separated queues: workflows, steps, schedules (or full names), and "
        "the queues named by @workflow(queue=...) / @step(queue=...), e.g. gpu.",
    )(fn)
    fn = click.option("--concurrency", "-c", type=int, help="Pool processes (default: CPUs).")(fn)
    fn = click.option("--loglevel", "-l", default="info", show_default=True)(fn)
    fn = click.option("--beat", is_flag=True, help="Also run Celery beat in this worker.")(fn)
    fn = click.option("--pool", "-P", help="Celery pool (prefork, solo, threads).")(fn)
    fn = click.option("--hostname", "-n", help="Worker node name (e.g. w1@%h).")(fn)
    fn = _metrics_port_option("all its pool processes' metrics")(fn)
    return fn


def _metrics_port_option(what: str) -> Any:
    return click.option(
        "--metrics-port",
        type=click.IntRange(1, 65535),
        help=f"Serve /metrics ({what}) for Prometheus on this port; default: the "
        "metrics_port setting. Needs the metrics extra.",
    )


@click.group(invoke_without_command=True)
@_worker_options
@click.pass_context
def worker(ctx: click.Context, /, **options: Any) -> None:
    """Run a Celery worker for pyworkflow's queues.

    Needs the celery extra when run: pip install "pyworkflow-engine[celery]".
    """
    if ctx.invoked_subcommand is None:
        _start_worker(**options)


@worker.command("run")
@_worker_options
def worker_run(**options: Any) -> None:
    """Run a Celery worker for pyworkflow's queues.

    Needs the celery extra when run: pip install "pyworkflow-engine[celery]".
    """
    _start_worker(**options)


def _start_worker(
    queues: str,
    concurrency: int | None,
    loglevel: str,
    beat: bool,
    pool: str | None,
    hostname: str | None,
    metrics_port: int | None,
) -> None:
    _require_celery()
    if metrics_port is not None:
        from pyworkflow.core.config import configure

        configure(metrics_port=metrics_port)  # served by the worker's main process
    from pyworkflow.celery.app import app

    names = _queue_names(queues)
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


def _queue_names(queues: str) -> list[str]:
    """The full queue names of a ``--queues`` value (aliases expanded, each validated)."""
    from pyworkflow.core.queues import validate_queue

    names = [_QUEUE_ALIASES.get(q.strip(), q.strip()) for q in queues.split(",") if q.strip()]
    if not names:
        raise click.BadParameter("name at least one queue", param_hint="--queues")
    for name in names:
        try:
            validate_queue(name, "--queues")
        except ValueError as exc:
            raise click.BadParameter(str(exc).removeprefix("--queues: ")) from None
    return names


def _scheduler_options(fn: Any) -> Any:
    fn = click.option(
        "--loglevel",
        "-l",
        default="info",
        show_default=True,
        help="pyworkflow's log lines from this level up (debug, info, warning, error).",
    )(fn)
    fn = click.option(
        "--poll-interval", type=float, help="Longest sleep between checks (s); default: config."
    )(fn)
    fn = click.option("--duration", type=float, help="Stop after this many seconds.")(fn)
    fn = _metrics_port_option("with the overdue backlog, pyworkflow_due_runs")(fn)
    return fn


@click.group(invoke_without_command=True)
@_scheduler_options
@click.pass_context
def scheduler(ctx: click.Context, /, **options: Any) -> None:
    """Fire due timers and recover runs of dead workers (instead of Celery beat).

    Needs the celery extra when run: pip install "pyworkflow-engine[celery]".
    """
    if ctx.invoked_subcommand is None:
        _start_scheduler(**options)


@scheduler.command("run")
@_scheduler_options
def scheduler_run(**options: Any) -> None:
    """Fire due timers and recover runs of dead workers (instead of Celery beat).

    Needs the celery extra when run: pip install "pyworkflow-engine[celery]".
    """
    _start_scheduler(**options)


def _start_scheduler(
    poll_interval: float | None, duration: float | None, loglevel: str, metrics_port: int | None
) -> None:
    _require_celery()
    from pyworkflow.utils.log import set_log_level

    try:
        set_log_level(loglevel)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--loglevel") from None
    from pyworkflow.celery.scheduler import run_scheduler
    from pyworkflow.core.config import get_storage

    async def serve() -> None:
        storage = get_storage()
        try:
            await run_scheduler(
                storage, poll_interval=poll_interval, duration=duration, metrics_port=metrics_port
            )
        finally:
            await storage.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


COMMANDS = [worker, scheduler]
