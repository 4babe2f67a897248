"""The workflows the ``pyworkflow runs`` tests run: written into a temporary project
directory as ``clirun_flows.py`` (subprocess tests import it from there with
``--module clirun_flows``; the in-process tests import the same file once)."""

from pathlib import Path

SOURCE = """
from pyworkflow import (
    FatalError,
    HookExpiredError,
    RetryableError,
    continue_as_new,
    get_context,
    hook,
    sleep,
    start_child_workflow,
    set_query_handler,
    step,
    wait_for_signal,
    workflow,
)

ATTEMPTS: dict[str, int] = {}


@step(max_retries=2, retry_delay=0.2)
async def clirun_flaky(key: str) -> str:
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if ATTEMPTS[key] == 1:
        raise RetryableError("first try fails")
    return key.upper()


@step()
async def clirun_double(x: int) -> int:
    return 2 * x


@step()
async def clirun_boom() -> None:
    raise FatalError("no way")


@workflow(tags=["cli-test"])
async def clirun_pipeline(key: str) -> str:
    value = await clirun_flaky(key)
    await sleep(0.2)
    return value


@workflow()
async def clirun_kid(x: int) -> int:
    return await clirun_double(x)


@workflow()
async def clirun_parent(n: int) -> list[int]:
    return [await start_child_workflow(clirun_kid, i) for i in range(n)]


@workflow()
async def clirun_listener(count: int) -> list:
    notes: list = []
    set_query_handler("notes", lambda last=None: notes[-last:] if last else list(notes))
    for _ in range(count):
        notes.append(await wait_for_signal("clirun_note"))
    return notes


@workflow()
async def clirun_counter(i: int) -> int:
    if i < 2:
        await continue_as_new(i + 1)
    return i


@workflow()
async def clirun_sleepy(rounds: int, pause: float) -> str:
    for i in range(rounds):
        await clirun_double(i)
        await sleep(pause)
    return "done"


@workflow()
async def clirun_fails() -> None:
    await clirun_boom()


TOKENS: list[str] = []


async def keep_token(token: str) -> None:
    TOKENS.append(token)


@workflow()
async def clirun_gatekeeper(note: str) -> str:
    get_context().log("info", f"checking [{note}]")
    try:
        await hook("clirun_late", timeout=0.2)
    except HookExpiredError:
        pass
    answer = await hook("clirun_gate", on_created=keep_token)
    return f"answer {answer['ok']}"
"""

# Starts runs and waits for them, printing one run id per line (used as a script in the
# project directory: ``python driver.py STORAGE_URL NAME [ARGS_JSON]``).
DRIVER = """
import asyncio
import json
import sys

import pyworkflow
import clirun_flows


async def main() -> None:
    pyworkflow.configure(storage=sys.argv[1])
    flow = getattr(clirun_flows, sys.argv[2])
    args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else []
    run_id = await pyworkflow.start(flow, *args)
    print(run_id, flush=True)
    chain = [run_id]
    while True:  # follow a continue-as-new chain to its end
        run = await pyworkflow.wait_for_run(chain[-1], timeout=60)
        if run.continued_to_run_id is None:
            break
        chain.append(run.continued_to_run_id)
    print(run.status.value, flush=True)


asyncio.run(main())
"""


def write_project(directory: Path) -> Path:
    """``directory`` with ``clirun_flows.py`` and ``driver.py`` in it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "clirun_flows.py").write_text(SOURCE)
    (directory / "driver.py").write_text(DRIVER)
    return directory
