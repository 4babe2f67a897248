"""Workflows the Celery tests run on real worker processes (imported by the workers
through ``PYWORKFLOW_MODULES``). Steps append to a ledger file so tests can tell real
executions (one line each) from recorded completions (events)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from pyworkflow import hook, set_query_handler, sleep, step, wait_for_signal, workflow
from pyworkflow.context.base import current_step


def _ledger(kind: str, value: object = "") -> None:
    path = os.environ.get("CELERY_LEDGER")
    info = current_step.get()
    if path and info is not None:
        line = f"{kind} {info.step_id} {info.attempt} {os.getpid()} {value}\n"
        with Path(path).open("a") as fh:
            fh.write(line)


@step()
async def add(x: int, y: int) -> int:
    _ledger("add", x + y)
    return x + y


@step()
async def slow_double(x: int) -> int:
    """A step long enough to kill its worker in the middle of it."""
    _ledger("slow-start", x)
    await asyncio.sleep(float(os.environ.get("SLOW_STEP_SECONDS", "3")))
    _ledger("slow-done", x)
    return 2 * x


@step()
async def blocking_double(x: int) -> int:
    """A step whose body blocks its event loop (synchronous I/O in an ``async def``):
    no coroutine of its process, lease renewals included, runs until it returns."""
    _ledger("blocking-start", x)
    time.sleep(float(os.environ.get("SLOW_STEP_SECONDS", "3")))  # noqa: ASYNC251
    _ledger("blocking-done", x)
    return 2 * x


@step(force_local=True)
async def inline_square(x: int) -> int:
    _ledger("inline", x)
    return x * x


@step(max_retries=2, retry_delay=1)
async def flaky(x: int) -> int:
    info = current_step.get()
    _ledger("flaky", x)
    if info is not None and info.attempt == 1:
        raise RuntimeError("first attempt always fails")
    return x + 1000


@workflow()
async def pipeline(x: int, nap: str = "1s") -> int:
    """Several steps with a durable sleep between them."""
    a = await add(x, 1)
    await sleep(nap)
    b = await add(a, 10)
    c = await inline_square(2)
    return b + c


@workflow()
async def slow_pipeline(x: int) -> int:
    a = await add(x, 1)
    b = await slow_double(a)
    return await add(b, 0)


@workflow()
async def blocking_pipeline(x: int) -> int:
    a = await add(x, 1)
    b = await blocking_double(a)
    return await add(b, 0)


@workflow()
async def fan_out(n: int) -> list[int]:
    """Parallel steps: dispatched together, run on any workers."""
    return list(await asyncio.gather(*(slow_double(i) for i in range(n))))


@workflow()
async def retrying(x: int) -> int:
    return await flaky(x)


@workflow()
async def sleeper(seconds: int) -> str:
    await sleep(seconds)
    return "woke"


@step(force_local=True)
async def slow_inline(x: int) -> int:
    _ledger("slow-inline-start", x)
    await asyncio.sleep(float(os.environ.get("SLOW_STEP_SECONDS", "3")))
    return x


@workflow(max_recovery_attempts=0)
async def fragile(x: int) -> int:
    """Its worker dies mid-step and it may not be recovered: it must end failed."""
    return await slow_inline(x)


@workflow()
async def child_flow(x: int) -> int:
    return await add(x, 100)


@workflow()
async def parent_flow(x: int) -> int:
    from pyworkflow import start_child_workflow

    return int(await start_child_workflow(child_flow, x)) + 1


@workflow()
async def transient_flow(marker: str) -> str:
    await add(1, 2)
    await note_transient(marker)
    return marker


@step()
async def note_transient(marker: str) -> None:
    _ledger("transient", marker)


@workflow()
async def stamp(label: str) -> str:
    """Started by a schedule in the scheduler tests."""
    await add(1, 1)
    return label


@workflow()
async def five_doubles(x: int) -> int:
    """Five dispatched slow steps one after another: six workflow tasks, five step tasks."""
    for _ in range(5):
        x = await slow_double(x)
    return x


async def _note_token(token: str) -> None:
    """A hook's token, written where the test can read it (it is created on a worker)."""
    path = os.environ.get("CELERY_LEDGER")
    if path:
        line = f"hook-token - - {os.getpid()} {token}\n"

        def append() -> None:
            with Path(path).open("a") as fh:
                fh.write(line)

        await asyncio.to_thread(append)


@workflow()
async def approval(x: int) -> int:
    """Waits for a hook payload (no worker held meanwhile), then runs a step with it."""
    decision = await hook("approval", on_created=_note_token)
    return await add(x, int(decision["amount"]))


@workflow()
async def collector(count: int) -> list[int]:
    """Takes ``count`` "number" signals, each through a step on a worker, in order."""
    total: list[int] = []
    set_query_handler("total", lambda: {"taken": list(total), "sum": sum(total)})
    for _ in range(count):
        value = await wait_for_signal("number")
        total.append(await add(int(value), 0))
    return total


