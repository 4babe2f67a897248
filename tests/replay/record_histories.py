"""Re-record the golden histories (run by hand, never by the test suite).

    .venv/bin/python -m tests.replay.record_histories

Each history is recorded up to a run's suspension, so replaying it exercises both the
recorded and the live part.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from pyworkflow import start, step, workflow
from pyworkflow.core import registry
from pyworkflow.storage.memory import InMemoryStorageBackend
from tests.replay import workflows

HERE = Path(__file__).parent / "histories"


async def record(name: str, fn: Any, args: list[Any], expect: dict[str, Any]) -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(fn, *args, storage=storage)
    events = await storage.get_events(run_id)
    payload = {
        "workflow": fn.__workflow__.name,
        "args": args,
        "events": [e.to_dict() for e in events],
        "expect": expect,
    }
    (HERE / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")


async def main() -> None:
    await record(
        "order_with_gather_and_sleep",
        workflows.golden_order,
        ["ORD-1"],
        {"status": "completed", "result": {"order": "ORD-1", "count": 3}},
    )
    await record(
        "retries_exhausted_then_fallback",
        workflows.golden_recovers_from_failure,
        ["k"],
        {"status": "completed", "result": "fallback"},
    )

    # The 'changed' history is recorded from an older version of golden_changed.
    registry._workflows.pop("golden_changed")
    registry._steps.pop("golden_charge")

    @step(name="golden_charge")
    async def charge(amount: int) -> int:
        return amount

    @workflow(name="golden_changed")
    async def golden_changed(amount: int) -> int:
        from pyworkflow import sleep

        charged = await charge(amount)
        await sleep(0.01)
        return charged

    await record(
        "changed_code_is_non_deterministic",
        golden_changed,
        [5],
        {
            "status": "failed",
            "error_contains": [
                "NonDeterminismError",
                "step:golden_charge#1",
                "step:golden_refund#1",
            ],
        },
    )


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    asyncio.run(main())
