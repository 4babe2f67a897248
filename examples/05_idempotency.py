"""Idempotency keys, explicit run ids and tags.

* ``start(..., idempotency_key=k)`` twice returns the same run id and runs the work once,
  whether the first run is still in progress (here: suspended in a short sleep) or
  already finished; ``get_workflow_run_by_idempotency_key(k)`` finds the run.
* ``start(..., run_id="...")`` uses your id; reusing a stored id raises
  ``RunAlreadyExistsError``.
* Tags (up to 3 strings) come from ``@workflow(tags=...)`` or per run from
  ``start(..., tags=...)``, are stored on the run, and runs can be listed by tag.

Keys and ids get a random suffix so the script can run again on the same database.

Storage: ``$PYWORKFLOW_EXAMPLE_DB`` if set, else ``.pyworkflow/examples.db``.
"""

from __future__ import annotations

import asyncio
import os
import uuid

from pyworkflow import (
    RunAlreadyExistsError,
    configure,
    get_storage,
    get_workflow_run,
    get_workflow_run_by_idempotency_key,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)

charges: list[str] = []  # every real execution of the charge step


@step()
async def charge(order_id: str, amount: float) -> str:
    charges.append(order_id)
    return f"charged {amount} for {order_id}"


@workflow(name="ex05_process_order", tags=["billing"])
async def process_order(order_id: str, amount: float) -> str:
    receipt = await charge(order_id, amount)
    await sleep("0.3s")  # keeps the first run in progress while we start it again
    return receipt


async def main() -> None:
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", ".pyworkflow/examples.db")
    configure(storage=f"sqlite:///{db}")
    suffix = uuid.uuid4().hex[:8]

    # -- idempotency key -----------------------------------------------------------------
    key = f"order-ORD-123-{suffix}"
    run_id_1 = await start(process_order, "ORD-123", 10.0, idempotency_key=key)
    first = await get_workflow_run(run_id_1)
    assert first is not None
    print(f"first start:  {run_id_1} ({first.status.value})")
    run_id_2 = await start(process_order, "ORD-123", 10.0, idempotency_key=key)
    print(f"second start: {run_id_2} (same key, while the first is still in progress)")
    run = await wait_for_run(run_id_1, timeout=30)
    run_id_3 = await start(process_order, "ORD-123", 10.0, idempotency_key=key)
    print(f"third start:  {run_id_3} (same key, after it completed: {run.result!r})")
    found = await get_workflow_run_by_idempotency_key(key)
    assert found is not None
    print(f"looked up by key: {found.run_id} idempotency_key={found.idempotency_key}")

    assert first.status == "suspended"
    assert run_id_1 == run_id_2 == run_id_3 == found.run_id
    assert run.status == "completed"
    assert charges == ["ORD-123"], charges  # the work ran once

    # -- explicit run id -----------------------------------------------------------------
    my_id = f"order-ORD-456-{suffix}"
    returned = await start(process_order, "ORD-456", 20.0, run_id=my_id)
    print(f"\nexplicit run_id: start returned {returned}")
    assert returned == my_id
    try:
        await start(process_order, "ORD-456", 20.0, run_id=my_id)
    except RunAlreadyExistsError as exc:
        print(f"starting it again: RunAlreadyExistsError: {exc}")
    else:
        raise AssertionError("reusing a run id must raise RunAlreadyExistsError")
    run = await wait_for_run(my_id, timeout=30)
    assert run.status == "completed" and run.run_id == my_id

    # -- tags ----------------------------------------------------------------------------
    default_tagged = await start(process_order, "ORD-789", 5.0)
    vip_tag = f"vip-{suffix}"
    custom_tagged = await start(process_order, "ORD-790", 500.0, tags=[vip_tag, "eu"])
    a = await wait_for_run(default_tagged, timeout=30)
    b = await wait_for_run(custom_tagged, timeout=30)
    print(f"\ntags from the decorator: {a.run_id} -> {a.tags}")
    print(f"tags given to start():    {b.run_id} -> {b.tags}")
    assert a.tags == ["billing"]
    assert b.tags == [vip_tag, "eu"]
    vip_runs = await get_storage().list_runs(tag=vip_tag)
    print(f"runs tagged {vip_tag!r}: {[r.run_id for r in vip_runs]}")
    assert [r.run_id for r in vip_runs] == [custom_tagged]
    try:
        await start(process_order, "ORD-791", 1.0, tags=["a", "b", "c", "d"])
    except ValueError as exc:
        print(f"four tags: ValueError: {exc}")
    else:
        raise AssertionError("more than 3 tags must be refused")

    print("\nOK: one run per idempotency key, explicit ids honoured, tags stored")


if __name__ == "__main__":
    asyncio.run(main())
