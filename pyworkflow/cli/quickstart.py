"""``pyworkflow quickstart DIR``: a project that runs as it is scaffolded.

It holds an order workflow (three steps and a short durable sleep) that ``python -m
workflows`` runs once, its configuration (the embedded SQLite storage, local runtime)
and a pytest test of the workflow, so ``cd DIR && pytest`` passes before anything is
edited. The files are templates written here rather than copied from a package data
directory, so the base install needs nothing else.
"""

from __future__ import annotations

from pathlib import Path

import click

from pyworkflow.cli import CliContext, pass_cli
from pyworkflow.cli.output import emit_one
from pyworkflow.core.config import CONFIG_FILE, DEFAULT_SQLITE_PATH

MODULE = "workflows"

WORKFLOWS_PY = '''\
"""An order workflow, scaffolded by `pyworkflow quickstart`.

    python -m workflows      # run it once (local runtime, SQLite in .pyworkflow/)
    pytest                   # run its test
    pyworkflow runs list     # see the stored runs

Each step's result is stored; if the process dies, the run resumes after the last
finished step. The sleep is durable: the run is stored suspended with its wake-up time.
"""

from __future__ import annotations

import asyncio

from pyworkflow import sleep, start, step, wait_for_run, workflow


@step()
async def reserve_stock(order_id: str, items: list[str]) -> dict[str, object]:
    return {"order_id": order_id, "reserved": items}


@step(max_retries=3, retry_delay="exponential")
async def charge_payment(order_id: str, amount: float) -> dict[str, object]:
    # Raise RetryableError here for a failure worth retrying, FatalError for one that is not.
    return {"order_id": order_id, "charged": amount}


@step()
async def send_confirmation(order_id: str) -> str:
    return f"confirmation sent for {order_id}"


@workflow(name="process_order")
async def process_order(order_id: str, amount: float) -> dict[str, object]:
    reservation = await reserve_stock(order_id, ["book", "pen"])
    payment = await charge_payment(order_id, amount)
    await sleep("2s")  # suspends the run; the local runtime wakes it when due
    confirmation = await send_confirmation(order_id)
    return {
        "order_id": order_id,
        "status": "completed",
        "reserved": reservation["reserved"],
        "charged": payment["charged"],
        "confirmation": confirmation,
    }


async def main() -> None:
    run_id = await start(process_order, "ORD-1", 42.5)
    print(f"started {run_id}")
    run = await wait_for_run(run_id, timeout=60)
    print(f"{run.status.value}: {run.result}")


if __name__ == "__main__":
    asyncio.run(main())
'''

TEST_PY = '''\
"""The order workflow runs to completion (on a throwaway SQLite database per test)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pyworkflow import EventType, RunStatus, get_workflow_events, start, wait_for_run

from workflows import process_order


def test_order_completes(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'test.db'}"

    async def scenario():
        run_id = await start(process_order, "ORD-TEST", 10.0, storage=storage)
        run = await wait_for_run(run_id, timeout=30, storage=storage)
        events = await get_workflow_events(run_id, storage=storage)
        return run, [event.type for event in events]

    run, event_types = asyncio.run(scenario())

    assert run.status == RunStatus.COMPLETED
    assert run.result["charged"] == 10.0
    assert run.result["confirmation"] == "confirmation sent for ORD-TEST"
    assert event_types.count(EventType.STEP_COMPLETED) == 3
'''

CONFIG_YAML = f"""\
# PyWorkflow configuration, read from the directory a process starts in.
# `pyworkflow setup --force` rewrites it (other storage, the Celery runtime).
module: {MODULE}
runtime: local
storage: sqlite:///{DEFAULT_SQLITE_PATH}
"""

PYPROJECT_TOML = """\
# pytest runs from this directory and imports `workflows` from it.
[tool.pytest.ini_options]
pythonpath = ["."]
testpaths = ["tests"]
"""

GITIGNORE = """\
.pyworkflow/
__pycache__/
.pytest_cache/
"""

FILES: dict[str, str] = {
    f"{MODULE}.py": WORKFLOWS_PY,
    "tests/test_workflows.py": TEST_PY,
    CONFIG_FILE: CONFIG_YAML,
    "pyproject.toml": PYPROJECT_TOML,
    ".gitignore": GITIGNORE,
}


def scaffold(directory: Path, *, force: bool = False) -> list[Path]:
    """Write the project files into ``directory`` (created if missing); returns them.

    Raises:
        click.ClickException: ``directory`` is a file, or is not empty and ``force`` is
            not set (nothing is written then).
    """
    if directory.exists() and not directory.is_dir():
        raise click.ClickException(f"{directory} exists and is not a directory")
    if directory.exists() and any(directory.iterdir()) and not force:
        raise click.ClickException(
            f"{directory} is not empty; pass --force to write the project files into it "
            "(files of the same name are overwritten, others are left alone)"
        )
    written = []
    for name, text in FILES.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        written.append(target)
    return written


@click.command(short_help="Scaffold a runnable project: workflow, config, test.")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--force", is_flag=True, help="Write into a directory that is not empty.")
@pass_cli
def quickstart(cli: CliContext, directory: Path, force: bool) -> None:
    """Scaffold a runnable project in DIRECTORY: a workflow, its config and a test."""
    written = scaffold(directory, force=force)
    files = [path.relative_to(directory).as_posix() for path in written]
    if cli.output == "json":
        emit_one(cli.output, {"directory": str(directory), "files": files})
        return
    click.echo(f"created {directory}:")
    for name in files:
        click.echo(f"  {name}")
    click.echo(
        "\nnext steps:\n"
        f"  cd {directory}\n"
        f"  python -m {MODULE}         # run the order workflow once (about 2 s)\n"
        "  pyworkflow runs list        # see the stored run\n"
        "  pytest                      # run its test (pip install pytest)\n"
        "  pyworkflow setup --force    # switch to PostgreSQL, Celery, ..."
    )


COMMANDS = [quickstart]
