"""The connection side of the backend: client, pool, retries, error mapping.

Retries and reconnection
------------------------
redis-py reconnects by itself. The backend's client (unless you pass your own
``client``) is configured to retry every command up to :data:`RETRIES` times with a
short jittered exponential backoff on ``ConnectionError`` (refused, dropped, the server
still loading its data), so a connection killed by the server (``CLIENT KILL``, an idle
timeout, a failover) does not break the next call, and a server that is really gone is
reported within about a second. Bad credentials (``AuthenticationError``, a
``ConnectionError`` subclass) are not retried, nor is a timeout: connecting and each
reply are bounded by :data:`CONNECT_TIMEOUT` and :data:`SOCKET_TIMEOUT` seconds (URL
``socket_connect_timeout`` / ``socket_timeout``), so a server that stops answering
never hangs a caller, and a server that does not answer within that long is not
retried. Retrying is only safe if every command is idempotent, and a
command whose connection died after Redis ran it is *ambiguous*: it may have applied.
Reads and ``acquire_lease``/``renew_leases``/``release_lease``/``claim_due_runs`` are
idempotent for a given owner (a retried acquire finds its own lease and succeeds again).
``create_run`` and ``append_events`` are not naturally: a retried append would find
its own events already there and report a *false* :class:`SequenceConflictError` (the
engine would then drop a run it still owns until lease recovery), and a retried create
would raise a false :class:`RunAlreadyExistsError`. Both therefore send a random write
token that the script stores in the run hash (``_w``); when the fence fails but the
run's token is the caller's and the sequence is exactly where this write would have put
it, the script reports success instead of a conflict. A genuine conflicting writer still
gets the conflict. Errors that survive the retries are raised as
:class:`~pyworkflow.core.exceptions.StorageUnavailableError` when the server could not
be reached, dropped the connection, did not answer in time or cannot take writes (a
replica after a failover), else as :class:`~pyworkflow.core.exceptions.StorageError`.

Connections come from a *blocking* pool of :data:`MAX_CONNECTIONS` (URL
``max_connections``): more concurrent calls than connections wait up to
:data:`POOL_TIMEOUT` seconds (URL ``timeout``) for one, instead of failing with redis-py's
"Too many connections". Every connection is named (``CLIENT SETNAME``, see
:attr:`RedisStorageBackend.client_name`), so ``CLIENT LIST`` shows which belong to
pyworkflow. Scripts that return many records (``list_runs``, ``list_stale_runs``,
``get_events``) return them as one JSON document, decoded in C, rather than thousands of
RESP items parsed in Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import secrets
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import AuthenticationError, ReadOnlyError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pyworkflow.core.exceptions import (
    ConfigurationError,
    StorageError,
    StorageUnavailableError,
)
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.redis.scripts import Scripts
from pyworkflow.storage.redis.url import DEFAULT_PREFIX, DEFAULT_URL, parse_url

#: Attempts after the first on a connection error (see "Retries" above), with jittered
#: exponential backoff from RETRY_BASE s capped at RETRY_CAP s: about 0.6 to 1.2 s in
#: all, enough to ride out a dropped connection, short enough to fail fast when the
#: server is gone (the engine then resumes its runs once storage answers).
RETRIES = 4
RETRY_BASE = 0.05
RETRY_CAP = 0.5
#: Default seconds to open a connection (URL ``socket_connect_timeout``).
CONNECT_TIMEOUT = 10.0
#: Default seconds to wait for a reply (URL ``socket_timeout``).
SOCKET_TIMEOUT = 30.0
MIN_SERVER_VERSION = (6, 2)
#: Pooled connections per backend (URL ``max_connections``). Redis runs commands one at
#: a time, so a few dozen connections already saturate it; more callers wait their turn.
MAX_CONNECTIONS = 64
#: Seconds a call waits for a free pooled connection before failing (URL ``timeout``).
POOL_TIMEOUT = 30.0
_T = TypeVar("_T")


class _Retry(Retry):
    """redis-py's retry, except on bad credentials: ``AuthenticationError`` subclasses
    ``ConnectionError`` and would otherwise be retried with backoff, delaying a
    configuration error by seconds for nothing."""

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[_T]],
        fail: Callable[[Exception], Any] | Callable[[Exception, int], Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> _T:
        def retryable(error: Exception) -> bool:
            if isinstance(error, AuthenticationError):
                return False
            return is_retryable is None or is_retryable(error)

        return await super().call_with_retry(do, fail, retryable, with_failure_count)


# redis-py < 6 has no ``is_retryable`` hook (nor retries the handshake): plain Retry there.
_RETRY_CLASS = (
    _Retry if "is_retryable" in inspect.signature(Retry.call_with_retry).parameters else Retry
)


def _unavailable(exc: RedisError) -> bool:
    """Whether the server could not be reached, dropped the call, did not answer or
    cannot take writes: a passing state, unlike bad credentials or a script error."""
    if isinstance(exc, AuthenticationError):
        return False
    return isinstance(exc, RedisConnectionError | RedisTimeoutError | ReadOnlyError)


class RedisConnection(StorageBackend):
    """What every part of :class:`RedisStorageBackend` builds on: the parsed URL, the
    key prefix, the loop-bound client with its scripts, and the error mapping.

    Args:
        url: see :class:`RedisStorageBackend`.
        prefix: see :class:`RedisStorageBackend`.
        client: see :class:`RedisStorageBackend`.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        prefix: str = DEFAULT_PREFIX,
        client: aioredis.Redis | None = None,
    ) -> None:
        parsed = parse_url(url, prefix)
        self.prefix = parsed.prefix
        self._url = parsed.url
        self.url = parsed.safe
        self._base = "{" + self.prefix + "}:"
        #: The CLIENT SETNAME of this backend's connections (find them in CLIENT LIST).
        self.client_name = (
            parsed.client_name
            if parsed.client_name is not None
            else f"pyworkflow-{secrets.token_hex(6)}"
        )
        self._external = client
        self._redis: aioredis.Redis | None = client
        self._scripts: Scripts | None = Scripts(client) if client is not None else None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _make_client(self) -> aioredis.Redis:
        retry = _RETRY_CLASS(
            EqualJitterBackoff(cap=RETRY_CAP, base=RETRY_BASE),
            RETRIES,
            supported_errors=(RedisConnectionError,),
        )
        options: dict[str, Any] = {
            "retry": retry,
            "retry_on_error": [RedisConnectionError],
            "client_name": self.client_name,
            "max_connections": MAX_CONNECTIONS,
            "timeout": POOL_TIMEOUT,
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "socket_timeout": SOCKET_TIMEOUT,
        }
        # A blocking pool: more concurrent calls than connections wait for one, where
        # redis-py's default pool raises "Too many connections". (URL options win.)
        pool = aioredis.BlockingConnectionPool.from_url(self._url, **options)
        return aioredis.Redis.from_pool(pool)

    def _client(self) -> tuple[aioredis.Redis, Scripts]:
        """The client and scripts for the running loop (built on first use)."""
        if self._external is None:
            loop = asyncio.get_running_loop()
            if self._redis is None or self._loop is not loop:
                # A client from a previous (now finished) loop cannot be awaited here;
                # its sockets die with that loop.
                self._redis = self._make_client()
                self._scripts = Scripts(self._redis)
                self._loop = loop
        assert self._redis is not None and self._scripts is not None
        return self._redis, self._scripts

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except RedisError as exc:
            where = f"redis ({self.url}, prefix {self.prefix!r})"
            if _unavailable(exc):
                raise StorageUnavailableError(f"{where}: {exc}") from exc
            raise StorageError(f"{where}: {exc}") from exc

    def _key(self, *parts: str) -> str:
        """``{prefix}:part:part...`` (internal, also used by tests and tooling)."""
        return self._base + ":".join(parts)

    async def connect(self) -> None:
        """Check the server answers and is recent enough; idempotent."""
        client, _ = self._client()
        with self._errors():
            info = await client.info("server")
        version = str(info.get("redis_version", "0"))
        numbers = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if numbers < MIN_SERVER_VERSION:
            raise ConfigurationError(
                f"Redis {version} at {self.url} is too old: pyworkflow needs Redis >= "
                f"{'.'.join(map(str, MIN_SERVER_VERSION))}"
            )

    async def close(self) -> None:
        if self._external is not None:
            return
        client, loop = self._redis, self._loop
        self._redis, self._scripts, self._loop = None, None, None
        # A client built on another (finished) loop cannot be closed from this one; its
        # sockets went with that loop.
        if client is not None and loop is asyncio.get_running_loop():
            with self._errors():
                await client.aclose()
