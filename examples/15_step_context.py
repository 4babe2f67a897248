"""Step context: tenant data the workflow sets once and its steps read.

``TenantContext`` subclasses ``StepContext`` (a frozen Pydantic model) and the workflow
declares it with ``@workflow(context_class=TenantContext)``. The workflow calls
``await set_step_context(TenantContext(...))``; its steps call ``get_step_context()``
instead of taking tenant arguments. Each set is recorded as a ``step_context.set`` event
and stored on the run (``run.context``).

Two runs for two tenants run side by side, each with a durable sleep in the middle.
After the sleep the run is replayed from its log: ``set_step_context`` runs again but is
not recorded again, completed steps are not re-run, and the steps after the sleep still
read their own tenant's context. Halfway through, the workflow switches region with a
second ``set_step_context``. Inside a step the context is read-only:
``set_step_context`` raises ``RuntimeError`` there.

Storage: ``$PYWORKFLOW_EXAMPLE_DB`` if set, else ``.pyworkflow/examples.db``.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

from pyworkflow import (
    EventType,
    StepContext,
    configure,
    get_step_context,
    get_workflow_events,
    has_step_context,
    set_step_context,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.serialization import decode


class TenantContext(StepContext):
    tenant_id: str
    region: str = "eu-west"
    plan: str = "standard"


executions: Counter[str] = Counter()


def tenant() -> TenantContext:
    ctx = get_step_context()
    assert isinstance(ctx, TenantContext)
    return ctx


@step()
async def load_usage(month: str) -> int:
    ctx = tenant()
    executions[f"load_usage {ctx.tenant_id}"] += 1
    print(f"  (step body) load_usage  tenant={ctx.tenant_id} region={ctx.region} {month}")
    return len(ctx.tenant_id) * 100  # pretend: a query against the tenant's database


@step()
async def send_report(usage: int) -> str:
    ctx = tenant()
    executions[f"send_report {ctx.tenant_id}"] += 1
    print(f"  (step body) send_report tenant={ctx.tenant_id} region={ctx.region} {usage=}")
    try:
        await set_step_context(TenantContext(tenant_id="someone-else"))
    except RuntimeError as exc:
        print(f"  (step body) set_step_context refused: {exc}")
    return f"report for {ctx.tenant_id} ({ctx.plan}) sent from {ctx.region}"


@workflow(name="ex15_monthly_report", context_class=TenantContext)
async def monthly_report(tenant_id: str, plan: str, month: str) -> dict[str, object]:
    assert not has_step_context()  # nothing is set until the workflow sets it
    await set_step_context(TenantContext(tenant_id=tenant_id, plan=plan))
    usage = await load_usage(month)
    await sleep("300ms")  # the run suspends; it is replayed when it wakes
    await set_step_context(TenantContext(tenant_id=tenant_id, plan=plan, region="us-east"))
    sent = await send_report(usage)
    return {"usage": usage, "sent": sent}


async def main() -> None:
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", ".pyworkflow/examples.db")
    configure(storage=f"sqlite:///{db}")

    acme = await start(monthly_report, "acme", "enterprise", "2024-05")
    globex = await start(monthly_report, "globex", "standard", "2024-05")
    runs = await asyncio.gather(wait_for_run(acme, timeout=10), wait_for_run(globex, timeout=10))
    for run in runs:
        print(f"run {run.run_id}: status={run.status.value}")
        print(f"  result={run.result}")
        print(f"  stored context={run.context}")

    acme_run, globex_run = runs
    assert acme_run.status == "completed" and globex_run.status == "completed"
    assert acme_run.result == {
        "usage": 400,
        "sent": "report for acme (enterprise) sent from us-east",
    }
    assert globex_run.result == {
        "usage": 600,
        "sent": "report for globex (standard) sent from us-east",
    }
    assert acme_run.context == {"tenant_id": "acme", "region": "us-east", "plan": "enterprise"}

    events = await get_workflow_events(acme)
    # The event holds the encoded model; decode() turns it back into a TenantContext.
    sets = [decode(e.data["context"]) for e in events if e.type == EventType.STEP_CONTEXT_SET]
    print("acme's step_context.set events (decoded):")
    for value in sets:
        print(f"  {value!r}")
    assert len(sets) == 2  # recorded once each, not again on replay
    assert [c.region for c in sets] == ["eu-west", "us-east"]
    assert EventType.WORKFLOW_RESUMED in [e.type for e in events]  # it was replayed
    # Each step ran once per tenant: the replay after the sleep re-ran no completed step.
    assert all(count == 1 for count in executions.values()), executions
    assert len(executions) == 4
    print("\nOK: each tenant's steps read their own context before and after a replay")


if __name__ == "__main__":
    asyncio.run(main())