async def unbook(result: str, room: str) -> None:
    """A plain compensation: runs in the workflow's task."""
    _ledger("unbook", result)


@step()
async def void_payment(result: str, amount: int) -> None:
    """A compensation that is a step of its own: dispatched to a step worker."""
    _ledger("void", result)


@step(compensate=unbook)
async def book(room: str) -> str:
    return f"booking-{room}"


@step(compensate=void_payment)
async def pay(amount: int) -> str:
    return f"payment-{amount}"


@step(max_retries=0)
async def confirm(room: str) -> str:
    from pyworkflow import FatalError

    raise FatalError(f"room {room} is gone")


@workflow()
async def trip(room: str) -> str:
    await book(room)
    await pay(90)
    return await confirm(room)


# -- flow control (tests/celery/test_flow_control.py) ---------------------------------------


@step()
async def limited_work(i: int) -> int:
    """Writes when it begins and ends (wall clock), so the test can count overlaps."""
    _ledger("limited-begin", f"{i}:{time.time()}")
    await asyncio.sleep(0.4)
    _ledger("limited-end", f"{i}:{time.time()}")
    return i


@workflow(concurrency_limit=2)
async def limited(i: int) -> int:
    return await limited_work(i)


@step()
async def held_work(i: int) -> int:
    """Long enough to kill its worker while it holds its run's slot."""
    _ledger("held-begin", f"{i}:{time.time()}")
    await asyncio.sleep(float(os.environ.get("HELD_STEP_SECONDS", "0.5")))
    _ledger("held-end", f"{i}:{time.time()}")
    return i


@workflow(concurrency_limit=1)
async def one_at_a_time(i: int) -> int:
    return await held_work(i)


@workflow(rate_limit="4/2s")
async def rated_start(i: int) -> float:
    return time.time()


# Priorities (tests/celery/test_flow_control.py): a queue of their own, so RabbitMQ
# declares it with x-max-priority whatever other tests declared before.
PRIORITY_QUEUE = "test.priorities"


@workflow(queue=PRIORITY_QUEUE, priority=1)
async def routine_job(i: int) -> float:
    return time.time()


@workflow(queue=PRIORITY_QUEUE, priority=8)
async def urgent_job(i: int) -> float:
    return time.time()


@workflow(queue=PRIORITY_QUEUE)
async def unranked_job(i: int) -> float:
    return time.time()


PRIORITY_STEPS_QUEUE = "test.priority-steps"
PRIORITY_FLOWS_QUEUE = "test.priority-flows"


@step(queue=PRIORITY_STEPS_QUEUE, priority=8)
async def urgent_step(i: int) -> int:
    _ledger("urgent-step", time.time())
    return i


@step(queue=PRIORITY_STEPS_QUEUE, priority=1)
async def routine_step(i: int) -> int:
    _ledger("routine-step", time.time())
    return i


@workflow(queue=PRIORITY_FLOWS_QUEUE)
async def with_urgent_step(i: int) -> int:
    return await urgent_step(i)


@workflow(queue=PRIORITY_FLOWS_QUEUE)
async def with_routine_step(i: int) -> int:
    return await routine_step(i)


# -- routing: a queue per step or per workflow (tests/celery/test_routing.py) -------------

GPU_QUEUE = "test.gpu"
BILLING_QUEUE = "test.billing"


@step(queue=GPU_QUEUE)
async def on_gpu(x: int) -> dict[str, int]:
    """Runs only on workers consuming the gpu queue; says which process ran it."""
    return {"pid": os.getpid(), "value": x * 10}


@step()
async def on_default(x: int) -> dict[str, int]:
    return {"pid": os.getpid(), "value": x + 1}


@step(force_local=True)
async def where_am_i() -> int:
    """The pid of the process executing the workflow (force_local: runs in its task)."""
    return os.getpid()


@workflow()
async def routed_pipeline(x: int) -> dict[str, object]:
    gpu, default = await asyncio.gather(on_gpu(x), on_default(x))
    return {"gpu": gpu, "default": default, "workflow_pid": await where_am_i()}


@workflow(queue=BILLING_QUEUE)
async def billing_flow(amount: int) -> dict[str, object]:
    """Its workflow messages (start, wake after the sleep) go to the billing queue; its
    step goes to the default step queue."""
    first = await where_am_i()
    await sleep("1s")
    charged = await on_default(amount)
    return {"first_pid": first, "charged": charged, "last_pid": await where_am_i()}


@step(force_local=True)
async def slow_local(x: int) -> int:
    _ledger("slow-local-start", x)
    await asyncio.sleep(float(os.environ.get("SLOW_STEP_SECONDS", "3")))
    return os.getpid()


@workflow(queue=BILLING_QUEUE)
async def billing_slow(x: int) -> int:
    """Its worker is killed mid-step: the recovery message must go to the billing queue."""
    return await slow_local(x)
