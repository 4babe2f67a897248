"""DynamoDB backend for the conformance suite, run against moto (an emulator, not AWS).

One moto server process serves the whole test session. It is started lazily by the first
test that needs it (so ``--backend sqlite`` never starts it), binds to 127.0.0.1 on a port
the OS picks, and stops at interpreter exit (``atexit``); it also exits by itself when
the test process dies, because it watches its stdin pipe. Each test gets a fresh table
named from a uuid, deleted afterwards.

Moto's DynamoDB model is not thread-safe (a cancelled transaction restores a deep copy of
the whole table, which can undo a concurrent request's write), while real DynamoDB applies
each conditional write and transaction atomically. The server therefore handles one
request at a time (a lock around moto's WSGI app); connections are still accepted in
parallel.

Credentials are dummies, given to an explicit ``aioboto3.Session`` (and carried in the
URL for reopening, e.g. by the cross-process tests); the process environment is not
touched.

If you prefer a pytest fixture over the lazy singleton, a ``conftest.py`` can add::

    @pytest.fixture(scope="session")
    def moto_endpoint() -> Iterator[str]:
        yield backend_dynamodb.moto_endpoint()
        backend_dynamodb.stop_moto()
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

NAME = "dynamodb"
REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"

# Runs in the server process: moto's app behind a lock, on a port the OS chooses.
_SERVER_SCRIPT = r"""
import os, sys, threading
from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app,
)

app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()

def serialized(environ, start_response):
    with lock:
        return list(app(environ, start_response))

server = make_server("127.0.0.1", 0, serialized, threaded=True, request_handler=MotoRequestHandler)
print(server.server_address[1], flush=True)

def watch_parent():
    sys.stdin.read()  # returns at EOF: the test process closed the pipe or died
    os._exit(0)

threading.Thread(target=watch_parent, daemon=True).start()
server.serve_forever()
"""

_lock = threading.Lock()
_server: subprocess.Popen[str] | None = None
_endpoint: str | None = None


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def moto_endpoint() -> str:
    """The session's moto server URL, starting the server on first use."""
    global _server, _endpoint
    with _lock:
        if _endpoint is not None and _server is not None and _server.poll() is None:
            return _endpoint
        try:
            import aioboto3  # noqa: F401
            import moto.server  # noqa: F401
        except ImportError as exc:
            _unavailable(
                f"DynamoDB tests need aioboto3 and moto[server] ({exc}); install them with: "
                "pip install 'pyworkflow-engine[dynamodb]' 'moto[server]'"
            )
        proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()  # the port, once the socket is bound
        if not line.isdigit():
            proc.kill()
            proc.wait()
            _unavailable(f"the moto server did not start (printed {line!r})")
        _server, _endpoint = proc, f"http://127.0.0.1:{line}"
        return _endpoint


def stop_moto() -> None:
    """Stop the session's moto server (registered with ``atexit``)."""
    global _server, _endpoint
    with _lock:
        proc, _server, _endpoint = _server, None, None
    if proc is None:
        return
    if proc.stdin is not None:
        with suppress(OSError):
            proc.stdin.close()  # the server exits at EOF
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


atexit.register(stop_moto)


_session: Any = None


def emulator_session() -> Any:
    """An aioboto3 session with the emulator's dummy credentials (no env changes).

    Shared by the tests: a session caches the parsed service model, which a fresh one
    would load again (a large JSON file) for every test.
    """
    global _session
    if _session is None:
        import aioboto3

        _session = aioboto3.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
        )
    return _session


def table_url(table: str, endpoint: str) -> str:
    return (
        f"dynamodb://{ACCESS_KEY}:{SECRET_KEY}@{table}"
        f"?region={REGION}&endpoint_url={quote(endpoint, safe='')}"
    )


def new_table_name() -> str:
    return f"pwf-test-{uuid.uuid4().hex}"


async def delete_table(table: str, endpoint: str) -> None:
    async with emulator_session().client(
        "dynamodb", region_name=REGION, endpoint_url=endpoint
    ) as client:
        with suppress(client.exceptions.ResourceNotFoundException):
            await client.delete_table(TableName=table)


def _url_resolves() -> bool:
    # The persistence and cross-process tests rebuild the backend with storage_from_url,
    # which needs the "dynamodb" scheme in pyworkflow.storage.config's registry.
    from pyworkflow.storage.config import known_schemes

    return NAME in known_schemes()


@asynccontextmanager
async def open_backend(tmp_path: Path) -> AsyncIterator[tuple[Any, str | None]]:  # noqa: ARG001
    endpoint = moto_endpoint()
    from pyworkflow.storage.dynamodb import DynamoDBStorageBackend

    table = new_table_name()
    backend = DynamoDBStorageBackend(table, REGION, endpoint, session=emulator_session())
    try:
        yield backend, table_url(table, endpoint) if _url_resolves() else None
    finally:
        await backend.close()
        await delete_table(table, endpoint)


async def corrupt_event(backend: Any, run_id: str, sequence: int, how: str) -> None:
    """Damage the event's item with the backend's own client (``UpdateItem``)."""
    from pyworkflow.storage.dynamodb.keys import _event_sk, _run_pk
    from pyworkflow.testing.conformance_corruption import damaged_field

    field, value = damaged_field(how)
    client = await backend._get_client()
    await client.update_item(
        TableName=backend.table_name,
        Key={"PK": {"S": _run_pk(run_id)}, "SK": {"S": _event_sk(sequence)}},
        # Compressed data lives in data_z: removing it makes "data" the event's data.
        UpdateExpression="SET #f = :v REMOVE data_z",
        ExpressionAttributeNames={"#f": field},
        ExpressionAttributeValues={":v": {"S": value}},
    )
