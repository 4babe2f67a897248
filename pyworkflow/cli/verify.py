"""``pyworkflow verify``: replay stored histories against the code importable now, before
a deploy, and fail (exit 1) if any run would break at replay."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from pyworkflow.cli import CliContext, pass_cli
from pyworkflow.cli.output import console, emit_list, to_json_data
from pyworkflow.cli.runs import _moment
from pyworkflow.core.config import discover_workflows
from pyworkflow.engine.verify import (
    UNFINISHED,
    RunVerdict,
    VerifyReport,
    runs_to_verify,
    verify_runs,
)
from pyworkflow.storage.schemas import RunStatus

_STATUSES = [s.value for s in RunStatus]


@click.command("verify")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(_STATUSES),
    help="Runs with this status (repeatable); default: pending, running and suspended.",
)
@click.option("--workflow", help="Only runs of this workflow.")
@click.option("--since", callback=_moment, help="Created at or after: ISO 8601 or 30m, 2h, 7d.")
@click.option("--sample", type=click.IntRange(1), help="At most N runs, picked at random.")
@click.option("--run", "run_ids", multiple=True, help="This run only (repeatable).")
@click.option(
    "--strict",
    is_flag=True,
    help="Also fail on a changed sleep duration of a recorded sleep.",
)
@pass_cli
def verify(
    cli: CliContext,
    statuses: tuple[str, ...],
    workflow: str | None,
    since: datetime | None,
    sample: int | None,
    run_ids: tuple[str, ...],
    strict: bool,
) -> None:
    """Replay stored runs against the workflow code importable now.

    Executes no step and writes nothing. Reports each run whose history the code no
    longer matches (the first operation that differs) and exits 1 if there is one, so it
    can gate a deploy: run it with the new code and the production storage.
    """
    discover_workflows()

    async def check() -> VerifyReport:
        storage = await cli.storage(read_only=True)  # verify writes nothing
        try:
            runs = await runs_to_verify(
                storage,
                statuses=[RunStatus(s) for s in statuses] or UNFINISHED,
                workflow=workflow,
                since=since,
                run_ids=run_ids,
                sample=sample,
            )
        except LookupError as exc:
            raise click.ClickException(str(exc).strip("'\"")) from None
        return await verify_runs(storage, runs, strict=strict)

    report = cli.run(check())
    if cli.output == "json":
        document = {
            "ok": report.ok,
            "runs": [_row(v) for v in report.verdicts],
            "workflows": {
                name: {"runs": n, "failed": bad} for name, (n, bad) in report.by_workflow().items()
            },
            "old_patch_paths": report.old_paths(),
        }
        click.echo(json.dumps(to_json_data(document)))
    else:
        _print(cli.output, report)
    if not report.ok:
        raise SystemExit(1)


def _row(verdict: RunVerdict) -> dict[str, Any]:
    divergence = verdict.divergence
    return {
        "run_id": verdict.run_id,
        "workflow_name": verdict.workflow_name,
        "status": verdict.status,
        "ok": verdict.ok,
        "operations": verdict.operations,
        "problem": verdict.problem,
        "position": divergence.position if divergence else None,
        "sequence": divergence.sequence if divergence else None,
        "recorded": divergence.recorded if divergence else None,
        "requested": divergence.requested if divergence else None,
    }


def _print(fmt: str, report: VerifyReport) -> None:
    failed = [_row(v) for v in report.failed]
    if failed:
        columns = ("run_id", "workflow_name", "status", "problem")
        emit_list(fmt, "runs", failed, columns, title="Runs that do not replay")
    summary = [
        {"workflow": name, "runs": n, "replay": n - bad, "fail": bad}
        for name, (n, bad) in report.by_workflow().items()
    ]
    emit_list(fmt, "workflows", summary, ("workflow", "runs", "replay", "fail"), title="Verified")
    for patch, runs in report.old_paths().items():
        console().print(f"patch {patch!r}: {runs} run(s) still take its old path")
    verdict = "every run replays" if report.ok else f"{len(failed)} run(s) do not replay"
    console().print(f"{len(report.verdicts)} run(s) verified: {verdict}")


COMMANDS = [verify]
