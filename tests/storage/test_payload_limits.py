"""Every backend refuses a value that is not strict JSON or is over the payload limit
before it writes anything; MySQL also knows its server's ``max_allowed_packet``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import pyworkflow
from pyworkflow import PayloadTooLargeError, SerializationError
from pyworkflow.storage.base import HOOKS, SCHEDULES, StorageBackend
from pyworkflow.storage.schemas import EventType, HookStatus, RunUpdate
from pyworkflow.testing.conformance import make_events, make_run
from pyworkflow.testing.conformance_hooks import make_hook
from pyworkflow.testing.conformance_schedules import make_schedule

LIMIT = 10_000


@pytest.fixture
def small_limit() -> Iterator[None]:
    pyworkflow.configure(max_payload_bytes=LIMIT)
    pyworkflow.get_config()  # passes the limit to the storage layer
    yield
    pyworkflow.reset_config()


def _big(size: int = LIMIT + 1) -> str:
    return '"' + "x" * size + '"'


async def test_nan_event_data_is_refused_and_nothing_is_written(storage: StorageBackend) -> None:
    (event,) = make_events("r1", 1, 1)
    event.data = {"result": [1.5, float("nan")]}
    with pytest.raises(SerializationError, match=r"holds nan at \['result'\]\[1\]"):
        await storage.create_run(make_run("r1", last_sequence=1), [event])
    assert await storage.get_run("r1") is None
    assert await storage.get_events("r1") == []


@pytest.mark.usefixtures("small_limit")
async def test_an_oversize_run_is_refused_and_nothing_is_written(storage: StorageBackend) -> None:
    with pytest.raises(PayloadTooLargeError, match="input_payload of run 'r1'") as info:
        await storage.create_run(make_run("r1", input_payload=_big()), make_events("r1", 1, 0))
    assert (info.value.limit, info.value.size) == (LIMIT, LIMIT + 3)
    assert await storage.get_run("r1") is None


@pytest.mark.usefixtures("small_limit")
async def test_an_oversize_append_is_refused_and_the_log_is_unchanged(
    storage: StorageBackend,
) -> None:
    await storage.create_run(make_run("r1", last_sequence=1), make_events("r1", 1, 1))
    (event,) = make_events("r1", 2, 1, EventType.STEP_COMPLETED)
    event.data = {"result": "y" * LIMIT}
    with pytest.raises(PayloadTooLargeError, match=r"data of event 2 \(step.completed\)"):
        await storage.append_events("r1", [event], expected_last_sequence=1)
    update = RunUpdate({"result_payload": _big()})
    with pytest.raises(PayloadTooLargeError, match="result_payload of run 'r1'"):
        await storage.append_events("r1", [], expected_last_sequence=1, update=update)
    run = await storage.get_run("r1")
    assert run is not None and run.last_sequence == 1 and run.result_payload is None
    assert [e.sequence for e in await storage.get_events("r1")] == [1]
    # At the limit is fine.
    event.data = {"result": "y" * (LIMIT - 20)}
    await storage.append_events("r1", [event], expected_last_sequence=1)


@pytest.mark.usefixtures("small_limit")
async def test_an_oversize_hook_payload_is_refused(storage: StorageBackend) -> None:
    if HOOKS not in storage.capabilities:
        pytest.skip("no hooks")
    await storage.save_hook(make_hook("h1"))
    with pytest.raises(PayloadTooLargeError, match="payload of hook"):
        await storage.update_hook(
            "h1", expected=HookStatus.PENDING, status=HookStatus.RECEIVED, payload=_big()
        )
    stored = await storage.get_hook("h1")
    assert stored is not None and stored.status == HookStatus.PENDING and stored.payload is None


@pytest.mark.usefixtures("small_limit")
async def test_oversize_schedule_data_is_refused(storage: StorageBackend) -> None:
    if SCHEDULES not in storage.capabilities:
        pytest.skip("no schedules")
    with pytest.raises(PayloadTooLargeError, match="data of schedule 's1'"):
        await storage.save_schedule(make_schedule("s1", data=_big()), expected_version=None)
    assert await storage.get_schedule("s1") is None


# -- MySQL: the server's max_allowed_packet -------------------------------------------------


@pytest.fixture
def mysql(backend_name: str, storage: StorageBackend) -> Iterator[StorageBackend]:
    if backend_name != "mysql":
        pytest.skip("MySQL only")
    pyworkflow.configure(max_payload_bytes=1 << 30)  # only the server's limit applies
    pyworkflow.get_config()
    yield storage
    pyworkflow.reset_config()


@pyworkflow.workflow(name="payload_echo")
async def echo(data: str) -> int:
    return len(data)


async def _packet() -> int:
    from tests.storage.backend_mysql import admin_execute

    ((packet,),) = await admin_execute("SELECT @@max_allowed_packet")
    return int(packet)


async def test_mysql_limit_comes_from_max_allowed_packet(mysql: StorageBackend) -> None:
    await mysql.connect()
    packet = await _packet()
    assert mysql.server_payload_limit is not None
    assert mysql.server_payload_limit.size == (packet - 1024) // 2
    assert mysql.payload_limit == mysql.server_payload_limit
    assert "max_allowed_packet" in mysql.server_payload_limit.source


async def test_mysql_oversize_start_raises_and_stores_nothing(mysql: StorageBackend) -> None:
    # Before this check a start like this failed with "Packet sequence number wrong".
    oversize = "x" * (await _packet() + 1024)
    with pytest.raises(PayloadTooLargeError, match="input_payload of run") as info:
        await pyworkflow.start(echo, oversize, storage=mysql)
    assert "max_allowed_packet" in str(info.value)
    assert info.value.limit == mysql.payload_limit.size
    assert await mysql.list_runs() == []
    # The connection survived: a normal start still works.
    run_id = await pyworkflow.start(echo, "small", storage=mysql)
    run = await pyworkflow.wait_for_run(run_id, storage=mysql, timeout=30)
    assert run.status.value == "completed"


async def test_mysql_first_write_is_checked_before_the_limit_is_known(
    mysql: StorageBackend, storage_url: str
) -> None:
    fresh = type(mysql).from_url(storage_url)  # type: ignore[attr-defined]
    try:
        assert fresh.server_payload_limit is None  # not connected yet
        run = make_run("r1", input_payload=_big(await _packet()))
        with pytest.raises(PayloadTooLargeError, match="MySQL statement of"):
            await fresh.create_run(run)
        assert await fresh.get_run("r1") is None
    finally:
        await fresh.close()


async def test_mysql_statement_over_the_packet_is_refused(mysql: StorageBackend) -> None:
    await mysql.create_run(make_run("r1", last_sequence=1), make_events("r1", 1, 1))
    each = mysql.payload_limit.size - 10  # each value fits; both in one UPDATE do not
    update = RunUpdate({"result_payload": _big(each - 2), "context_payload": _big(each - 2)})
    with pytest.raises(PayloadTooLargeError, match="MySQL statement of"):
        await mysql.append_events("r1", [], expected_last_sequence=1, update=update)
    run = await mysql.get_run("r1")
    assert run is not None and run.result_payload is None and run.context_payload is None
