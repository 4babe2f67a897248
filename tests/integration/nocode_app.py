"""The process *with* the workflow code, for tests of control from processes without it.

    python nocode_app.py run DB                 start a run that sleeps 60 s, print ``RUN id``,
                                                serve until it ends, print ``END status``
    python nocode_app.py start DB SECONDS       start a run that sleeps SECONDS, print its id
                                                and exit (the run stays suspended in DB)
    python nocode_app.py wait DB RUN_ID         serve DB until the run ends, print ``END status``

The other side of these tests (``nocode_admin.py``) never imports this module.
"""

from __future__ import annotations

import asyncio
import sys

from pyworkflow import LocalRuntime, configure, get_workflow_run, sleep, start, workflow


@workflow(name="nocode_napper")
async def napper(seconds: float) -> str:
    await sleep(seconds)
    return "woke"


async def _serve_until_ended(run_id: str, limit: float = 60.0) -> None:
    serving = asyncio.ensure_future(LocalRuntime.default().serve())
    try:
        async with asyncio.timeout(limit):
            while True:
                run = await get_workflow_run(run_id)
                if run is not None and run.status.is_terminal:
                    print("END", run.status.value, flush=True)
                    return
                await asyncio.sleep(0.05)
    finally:
        serving.cancel()


async def main(command: str, db: str, arg: str | None) -> None:
    configure(storage=f"sqlite:///{db}")
    if command == "run":
        run_id = await start(napper, 60.0)
        print("RUN", run_id, flush=True)
        await _serve_until_ended(run_id)
    elif command == "start":
        run_id = await start(napper, float(arg or "1"))
        print("RUN", run_id, flush=True)
    elif command == "wait":
        assert arg is not None
        await _serve_until_ended(arg)
    await LocalRuntime.default().shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
