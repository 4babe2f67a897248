"""How the server SQL backends bound a call in time and repeat it after a passing failure.

A server that restarts, fails over or is briefly overloaded refuses connections, drops
them or rolls a statement back for a moment. Each storage call of the PostgreSQL and
MySQL/MariaDB backends is therefore made in *attempts*, each bounded by a timeout (the
connection, the statements and the commit together), and repeated after a short pause
when repeating it is safe:

* no connection could be had (:class:`NotConnected`: refused, the server starting up or
  shutting down, too many connections): nothing was sent, always safe;
* the server rolled the call back (:class:`TransientFailure`: a deadlock, a
  serialization failure, a lock wait timeout): nothing was done, always safe;
* the connection dropped during the call (:class:`ConnectionLost`): safe only for calls
  that give the same outcome when repeated (``idempotent``); the non-idempotent writes
  reconcile a lost answer themselves (see :mod:`pyworkflow.storage._sql`);
* an attempt that timed out (:class:`CallTimedOut`) is not repeated: a server that does
  not answer for that long is not going to answer the next attempt sooner.

What is still failing after the last attempt is raised: every error here is a
:class:`~pyworkflow.core.exceptions.StorageUnavailableError`, which the engine treats as
an infrastructure fault (the run goes on from storage once it answers).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from pyworkflow.core.exceptions import StorageError, StorageUnavailableError
from pyworkflow.storage._pool import LoopBoundPool
from pyworkflow.storage._sql_dialect import Conn, ConnectionLost, Mode

T = TypeVar("T")

#: Pauses before the second, third and fourth attempt (about half a second in all: a
#: dropped connection or a server restarting quickly is ridden out, a server that is
#: really gone is reported fast).
RETRY_DELAYS: tuple[float, ...] = (0.05, 0.15, 0.3)
#: Default seconds one attempt may take: waiting for a pooled connection, the statements
#: and the commit (URL option ``call_timeout``). Beyond it the server is treated as gone.
CALL_TIMEOUT = 30.0
#: Default seconds to open one connection (URL option ``connect_timeout``).
CONNECT_TIMEOUT = 10.0


class NotConnected(StorageUnavailableError):
    """No connection to the server could be had: nothing was sent."""


class TransientFailure(StorageUnavailableError):
    """The server rolled the call back (deadlock, serialization failure, lock wait
    timeout): nothing was done, and trying again may succeed."""


class CallTimedOut(StorageUnavailableError):
    """An attempt took longer than its timeout: whether a write landed is unknown."""


def _repeatable(exc: StorageUnavailableError, idempotent: bool) -> bool:
    if isinstance(exc, NotConnected | TransientFailure):
        return True
    return idempotent and isinstance(exc, ConnectionLost)


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    *,
    idempotent: bool,
    per_attempt: float,
    label: str,
) -> T:
    """Run ``attempt`` until it succeeds or fails in a way that is not safe to repeat.

    Args:
        attempt: one try of the call; raises the errors of this module (or any other
            error, which passes through at once).
        idempotent: whether a call whose connection dropped midway may be repeated.
        per_attempt: seconds one attempt may take.
        label: where the data lives, for the timeout's message.

    Raises:
        StorageUnavailableError: the last attempt's failure (or :class:`CallTimedOut`).
    """
    for delay in (*RETRY_DELAYS, None):
        try:
            async with asyncio.timeout(per_attempt):
                return await attempt()
        except TimeoutError as exc:
            raise CallTimedOut(f"{label}: no answer within {per_attempt:g}s") from exc
        except StorageUnavailableError as exc:
            if delay is None or not _repeatable(exc, idempotent):
                raise
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")


class RetryingPool(LoopBoundPool):
    """Mixin of a server SQL backend: ``_call`` in bounded, repeated attempts, each on
    one connection of the loop's pool (see the module docstring).

    A backend (a :class:`~pyworkflow.storage._sql.SQLStorageBackend`) sets
    ``call_timeout`` and ``_driver_errors`` and implements the hooks (``label``,
    :meth:`_unreachable`, :meth:`_run`, :meth:`_drop`, :meth:`_expire`).
    """

    call_timeout: float = CALL_TIMEOUT
    #: The exceptions of the driver (and of the socket under it).
    _driver_errors: tuple[type[BaseException], ...] = (OSError,)

    @property
    @abstractmethod
    def label(self) -> str:
        """Where the data lives, for error messages (never includes a password)."""

    @staticmethod
    @abstractmethod
    def _unreachable(exc: BaseException) -> bool:
        """Whether a failure to open a connection is the server's passing state (down,
        restarting, full), not a configuration error (bad password, unknown database)."""

    if TYPE_CHECKING:  # implemented by SQLStorageBackend, later in a backend's MRO

        def _driver_error(self, exc: BaseException) -> StorageError: ...

    @abstractmethod
    async def _run(self, connection: Any, mode: Mode, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` on ``connection`` (in a transaction for ``TX``)."""

    @abstractmethod
    def _drop(self, connection: Any) -> None:
        """Close ``connection`` at once, so the pool never hands it out again."""

    @abstractmethod
    async def _expire(self, pool: Any) -> None:
        """Make ``pool`` replace its idle connections (they likely died too)."""

    async def _attempt(self, pool: Any, mode: Mode, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """One try of a call on one connection of ``pool``, driver errors mapped."""
        try:
            connection = await pool.acquire()
        except self._driver_errors as exc:
            error = self._cannot_connect(exc)
            if isinstance(error, NotConnected):
                await self._expire(pool)
            raise error from exc
        try:
            return await self._run(connection, mode, fn)
        except asyncio.CancelledError:
            # Cancelled mid-statement (a timeout): an answer may still be on its way and
            # the session's state is unknown, so it must not serve another call.
            self._drop(connection)
            raise
        except self._driver_errors as exc:
            error = self._driver_error(exc)
            if isinstance(error, ConnectionLost):
                # Whatever dropped this session (a restart, a failover, an admin) most
                # likely dropped its idle siblings too.
                self._drop(connection)
                await self._expire(pool)
            raise error from exc
        finally:
            try:
                await pool.release(connection)
            except Exception:  # noqa: BLE001 - the call's own outcome must win
                # Releasing a session the driver already considers broken can fail; that
                # must not replace what the call ended with: its answer, its mapped
                # error or, above all, a cancellation (a cancelled loop would otherwise
                # take it for an outage and retry forever).
                with contextlib.suppress(Exception):
                    self._drop(connection)

    def _cannot_connect(self, exc: BaseException) -> StorageError:
        """The error for a connection that could not be opened (nothing was sent)."""
        if isinstance(exc, TimeoutError):
            return CallTimedOut(f"{self.label}: cannot connect: timed out")
        if self._unreachable(exc):
            return NotConnected(f"{self.label}: cannot connect: {exc}")
        return StorageError(f"{self.label}: cannot connect: {exc}")

    async def _call(
        self, mode: Mode, fn: Callable[[Conn], Awaitable[T]], *, idempotent: bool = False
    ) -> T:
        # Opened outside the attempts' timeout: opening may migrate the schema.
        pool = await self._get_pool()
        return await call_with_retries(
            partial(self._attempt, pool, mode, fn),
            idempotent=idempotent,
            per_attempt=self.call_timeout,
            label=self.label,
        )


__all__ = [
    "CALL_TIMEOUT",
    "CONNECT_TIMEOUT",
    "RETRY_DELAYS",
    "CallTimedOut",
    "NotConnected",
    "RetryingPool",
    "TransientFailure",
    "call_with_retries",
]
