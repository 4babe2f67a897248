"""Reading what a test's child process prints."""

from __future__ import annotations

import asyncio


async def read_line(proc: asyncio.subprocess.Process, prefix: str, limit: float = 30) -> str:
    """The first line ``proc`` prints that starts with ``prefix`` (stripped); fails with
    the child's stderr if it exits first, or after ``limit`` seconds."""
    assert proc.stdout is not None
    async with asyncio.timeout(limit):
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                err = await proc.stderr.read() if proc.stderr else b""
                raise AssertionError(f"child exited before {prefix!r}: {err.decode()[-2000:]}")
            line = raw.decode().strip()
            if line.startswith(prefix):
                return line
