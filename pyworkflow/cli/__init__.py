"""The ``pyworkflow`` command (Click + Rich): see ``docs/cli.md``.

``main`` holds the global options and the error policy; each command group lives in a
module of its own (``processes``: ``worker`` and ``scheduler``; the others are named
after their group) and receives a :class:`CliContext`.

Error policy: a problem the user can fix (an unknown run, a refused payload, storage
that does not answer) prints one line on stderr, ``error: ...``, and exits 1; ``-v``
adds the traceback. Usage errors exit 2 (Click's own). Nothing is printed on success
but the result.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from pyworkflow.cli.output import FORMATS
from pyworkflow.core.config import add_project_path, configure, get_storage
from pyworkflow.core.exceptions import WorkflowError
from pyworkflow.runtime import get_runtime
from pyworkflow.storage.base import StorageBackend

T = TypeVar("T")


@dataclass
class CliContext:
    """What the global options decided, passed to every command (``ctx.obj``)."""

    output: str = "table"
    verbose: int = 0

    _opened: list[StorageBackend] = field(default_factory=list)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one command's coroutine to completion on a fresh event loop, then stop
        what it started there (local runtime services, storage connections): they are
        bound to that loop, which ends here."""
        return asyncio.run(self._then_tidy(coro))

    async def _then_tidy(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return await coro
        finally:
            await get_runtime("local").shutdown()
            while self._opened:
                await self._opened.pop().close()

    async def storage(self, *, read_only: bool = False) -> StorageBackend:
        """The configured storage, connected (closed again when :meth:`run` ends);
        ``read_only``: a view that never writes (see ``StorageBackend.read_only``)."""
        storage = get_storage().read_only() if read_only else get_storage()
        await storage.connect()
        if storage not in self._opened:
            self._opened.append(storage)
        return storage


pass_cli = click.make_pass_decorator(CliContext, ensure=True)


class _Main(click.Group):
    """Turns the errors a user can act on into one line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.UsageError, click.Abort):
            raise
        except click.ClickException as exc:  # a command's own refusal: the same one line
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except (WorkflowError, OSError, ValueError) as exc:
            verbose = isinstance(ctx.obj, CliContext) and ctx.obj.verbose > 0
            if verbose:
                traceback.print_exc()
            click.echo(f"error: {_describe(exc)}", err=True)
            sys.exit(1)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__


def _version() -> str:
    from pyworkflow import __version__

    return __version__


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--module", "-m", "modules", multiple=True, help="Workflow module to import.")
@click.option("--storage", help="Storage URL (e.g. postgresql://..., sqlite:///path.db).")
@click.option("--broker", help="Celery broker URL (default: redis://localhost:6379/0).")
@click.option(
    "--runtime",
    type=click.Choice(["local", "celery"]),
    help="Where started runs execute (default: config, else local).",
)
@click.option(
    "--output",
    "-o",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table for people, json for scripts (stable shape), plain for shell pipes.",
)
@click.option("-v", "--verbose", count=True, help="More detail; -v shows tracebacks.")
@click.version_option(version=_version(), prog_name="pyworkflow")
@click.pass_context
def main(
    ctx: click.Context,
    modules: tuple[str, ...],
    storage: str | None,
    broker: str | None,
    runtime: str | None,
    output: str,
    verbose: int,
) -> None:
    """PyWorkflow: durable workflows for Python."""
    ctx.obj = CliContext(output=output, verbose=verbose)
    # Workflow modules are found in the project directory the command runs from, as
    # `celery -A proj` and `python -m` do (a console script's path does not hold it).
    add_project_path()
    options: dict[str, Any] = {}
    if modules:
        options["modules"] = list(modules)
    if storage:
        options["storage"] = storage
    if broker:
        options["celery_broker"] = broker
    if runtime:
        options["default_runtime"] = runtime
    if options:
        configure(**options)


def _register() -> None:
    from pyworkflow.cli import (
        dashboard,
        hooks,
        processes,
        purge,
        quickstart,
        runs,
        schedules,
        setup,
        verify,
        workflows,
    )

    modules = (
        processes,
        workflows,
        runs,
        hooks,
        schedules,
        setup,
        quickstart,
        dashboard,
        verify,
    )
    for module in modules:
        for command in module.COMMANDS:
            main.add_command(command)
    purge.attach(runs.runs)


_register()

__all__ = ["CliContext", "main", "pass_cli"]
