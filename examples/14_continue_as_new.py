"""``continue_as_new()``: a long polling loop split into a chain of short runs.

The poller fetches and processes one page of a feed per iteration and sleeps durably
between iterations. Left alone, one run's event log would grow with every iteration.
Instead, every ``ITERATIONS_PER_RUN`` iterations it calls
``continue_as_new(cursor, processed, stop_at)``: the run ends with status
``continued_as_new`` and a fresh run of the same workflow starts with those arguments
and an empty history. The runs are linked both ways (``continued_from_run_id`` /
``continued_to_run_id``), and ``get_workflow_chain(any_run_id)`` returns them all,
oldest first. The script follows the chain until its last run completes, prints it,
and checks that every run kept a short history.

Storage: ``$PYWORKFLOW_EXAMPLE_DB`` if set, else ``.pyworkflow/examples.db``.
"""

from __future__ import annotations

import asyncio
import os

from pyworkflow import (
    EventType,
    WorkflowRun,
    configure,
    continue_as_new,
    get_workflow_chain,
    get_workflow_events,
    sleep,
    start,
    step,
    workflow,
)

ITERATIONS_PER_RUN = 3


@step()
async def fetch_page(cursor: int) -> list[str]:
    return [f"item-{cursor}-{i}" for i in range(cursor % 3 + 1)]  # pretend: an API call


@step()
async def process(items: list[str]) -> int:
    print(f"  (step body) processing {items}")
    return len(items)


@workflow(name="ex14_poller")
async def poller(cursor: int, processed: int, stop_at: int) -> dict[str, int]:
    for _ in range(ITERATIONS_PER_RUN):
        if cursor >= stop_at:
            return {"cursor": cursor, "processed": processed}
        processed += await process(await fetch_page(cursor))
        cursor += 1
        await sleep("100ms")  # the polling interval
    continue_as_new(cursor, processed, stop_at)  # ends this run; raises, never returns


async def wait_for_chain(run_id: str) -> list[WorkflowRun]:
    """The whole chain once its last run has ended (and not by continuing again)."""
    while True:
        chain = await get_workflow_chain(run_id)
        last = chain[-1]
        if last.status.is_terminal and last.status != "continued_as_new":
            return chain
        await asyncio.sleep(0.05)


async def main() -> None:
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", ".pyworkflow/examples.db")
    configure(storage=f"sqlite:///{db}")

    first_id = await start(poller, 0, 0, 7)
    async with asyncio.timeout(20):
        chain = await wait_for_chain(first_id)

    print("\nchain (oldest first):")
    steps_per_run = []
    for run in chain:
        events = await get_workflow_events(run.run_id)
        steps_per_run.append(sum(e.type == EventType.STEP_COMPLETED for e in events))
        print(f"  {run.run_id}  status={run.status.value:<17} args={run.input_args}")
        print(f"      from={run.continued_from_run_id} to={run.continued_to_run_id}")
        print(f"      {len(events)} events, last: {events[-1].type.value} {events[-1].data}")
    print(f"result of the last run: {chain[-1].result}")

    assert [r.status.value for r in chain] == ["continued_as_new", "continued_as_new", "completed"]
    assert [r.input_args for r in chain] == [(0, 0, 7), (3, 6, 7), (6, 12, 7)]
    assert chain[-1].result == {"cursor": 7, "processed": 13}
    assert chain[0].continued_from_run_id is None and chain[-1].continued_to_run_id is None
    for older, newer in zip(chain, chain[1:], strict=False):
        assert older.continued_to_run_id == newer.run_id
        assert newer.continued_from_run_id == older.run_id
    # Any member of the chain finds the whole chain.
    middle = await get_workflow_chain(chain[1].run_id)
    assert [r.run_id for r in middle] == [r.run_id for r in chain]
    # Each run's history holds at most ITERATIONS_PER_RUN iterations (two steps each).
    assert steps_per_run == [6, 6, 2], steps_per_run
    last_event = (await get_workflow_events(first_id))[-1]
    assert last_event.type == EventType.WORKFLOW_CONTINUED_AS_NEW
    assert last_event.data["new_run_id"] == chain[1].run_id
    print("\nOK: 7 iterations in a chain of 3 linked runs, each with a short history")


if __name__ == "__main__":
    asyncio.run(main())
