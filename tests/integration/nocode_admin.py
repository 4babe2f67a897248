"""A process *without* the workflow code (it never imports ``nocode_app``).

python nocode_admin.py cancel DB RUN_ID     cancel the run, print ``CANCELLED True|False``
python nocode_admin.py serve DB SECONDS     serve DB with the local runtime; after 3 s
                                            print ``CPU seconds`` (process time spent
                                            serving), then go on serving until SECONDS
"""

from __future__ import annotations

import asyncio
import sys
import time

from pyworkflow import LocalRuntime, cancel_workflow, configure, set_log_level
from pyworkflow.core.config import get_storage


async def main(command: str, db: str, arg: str) -> None:
    configure(storage=f"sqlite:///{db}")
    if command == "cancel":
        print("CANCELLED", await cancel_workflow(arg, "stopped by an operator"), flush=True)
    elif command == "serve":
        set_log_level("INFO")  # an operator's process: its INFO lines say what it skips
        storage = get_storage()
        await storage.connect()
        serving = asyncio.ensure_future(LocalRuntime.default().serve(storage))
        cpu = time.process_time()
        await asyncio.sleep(3.0)
        print("CPU", f"{time.process_time() - cpu:.3f}", flush=True)
        await asyncio.sleep(float(arg) - 3.0)
        serving.cancel()
        await LocalRuntime.default().shutdown()
    assert "nocode_app" not in sys.modules, "this process must not have the workflow code"


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
