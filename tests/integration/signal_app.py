"""The process the signal crash tests run and kill (it has the workflow's code; the
test process sends signals without it).

    python signal_app.py start STORAGE_URL COUNT   start a collector run, print RUN <id>, serve
    python signal_app.py serve STORAGE_URL RUN_ID  serve runs until RUN_ID ended, print DONE

Each step appends a line to SIGNAL_LEDGER; with SIGNAL_BLOCK_ON=<value> the step taking
that value prints BLOCKING and hangs (the test kills the process there).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from pyworkflow import LocalRuntime, configure, start, step, wait_for_run, wait_for_signal, workflow

LEDGER = Path(os.environ.get("SIGNAL_LEDGER", "ledger.txt"))


def note(line: str) -> None:
    with LEDGER.open("a") as fh:
        fh.write(line + "\n")


@step(name="sigcrash_record")
async def record(value: int) -> int:
    note(f"record {value}")
    if os.environ.get("SIGNAL_BLOCK_ON") == str(value):
        print("BLOCKING", flush=True)
        await asyncio.sleep(3600)
    return value


@workflow(name="sigcrash_collector")
async def collector(count: int) -> list[int]:
    return [await record(int(await wait_for_signal("number"))) for _ in range(count)]


async def main(argv: list[str]) -> None:
    command, url = argv[0], argv[1]
    configure(storage=url, timer_poll_interval=0.1, lease_ttl=2)
    serving = asyncio.ensure_future(LocalRuntime.default().serve())
    if command == "start":
        run_id = await start(collector, int(argv[2]))
        print(f"RUN {run_id}", flush=True)
    else:
        run_id = argv[2]
    run = await wait_for_run(run_id, timeout=60)
    print(f"DONE {run.status.value} {run.result}", flush=True)
    serving.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
