"""``pyworkflow runs purge``: retention, deleting finished runs older than a cutoff with
their events, hooks and tags (see :func:`pyworkflow.purge_runs` for what goes).

The command belongs to the ``runs`` group, which lives in its own module; this one
exposes the command and :func:`attach`, which adds it to that group, so neither module
has to know the other. ``COMMANDS`` is empty: nothing is registered at the top level.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from pyworkflow.api import purge_runs
from pyworkflow.cli import CliContext, pass_cli
from pyworkflow.cli.output import emit_one
from pyworkflow.storage.retention import DEFAULT_BATCH_SIZE, PURGEABLE_STATUSES, PurgeResult
from pyworkflow.utils.duration import parse_duration


def parse_cutoff(value: str, now: datetime | None = None) -> datetime:
    """``--older-than``: a duration before now (``30d``, ``12h``, ``1w2d``) or an ISO 8601
    moment (``2026-01-31``, ``2026-01-31T12:00:00+01:00``; without a zone: UTC).

    Raises:
        click.BadParameter: neither.
    """
    try:
        return (now or datetime.now(UTC)) - parse_duration(value)
    except (ValueError, TypeError) as duration_error:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is neither a duration (e.g. 30d, 12h, 1w) nor an ISO 8601 "
                f"date ({duration_error})"
            ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _summary(result: PurgeResult) -> dict[str, object]:
    """The command's result, as printed (``--output json``: this object)."""
    return {
        "count": result.count,
        "dry_run": result.dry_run,
        "cutoff": result.cutoff,
        "statuses": [s.value for s in result.statuses],
        "workflow_name": result.workflow_name,
        "batches": result.batches,
    }


@click.command("purge")
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="AGE|DATE",
    help="Purge runs that finished before this: an age (30d, 12h, 1w) or an ISO 8601 date.",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in PURGEABLE_STATUSES]),
    help="Only runs in this status (repeatable; default: every finished status).",
)
@click.option("--workflow", "workflow_name", help="Only runs of this workflow.")
@click.option("--dry-run", is_flag=True, help="Count the runs that would go; delete nothing.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Runs deleted per storage call (each call its own transaction).",
)
@pass_cli
def purge(
    cli: CliContext,
    older_than: str,
    statuses: tuple[str, ...],
    workflow_name: str | None,
    dry_run: bool,
    batch_size: int,
) -> None:
    """Delete finished runs older than --older-than, with their events and hooks.

    Only runs whose status is completed, failed, cancelled or continued_as_new, and
    that finished (or were last updated) before the cutoff, are deleted. Pending,
    running, suspended and interrupted runs are never touched. Children of a purged
    run stay unless they match too. Deletes in batches; progress goes to stderr.
    """
    cutoff = parse_cutoff(older_than)

    def progress(deleted: int, total: int) -> None:
        if not dry_run:
            noun = "run" if deleted == 1 else "runs"
            click.echo(f"purged {deleted} {noun} ({total} so far)", err=True)

    result = cli.run(
        purge_runs(
            cutoff,
            status=statuses or None,
            workflow_name=workflow_name,
            batch_size=batch_size,
            dry_run=dry_run,
            on_batch=progress,
        )
    )
    title = "dry run: runs that would be purged" if dry_run else "runs purged"
    emit_one(cli.output, _summary(result), title=title)


#: Top-level commands of this module: none (``purge`` joins the ``runs`` group).
COMMANDS: list[click.Command] = []


def attach(group: click.Group) -> None:
    """Add ``purge`` to ``group`` (the ``runs`` group)."""
    group.add_command(purge)


__all__ = ["COMMANDS", "attach", "parse_cutoff", "purge"]
