"""Structured logging with run and step context.

``configure_logging(level="INFO", json_logs=False, show_context=True)`` adds log sinks
(stderr, and a file) and lets pyworkflow's INFO lines through: one per event of each
run's life (started, suspended, resumed, completed, failed, ...), written once, never
again on replay. ``get_logger()`` returns the (loguru) logger. Records emitted while a run executes
carry ``run_id`` and ``workflow_name``, and inside a step also ``step_id`` and
``step_name``, without passing anything: with ``show_context=True`` they are appended to
each text line. ``get_logger(order_id=...)`` binds extra fields of your own (they
appear in the record's ``extra``, e.g. in ``json_logs=True`` output).

Log lines go to stderr, and here also to a log file (``log_file=``) that the script
reads back to check the context. Note: workflow-level code re-runs when a run is replayed
after a suspension, so its log lines can repeat; step bodies never re-run once recorded.

Storage: ``$PYWORKFLOW_EXAMPLE_DB`` if set, else ``.pyworkflow/examples.db``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from pyworkflow import configure, configure_logging, get_logger, start, step, workflow


@step()
async def reserve_stock(order_id: str) -> str:
    get_logger(order_id=order_id).info("reserving stock")
    return f"R-{order_id}"


@step()
async def charge_card(order_id: str, amount: float) -> float:
    get_logger().info("charging {} for order {}", amount, order_id)
    return amount


@workflow(name="ex09_logged_order")
async def logged_order(order_id: str, amount: float) -> str:
    log = get_logger()
    log.info("order received")  # workflow context only: run_id and workflow_name
    reservation = await reserve_stock(order_id)
    await charge_card(order_id, amount)
    log.info("order done")
    return reservation


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


async def main() -> None:
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", ".pyworkflow/examples.db")
    configure(storage=f"sqlite:///{db}")

    with tempfile.TemporaryDirectory() as tmp:
        log_file = Path(tmp, "workflow.log")
        configure_logging(level="INFO", log_file=str(log_file), json_logs=False, show_context=True)
        get_logger().info("outside any workflow: no context fields")

        run_id = await start(logged_order, "ORD-7", 12.5)
        await get_logger().complete()  # flush the sinks
        lines = await asyncio.to_thread(read_lines, log_file)
        configure_logging(level="INFO")  # back to stderr only; releases the file

    print(f"run {run_id}; log lines written:")
    for line in lines:
        print(f"  {line}")

    def line_with(text: str) -> str:
        return next(line for line in lines if text in line)

    outside = line_with("outside any workflow")
    assert "run_id=" not in outside
    received = line_with("order received")
    assert f"run_id={run_id}" in received and "workflow_name=ex09_logged_order" in received
    assert "step_name=" not in received
    reserving = line_with("reserving stock")
    assert f"run_id={run_id}" in reserving
    assert "step_id=step:reserve_stock#1" in reserving and "step_name=reserve_stock" in reserving
    charging = line_with("charging 12.5 for order ORD-7")
    assert "step_name=charge_card" in charging and f"run_id={run_id}" in charging
    # pyworkflow's own lines of the run's life, once each, with the run's context.
    started = [line for line in lines if f"run {run_id} of workflow" in line]
    completed = [line for line in lines if f"run {run_id} completed" in line]
    assert len(started) == len(completed) == 1 and f"run_id={run_id}" in completed[0]
    print("\nOK: log lines carry run_id/workflow_name, and step_id/step_name inside steps")


if __name__ == "__main__":
    asyncio.run(main())
