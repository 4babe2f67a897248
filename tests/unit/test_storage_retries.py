"""The server backends' retry policy and error mapping, without a server.

What a real outage does to them is shown in ``tests/integration/test_outages.py``; here
each rule is pinned on its own: which failures are repeated inside the backend, how
often, which are raised at once, and which driver errors mean "storage unavailable".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from pyworkflow.core.exceptions import StorageError, StorageUnavailableError
from pyworkflow.storage import _sql_retry
from pyworkflow.storage._sql_dialect import ConnectionLost
from pyworkflow.storage._sql_retry import (
    CallTimedOut,
    NotConnected,
    TransientFailure,
    call_with_retries,
)

ATTEMPTS = len(_sql_retry.RETRY_DELAYS) + 1


@pytest.fixture(autouse=True)
def _no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sql_retry, "RETRY_DELAYS", (0.0,) * (ATTEMPTS - 1))


def _failing(error: Callable[[], BaseException], times: int) -> tuple[list[int], Callable]:
    calls: list[int] = []

    async def attempt() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error()
        return "done"

    return calls, attempt


async def _call(attempt: Callable, *, idempotent: bool = False, per_attempt: float = 5) -> str:
    return await call_with_retries(
        attempt, idempotent=idempotent, per_attempt=per_attempt, label="db"
    )


@pytest.mark.parametrize("error", [NotConnected, TransientFailure], ids=lambda e: e.__name__)
async def test_failures_where_nothing_was_done_are_repeated(
    error: type[StorageUnavailableError],
) -> None:
    calls, attempt = _failing(lambda: error("x"), ATTEMPTS - 1)
    assert await _call(attempt) == "done"
    assert len(calls) == ATTEMPTS
    calls, attempt = _failing(lambda: error("x"), ATTEMPTS)
    with pytest.raises(error):
        await _call(attempt)
    assert len(calls) == ATTEMPTS


async def test_a_lost_connection_is_repeated_only_for_idempotent_calls() -> None:
    calls, attempt = _failing(lambda: ConnectionLost("x"), 2)
    with pytest.raises(ConnectionLost):
        await _call(attempt)
    assert len(calls) == 1
    calls, attempt = _failing(lambda: ConnectionLost("x"), 2)
    assert await _call(attempt, idempotent=True) == "done"
    assert len(calls) == 3


@pytest.mark.parametrize(
    "error",
    [lambda: StorageError("constraint"), lambda: ValueError("bug"), lambda: CallTimedOut("x")],
    ids=["storage-error", "other", "timed-out"],
)
async def test_other_failures_are_raised_at_once(error: Callable[[], BaseException]) -> None:
    calls, attempt = _failing(error, 1)
    with pytest.raises(type(error())):
        await _call(attempt, idempotent=True)
    assert len(calls) == 1


async def test_an_attempt_that_does_not_answer_times_out_and_is_not_repeated() -> None:
    calls: list[int] = []

    async def hangs() -> str:
        calls.append(1)
        await asyncio.Event().wait()
        return "never"

    with pytest.raises(CallTimedOut, match=r"db: no answer within 0.05s"):
        await _call(hangs, idempotent=True, per_attempt=0.05)
    assert len(calls) == 1


def test_every_retry_error_is_a_storage_fault() -> None:
    from pyworkflow.engine.log import is_storage_fault

    for error in (NotConnected, TransientFailure, CallTimedOut, ConnectionLost):
        assert issubclass(error, StorageUnavailableError)
        assert is_storage_fault(error("x"))


# -- driver errors -> storage errors ---------------------------------------------------------


def test_postgres_classifies_passing_and_permanent_failures() -> None:
    asyncpg = pytest.importorskip("asyncpg")
    from pyworkflow.storage import postgres

    assert postgres._transient(asyncpg.DeadlockDetectedError("deadlock"))
    assert postgres._transient(asyncpg.SerializationError("could not serialize"))
    assert not postgres._transient(asyncpg.UniqueViolationError("dup"))
    for passing in (
        ConnectionRefusedError(111, "refused"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.TooManyConnectionsError("too many clients"),
        asyncpg.AdminShutdownError("terminating connection"),
    ):
        assert postgres._unreachable(passing), passing
    assert not postgres._unreachable(asyncpg.InvalidPasswordError("bad password"))
    assert not postgres._unreachable(asyncpg.InvalidCatalogNameError("no such database"))


def test_postgres_connection_failures_map_to_typed_errors() -> None:
    pytest.importorskip("asyncpg")
    import asyncpg

    from pyworkflow.storage.postgres import PostgresStorageBackend

    backend = PostgresStorageBackend("postgresql://app:hunter2@db/orders")
    assert isinstance(backend._cannot_connect(ConnectionRefusedError(111, "x")), NotConnected)
    assert isinstance(backend._cannot_connect(TimeoutError()), CallTimedOut)
    bad = backend._cannot_connect(asyncpg.InvalidPasswordError("password failed"))
    assert type(bad) is StorageError and "hunter2" not in str(bad)
    assert isinstance(backend._driver_error(asyncpg.DeadlockDetectedError("x")), TransientFailure)


def test_mysql_classifies_passing_and_permanent_failures() -> None:
    aiomysql = pytest.importorskip("aiomysql")
    from pyworkflow.storage import mysql

    assert mysql._transient(aiomysql.OperationalError(1213, "Deadlock found"))
    assert mysql._transient(aiomysql.OperationalError(1205, "Lock wait timeout exceeded"))
    assert not mysql._transient(aiomysql.OperationalError(2013, "Lost connection"))
    assert mysql._unreachable(aiomysql.OperationalError(2003, "Can't connect"))
    assert mysql._unreachable(aiomysql.OperationalError(1040, "Too many connections"))
    assert not mysql._unreachable(aiomysql.OperationalError(1045, "Access denied"))
    backend = mysql.MySQLStorageBackend("mysql://app:hunter2@db/orders")
    assert isinstance(backend._driver_error(aiomysql.OperationalError(1213, "x")), TransientFailure)
    assert isinstance(backend._driver_error(aiomysql.OperationalError(2013, "x")), ConnectionLost)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://db/app?call_timeout=2.5&connect_timeout=1",
        "mysql://root@db/app?call_timeout=2.5&connect_timeout=1",
    ],
)
def test_sql_timeouts_come_from_the_url(url: str) -> None:
    pytest.importorskip("asyncpg" if url.startswith("postgresql") else "aiomysql")
    from pyworkflow.storage.config import storage_from_url

    backend = storage_from_url(url)
    assert (backend.call_timeout, backend.connect_timeout) == (2.5, 1)  # type: ignore[attr-defined]
    default = storage_from_url(url.split("?")[0])
    assert default.call_timeout == _sql_retry.CALL_TIMEOUT  # type: ignore[attr-defined]


def test_redis_maps_unreachable_servers_to_storage_unavailable() -> None:
    pytest.importorskip("redis")
    from redis import exceptions

    from pyworkflow.storage.redis import RedisStorageBackend

    backend = RedisStorageBackend("redis://:hunter2@127.0.0.1:1/0")
    for raised, expected in (
        (exceptions.ConnectionError("Error 111 connecting"), StorageUnavailableError),
        (exceptions.TimeoutError("Timeout reading from socket"), StorageUnavailableError),
        (exceptions.BusyLoadingError("loading"), StorageUnavailableError),
        (exceptions.ReadOnlyError("READONLY replica"), StorageUnavailableError),
        (exceptions.AuthenticationError("invalid password"), StorageError),
        (exceptions.ResponseError("ERR script"), StorageError),
    ):
        with pytest.raises(StorageError) as info, backend._errors():
            raise raised
        assert type(info.value) is expected, raised
        assert "hunter2" not in str(info.value)


async def test_redis_client_bounds_connecting_and_replies() -> None:
    pytest.importorskip("redis")
    from pyworkflow.storage.redis import RedisStorageBackend
    from pyworkflow.storage.redis.connection import CONNECT_TIMEOUT, SOCKET_TIMEOUT

    backend = RedisStorageBackend("redis://127.0.0.1:1/0")
    kwargs = backend._make_client().connection_pool.connection_kwargs
    assert (kwargs["socket_connect_timeout"], kwargs["socket_timeout"]) == (
        CONNECT_TIMEOUT,
        SOCKET_TIMEOUT,
    )
    custom = RedisStorageBackend("redis://127.0.0.1:1/0?socket_timeout=2")
    assert custom._make_client().connection_pool.connection_kwargs["socket_timeout"] == 2
