"""Retries: RetryableError (with ``retry_after``), FatalError, retry-delay policies and
step timeouts, each visible as attempts in the event log.

One workflow calls five steps:

* ``call_api`` raises ``RetryableError(..., retry_after="0.3s")`` once: the error's own
  delay wins over the step's policy;
* ``sync_inventory`` fails once with a plain exception under ``retry_delay="exponential"``
  (1 s before attempt 2);
* ``notify_partner`` fails twice under ``retry_delay=[0.1, 0.2]`` (one delay per attempt);
* ``slow_report`` takes too long on its first attempt and hits ``timeout=0.2``
  (``StepTimeoutError``, which is retried);
* ``charge_card`` raises ``FatalError``: no retry at all; the workflow catches it.

A second workflow lets a step exhaust ``max_retries`` and shows the run ``failed``.

Every retry wait is durable: the run is stored ``suspended`` until the retry is due and
the local runtime resumes it. Total waiting is about 2 s.

Storage: ``$PYWORKFLOW_EXAMPLE_DB`` if set, else ``.pyworkflow/examples.db``.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

from pyworkflow import (
    Event,
    EventType,
    FatalError,
    RetryableError,
    configure,
    get_workflow_events,
    start,
    step,
    wait_for_run,
    workflow,
)

calls: Counter[str] = Counter()  # step bodies executed, per step name


@step(max_retries=3)
async def call_api(endpoint: str) -> str:
    calls["call_api"] += 1
    if calls["call_api"] == 1:
        raise RetryableError("HTTP 503 from upstream", retry_after="0.3s")
    return f"GET {endpoint}: 200"


@step(max_retries=2, retry_delay="exponential")
async def sync_inventory() -> int:
    calls["sync_inventory"] += 1
    if calls["sync_inventory"] == 1:
        raise ConnectionError("inventory service unreachable")  # any exception is retried
    return 42


@step(max_retries=3, retry_delay=[0.1, 0.2])
async def notify_partner() -> str:
    calls["notify_partner"] += 1
    if calls["notify_partner"] <= 2:
        raise RetryableError(f"partner busy (call {calls['notify_partner']})")
    return "partner notified"


@step(max_retries=1, retry_delay=0.1, timeout=0.2)
async def slow_report() -> str:
    calls["slow_report"] += 1
    if calls["slow_report"] == 1:
        await asyncio.sleep(5)  # cut off by the 0.2 s timeout
    return "report ready"


@step(max_retries=5)
async def charge_card(amount: float) -> str:
    calls["charge_card"] += 1
    raise FatalError("card declined", code="do_not_honor")


@workflow(name="ex02_retries")
async def order_with_retries(amount: float) -> dict[str, object]:
    api = await call_api("/orders")
    stock = await sync_inventory()
    partner = await notify_partner()
    report = await slow_report()
    try:
        payment = await charge_card(amount)
    except FatalError as exc:
        payment = f"not charged: {exc}"
    return {"api": api, "stock": stock, "partner": partner, "report": report, "payment": payment}


@step(max_retries=2, retry_delay=0.05)
async def always_down() -> None:
    calls["always_down"] += 1
    raise RetryableError("still down")


@workflow(name="ex02_retries_exhausted")
async def gives_up() -> None:
    await always_down()


def print_log(events: list[Event]) -> None:
    for e in events:
        extra = ""
        if "attempt" in e.data:
            extra = f"{e.data['step_name']:<15} attempt={e.data['attempt']}"
        if e.type == EventType.STEP_FAILED:
            error = e.data["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            extra += f" fatal={e.data['fatal']} will_retry={e.data['will_retry']} ({message})"
        if e.type == EventType.STEP_RETRYING:
            extra += f" delay={e.data['delay_seconds']}s"
        print(f"  {e.sequence:>3}  {e.type.value:<20} {extra}")


def attempts_of(events: list[Event], step_name: str) -> list[int]:
    return [
        e.data["attempt"]
        for e in events
        if e.type == EventType.STEP_STARTED and e.data["step_name"] == step_name
    ]


def retry_delays_of(events: list[Event], step_name: str) -> list[float]:
    return [
        e.data["delay_seconds"]
        for e in events
        if e.type == EventType.STEP_RETRYING and e.data["step_name"] == step_name
    ]


async def main() -> None:
    db = os.environ.get("PYWORKFLOW_EXAMPLE_DB", ".pyworkflow/examples.db")
    configure(storage=f"sqlite:///{db}")

    run_id = await start(order_with_retries, 19.99)
    run = await wait_for_run(run_id, timeout=30)
    events = await get_workflow_events(run_id)
    print(f"run {run_id}: status={run.status.value}")
    print(f"result: {run.result}")
    print("event log:")
    print_log(events)

    assert run.status == "completed"
    assert run.result["payment"] == "not charged: card declined"
    # retry_after on the error overrides the step's exponential policy
    assert attempts_of(events, "call_api") == [1, 2]
    assert retry_delays_of(events, "call_api") == [0.3]
    # "exponential": 1 s after the first failure
    assert attempts_of(events, "sync_inventory") == [1, 2]
    assert retry_delays_of(events, "sync_inventory") == [1.0]
    # a list gives one delay per attempt
    assert attempts_of(events, "notify_partner") == [1, 2, 3]
    assert retry_delays_of(events, "notify_partner") == [0.1, 0.2]
    # the timeout cut attempt 1 short; attempt 2 succeeded
    assert attempts_of(events, "slow_report") == [1, 2]
    timeout_failure = next(
        e
        for e in events
        if e.type == EventType.STEP_FAILED and e.data["step_name"] == "slow_report"
    )
    assert "StepTimeoutError" in str(timeout_failure.data["error"])
    # FatalError: a single attempt despite max_retries=5
    assert attempts_of(events, "charge_card") == [1]
    assert calls["charge_card"] == 1
    assert any(
        e.type == EventType.STEP_FAILED and e.data["step_name"] == "charge_card" and e.data["fatal"]
        for e in events
    )
    # each step body ran once per recorded attempt
    for name in ("call_api", "sync_inventory", "notify_partner", "slow_report"):
        assert calls[name] == len(attempts_of(events, name)), name

    run_id = await start(gives_up)
    run = await wait_for_run(run_id, timeout=30)
    events = await get_workflow_events(run_id)
    print(f"\nrun {run_id}: status={run.status.value} error={run.error!r}")
    print("event log:")
    print_log(events)
    assert run.status == "failed"
    assert "still down" in (run.error or "")
    assert attempts_of(events, "always_down") == [1, 2, 3]  # first try + max_retries=2
    assert events[-1].type == EventType.WORKFLOW_FAILED
    print("\nOK: retry_after, exponential, list delays, timeout and FatalError all behaved")


if __name__ == "__main__":
    asyncio.run(main())
