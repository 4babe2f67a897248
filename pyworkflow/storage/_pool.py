"""A connection pool bound to the event loop that opened it (server SQL backends).

The same backend object may be used from one event loop after another (a synchronous
``start()`` on a private loop, then ``asyncio.run``); driver pools belong to one loop, so
a new loop gets a new pool and the old one is dropped without a goodbye.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import abstractmethod
from typing import Any


class LoopBoundPool:
    """Mixin: ``_get_pool()`` returns this loop's pool, opening it on first use."""

    _pool: Any = None
    _pool_loop: asyncio.AbstractEventLoop | None = None
    _lock: asyncio.Lock | None = None
    _lock_loop: asyncio.AbstractEventLoop | None = None

    @abstractmethod
    async def _open_pool(self) -> Any:
        """Open a driver pool (and prepare the schema) on the running loop."""

    def _get_lock(self, loop: asyncio.AbstractEventLoop) -> asyncio.Lock:
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def _get_pool(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._pool_loop is loop:
            return self._pool
        async with self._get_lock(loop):
            if self._pool is None or self._pool_loop is not loop:
                self._abandon_pool()
                self._pool = await self._open_pool()
                self._pool_loop = loop
        return self._pool

    def _abandon_pool(self) -> None:
        pool, self._pool, self._pool_loop = self._pool, None, None
        if pool is not None:
            # Its loop is gone (or not running): close the sockets without a goodbye.
            with contextlib.suppress(Exception):
                pool.terminate()

    async def connect(self) -> None:
        await self._get_pool()
