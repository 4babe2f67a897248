"""The file backend's flow-control gates: one JSON file per gate, named by the hash of its
key, replaced under a striped file lock, so a compare-and-set holds across processes."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from pyworkflow.storage.file import FileStorageBackend
from pyworkflow.storage.schemas import GateRecord


@pytest.fixture(autouse=True)
def _only_when_file_selected(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--backend", default=None) not in (None, "file"):
        pytest.skip("--backend selects another storage backend")


async def test_any_key_is_one_hashed_file_in_gates(tmp_path: Path) -> None:
    # A percent-encoded name would be far over the 255-byte limit of a file name.
    key = "concurrency:wf:" + "/é\\:*?" * 40
    storage = FileStorageBackend(tmp_path)
    assert await storage.save_gate(GateRecord(key, '{"n": 1}'), expected_version=None)
    [path] = (tmp_path / "gates").iterdir()
    assert len(path.name) == 64 + len(".json")
    assert json.loads(path.read_text(encoding="utf-8"))["key"] == key
    stored = await FileStorageBackend(tmp_path).get_gate(key)  # reopened
    assert stored is not None and stored.key == key and stored.version == 1


# Each child adds 1 to the counter in the gate's data ROUNDS times, retrying lost
# compare-and-sets: an update lost between processes would show in the final count. The
# children start counting together (a line on stdin), so their saves overlap.
_CHILD = r"""
import asyncio, json, sys
from pyworkflow.storage.file import FileStorageBackend

async def main(path, rounds):
    storage = FileStorageBackend(path)
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(rounds):
        while True:
            gate = await storage.get_gate("counter")
            gate.data = json.dumps({"n": json.loads(gate.data)["n"] + 1})
            if await storage.save_gate(gate, expected_version=gate.version):
                break

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_compare_and_set_holds_across_processes(tmp_path: Path) -> None:
    storage = FileStorageBackend(tmp_path)
    assert await storage.save_gate(GateRecord("counter", '{"n": 0}'), expected_version=None)
    processes, rounds = 3, 100
    pipe = asyncio.subprocess.PIPE
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CHILD, str(tmp_path), str(rounds), stdin=pipe, stdout=pipe
        )
        for _ in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert await asyncio.wait_for(child.stdout.readline(), 60) == b"ready\n"
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
        await asyncio.wait_for(asyncio.gather(*(c.communicate() for c in children)), 120)
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    assert [c.returncode for c in children] == [0] * processes
    stored = await storage.get_gate("counter")
    assert stored is not None
    assert json.loads(stored.data) == {"n": processes * rounds}
    assert stored.version == 1 + processes * rounds
