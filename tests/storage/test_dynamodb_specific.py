"""DynamoDB backend behaviour beyond the shared contract: table setup, chunked and
compressed data, transaction limits and error mapping, index re-checks, cancellation
requests, hook items, signal inboxes and flow-control gates, URL parsing.

These tests run against moto (an emulator started by ``backend_dynamodb``, on
127.0.0.1), not against AWS: they show the backend's logic, not DynamoDB's own
consistency or throughput behaviour.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pyworkflow.core.exceptions import (
    ConfigurationError,
    HistoryCorruptedError,
    PayloadTooLargeError,
    RunAlreadyExistsError,
    SequenceConflictError,
    StorageError,
    WorkflowNotFoundError,
)
from pyworkflow.storage.schemas import EventType, GateRecord, HookStatus, RunStatus, RunUpdate
from pyworkflow.testing.conformance import at, make_events, make_run
from pyworkflow.testing.conformance_hooks import make_hook
from pyworkflow.testing.conformance_workers import make_worker
from tests.storage import backend_dynamodb as moto

pytest.importorskip("aioboto3")

from pyworkflow.storage.dynamodb import (  # noqa: E402 - after the importorskip
    CHUNK_BYTES,
    INDEX_HOOKS,
    DynamoDBStorageBackend,
    add_index_request,
    table_definition,
)
from pyworkflow.storage.dynamodb.run_items import _run_item  # noqa: E402


@pytest.fixture(autouse=True)
def _only_when_dynamodb_selected(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--backend", default=None) not in (None, "dynamodb"):
        pytest.skip("--backend selects another storage backend")


@pytest.fixture
def endpoint() -> str:
    return moto.moto_endpoint()


@pytest.fixture
async def table(endpoint: str) -> AsyncIterator[str]:
    name = moto.new_table_name()
    yield name
    await moto.delete_table(name, endpoint)


@pytest.fixture
async def backend(table: str, endpoint: str) -> AsyncIterator[DynamoDBStorageBackend]:
    storage = DynamoDBStorageBackend(table, moto.REGION, endpoint, session=moto.emulator_session())
    yield storage
    await storage.close()


@pytest.fixture
async def raw(endpoint: str) -> AsyncIterator[Any]:
    """A plain DynamoDB client on the emulator, to look at the stored items."""
    async with moto.emulator_session().client(
        "dynamodb", region_name=moto.REGION, endpoint_url=endpoint
    ) as client:
        yield client


async def items_of(raw: Any, table: str, run_id: str) -> list[dict[str, Any]]:
    response = await raw.query(
        TableName=table,
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": f"RUN#{run_id}"}},
        ConsistentRead=True,
    )
    return list(response["Items"])


async def hook_items(raw: Any, table: str, token_hash: str) -> list[dict[str, Any]]:
    response = await raw.query(
        TableName=table,
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": f"HOOK#{token_hash}"}},
        ConsistentRead=True,
    )
    return list(response["Items"])


# -- table setup -------------------------------------------------------------------------


async def test_table_creation_is_idempotent(table: str, endpoint: str, raw: Any) -> None:
    def new() -> DynamoDBStorageBackend:
        return DynamoDBStorageBackend(table, moto.REGION, endpoint, session=moto.emulator_session())

    first, second, third = new(), new(), new()
    try:
        await asyncio.gather(first.connect(), second.connect())  # racing creators
        await first.connect()
        await third.connect()  # the table exists already
        await first.create_run(make_run("r1"))
        assert (await third.get_run("r1")) == make_run("r1")
    finally:
        for storage in (first, second, third):
            await storage.close()
    description = (await raw.describe_table(TableName=table))["Table"]
    indexes = {i["IndexName"] for i in description["GlobalSecondaryIndexes"]}
    expected = {i["IndexName"] for i in table_definition(table)["GlobalSecondaryIndexes"]}
    assert indexes == expected
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


async def test_missing_table_without_create_table_is_a_clear_error(
    table: str, endpoint: str
) -> None:
    storage = DynamoDBStorageBackend(
        table, moto.REGION, endpoint, create_table=False, session=moto.emulator_session()
    )
    with pytest.raises(StorageError, match="does not exist"):
        await storage.get_run("r1")
    await storage.close()


async def test_table_without_the_indexes_is_rejected(table: str, endpoint: str, raw: Any) -> None:
    await raw.create_table(
        TableName=table,
        AttributeDefinitions=[
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "PK", "KeyType": "HASH"},
            {"AttributeName": "SK", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    storage = DynamoDBStorageBackend(table, moto.REGION, endpoint, session=moto.emulator_session())
    with pytest.raises(StorageError, match="runs_by_created.*runs_due"):
        await storage.connect()
    await storage.close()


# -- large data ----------------------------------------------------------------------------


async def test_one_megabyte_event_round_trips_through_chunks(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    # Random bytes in base64 barely compress: the data must be split across items.
    blob = base64.b64encode(os.urandom(750_000)).decode()
    assert len(blob) == 1_000_000
    await backend.create_run(make_run("r1", last_sequence=1), make_events("r1", 1, 1))
    (event,) = make_events("r1", 2, 1)
    event.data = {"blob": blob, "tail": "ü✓"}
    await backend.append_events("r1", [event], expected_last_sequence=1)
    await backend.append_events("r1", make_events("r1", 3, 1), expected_last_sequence=2)

    events = await backend.get_events("r1")
    assert [e.sequence for e in events] == [1, 2, 3]
    assert events[1] == event
    assert await backend.get_events("r1", after_sequence=1) == events[1:]
    assert await backend.get_events("r1", after_sequence=2) == events[2:]

    sort_keys = [i["SK"]["S"] for i in await items_of(raw, table, "r1")]
    head = f"EVT#{2:020d}"
    chunks = [sk for sk in sort_keys if sk.startswith(f"{head}#")]
    assert len(chunks) >= 3  # about 760 KB compressed, 350 KB per chunk
    assert sort_keys.index(head) + 1 == sort_keys.index(chunks[0])  # chunks follow the head
    for item in await items_of(raw, table, "r1"):
        if "part" in item:
            assert len(item["part"]["B"]) <= CHUNK_BYTES


async def test_damaged_event_items_are_named_by_sequence(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    blob = base64.b64encode(os.urandom(750_000)).decode()  # three chunks
    await backend.create_run(make_run("r1", last_sequence=3), make_events("r1", 1, 3))
    (event,) = make_events("r1", 4, 1)
    event.data = {"blob": blob}
    await backend.append_events("r1", [event], expected_last_sequence=3)
    key = {"PK": {"S": "RUN#r1"}}

    async def reason_at(after: int = 0) -> tuple[int | None, str]:
        with pytest.raises(HistoryCorruptedError) as info:
            await backend.get_events("r1", after_sequence=after)
        return info.value.sequence, info.value.reason

    await raw.update_item(
        TableName=table,
        Key={**key, "SK": {"S": f"EVT#{2:020d}"}},
        UpdateExpression="REMOVE #t",
        ExpressionAttributeNames={"#t": "type"},
    )
    assert await reason_at() == (2, "event type is missing")
    await raw.delete_item(TableName=table, Key={**key, "SK": {"S": f"EVT#{4:020d}#00001"}})
    assert await reason_at(after=2) == (4, "2 of 3 data chunks")
    await raw.delete_item(TableName=table, Key={**key, "SK": {"S": f"EVT#{4:020d}"}})
    assert await reason_at(after=3) == (4, "a data chunk without its event item")


async def test_compressible_event_is_one_compressed_item(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    await backend.create_run(make_run("r1", last_sequence=1), make_events("r1", 1, 1))
    (event,) = make_events("r1", 2, 1)
    event.data = {"big": "x" * 1_000_000}
    await backend.append_events("r1", [event], expected_last_sequence=1)
    assert (await backend.get_events("r1", after_sequence=1)) == [event]
    (stored,) = [i for i in await items_of(raw, table, "r1") if i["SK"]["S"] == f"EVT#{2:020d}"]
    assert "data_z" in stored and "data" not in stored
    assert len(stored["data_z"]["B"]) < 10_000


async def test_run_payloads_are_compressed_and_oversized_ones_rejected(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    big_input = '{"args":["' + "a" * 500_000 + '"],"kwargs":{}}'
    run = make_run("r1", input_payload=big_input, last_sequence=1)
    await backend.create_run(run, make_events("r1", 1, 1))
    assert await backend.get_run("r1") == run
    (meta,) = [i for i in await items_of(raw, table, "r1") if i["SK"]["S"] == "META"]
    assert "input_payload_z" in meta and "input_payload" not in meta

    # A large result is compressed; a small one replaces it as plain text.
    big_result = '"' + "r" * 100_000 + '"'
    for result, attr, gone in [
        (big_result, "result_payload_z", "result_payload"),
        ('"ok"', "result_payload", "result_payload_z"),
    ]:
        update = RunUpdate({"result_payload": result})
        await backend.append_events("r1", [], expected_last_sequence=1, update=update)
        stored = await backend.get_run("r1")
        assert stored is not None and stored.result_payload == result
        (meta,) = [i for i in await items_of(raw, table, "r1") if i["SK"]["S"] == "META"]
        assert attr in meta and gone not in meta

    noise = base64.b64encode(os.urandom(600_000)).decode()
    with pytest.raises(PayloadTooLargeError, match="result_payload is .* 400 KB"):
        await backend.append_events(
            "r1",
            make_events("r1", 2, 1),
            expected_last_sequence=1,
            update=RunUpdate({"result_payload": f'"{noise}"'}),
        )
    stored = await backend.get_run("r1")
    assert stored is not None and stored.last_sequence == 1 and stored.result_payload == '"ok"'
    assert [e.sequence for e in await backend.get_events("r1")] == [1]


# -- transactions ------------------------------------------------------------------------


async def test_append_over_the_transaction_item_limit_writes_nothing(
    backend: DynamoDBStorageBackend,
) -> None:
    await backend.create_run(make_run("r1", last_sequence=1), make_events("r1", 1, 1))
    with pytest.raises(StorageError, match="100"):
        await backend.append_events("r1", make_events("r1", 2, 100), expected_last_sequence=1)
    assert [e.sequence for e in await backend.get_events("r1")] == [1]
    # 99 events + the run update is exactly the limit.
    await backend.append_events("r1", make_events("r1", 2, 99), expected_last_sequence=1)
    assert len(await backend.get_events("r1")) == 100


async def test_conditional_failures_map_to_contract_errors(
    backend: DynamoDBStorageBackend,
) -> None:
    # Transactional creates (events, tags, a key) map a taken id as the plain put does.
    first = make_run("r1", idempotency_key="k1", tags=["t"], last_sequence=1)
    await backend.create_run(first, make_events("r1", 1, 1))
    with pytest.raises(RunAlreadyExistsError):
        await backend.create_run(make_run("r1", tags=["t"]), make_events("r1", 1, 1))
    with pytest.raises(RunAlreadyExistsError):
        await backend.create_run(make_run("r1"))
    # A taken key wins over a taken id: the existing run is returned, nothing written.
    again = await backend.create_run(make_run("r1", idempotency_key="k1", workflow_name="x"))
    assert again == first
    other = await backend.create_run(make_run("r2", idempotency_key="k1"))
    assert other.run_id == "r1" and await backend.get_run("r2") is None

    with pytest.raises(SequenceConflictError, match="expected last sequence 0, found 1"):
        await backend.append_events("r1", make_events("r1", 1, 1), expected_last_sequence=0)
    with pytest.raises(SequenceConflictError):
        await backend.append_events(
            "r1", [], expected_last_sequence=3, update=RunUpdate({"status": "suspended"})
        )
    with pytest.raises(WorkflowNotFoundError):
        await backend.append_events("ghost", make_events("ghost", 1, 2), expected_last_sequence=0)
    with pytest.raises(WorkflowNotFoundError):
        await backend.append_events(
            "ghost", [], expected_last_sequence=0, update=RunUpdate({"wake_at": at(5)})
        )
    assert await backend.get_events("ghost") == []
    assert await backend.get_run("ghost") is None


async def test_transaction_conflicts_are_retried(backend: DynamoDBStorageBackend) -> None:
    from botocore.exceptions import ClientError

    await backend.create_run(make_run("r1", last_sequence=1), make_events("r1", 1, 1))
    client = await backend._get_client()
    real = client.transact_write_items
    calls: list[int] = []

    async def flaky(**kwargs: Any) -> Any:
        calls.append(len(kwargs["TransactItems"]))
        if len(calls) == 1:  # another transaction held the run item
            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                    "CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}],
                },
                "TransactWriteItems",
            )
        return await real(**kwargs)

    client.transact_write_items = flaky
    try:
        await backend.append_events("r1", make_events("r1", 2, 1), expected_last_sequence=1)
    finally:
        client.transact_write_items = real
    assert calls == [2, 2]
    assert [e.sequence for e in await backend.get_events("r1")] == [1, 2]


# -- the due index -------------------------------------------------------------------------


async def test_partial_updates_keep_the_due_index_right(backend: DynamoDBStorageBackend) -> None:
    await backend.create_run(make_run("r1", last_sequence=1), make_events("r1", 1, 1))
    await backend.append_events(
        "r1", [], expected_last_sequence=1, update=RunUpdate({"wake_at": at(50)})
    )
    assert await backend.list_due_runs(at(100)) == []  # running: a wake time is not a timer
    await backend.append_events(
        "r1", [], expected_last_sequence=1, update=RunUpdate({"status": RunStatus.SUSPENDED})
    )
    assert await backend.list_due_runs(at(100)) == ["r1"]  # status alone, stored wake_at
    await backend.append_events(
        "r1", [], expected_last_sequence=1, update=RunUpdate({"wake_at": at(200)})
    )
    assert await backend.list_due_runs(at(100)) == []  # the timer moved
    assert await backend.next_wake_time() == at(200)
    await backend.append_events(
        "r1", [], expected_last_sequence=1, update=RunUpdate({"status": RunStatus.RUNNING})
    )
    assert await backend.next_wake_time() is None
    assert await backend.list_due_runs(at(300)) == []


async def test_stale_due_index_entries_are_never_returned_or_claimed(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    # Simulate an index entry lagging behind its run (AWS indexes are eventually
    # consistent; moto's are not): a running run that still carries due keys.
    await backend.create_run(make_run("r1", wake_at=at(1)))
    await backend.create_run(make_run("ok", status=RunStatus.SUSPENDED, wake_at=at(2)))
    await raw.update_item(
        TableName=table,
        Key={"PK": {"S": "RUN#r1"}, "SK": {"S": "META"}},
        UpdateExpression="SET gsi_due = :d, due_sk = :s",
        ExpressionAttributeValues={":d": {"S": "DUE"}, ":s": {"S": "0" * 18 + "#r1"}},
    )
    assert await backend.list_due_runs(at(10)) == ["ok"]
    assert await backend.next_wake_time() == at(2)
    assert await backend.claim_due_runs(at(10), "w1", at(60)) == ["ok"]
    run = await backend.get_run("r1")
    assert run is not None and run.lease_owner is None


async def test_list_runs_rechecks_index_entries(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    await backend.create_run(make_run("a", status=RunStatus.COMPLETED, created_at=at(1)))
    await backend.create_run(make_run("b", status=RunStatus.COMPLETED, created_at=at(2)))
    # A lagging status index: "b" is indexed as completed but the run says failed.
    await raw.update_item(
        TableName=table,
        Key={"PK": {"S": "RUN#b"}, "SK": {"S": "META"}},
        UpdateExpression="SET #s = :f",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":f": {"S": "failed"}},
    )
    listed = await backend.list_runs(status=RunStatus.COMPLETED, workflow_name="order")
    assert [r.run_id for r in listed] == ["a"]


# -- cancellation requests -----------------------------------------------------------------


async def test_cancel_fields_round_trip_and_update_through_run_updates(
    backend: DynamoDBStorageBackend,
) -> None:
    run = make_run("r1", cancel_requested_at=at(3), cancel_reason="ünïcode ✓", last_sequence=1)
    await backend.create_run(run, make_events("r1", 1, 1))
    assert await backend.get_run("r1") == run
    await backend.append_events(
        "r1", [], expected_last_sequence=1, update=RunUpdate({"cancel_reason": None})
    )
    stored = await backend.get_run("r1")
    assert stored is not None
    assert (stored.cancel_requested_at, stored.cancel_reason) == (at(3), None)
    update = RunUpdate({"cancel_requested_at": at(9), "cancel_reason": "again"})
    await backend.append_events(
        "r1", make_events("r1", 2, 1), expected_last_sequence=1, update=update
    )
    stored = await backend.get_run("r1")
    assert stored is not None and stored.last_sequence == 2
    assert (stored.cancel_requested_at, stored.cancel_reason) == (at(9), "again")


async def test_first_cancellation_request_keeps_its_missing_reason(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    await backend.create_run(make_run("r1", last_sequence=1), make_events("r1", 1, 1))
    assert await backend.request_cancellation("r1", None, at(1))
    assert await backend.request_cancellation("r1", "later reason", at(2))
    (meta,) = [i for i in await items_of(raw, table, "r1") if i["SK"]["S"] == "META"]
    assert "cancel_reason" not in meta and meta["last_sequence"] == {"N": "1"}
    stored = await backend.get_run("r1")
    assert stored is not None
    assert (stored.cancel_requested_at, stored.cancel_reason) == (at(1), None)


async def run_meta(raw: Any, table: str, run_id: str) -> dict[str, Any]:
    (meta,) = [i for i in await items_of(raw, table, run_id) if i["SK"]["S"] == "META"]
    return meta


async def test_the_cancel_index_holds_unfinished_runs_asked_to_cancel(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    async def indexed(run_id: str) -> bool:
        return "gsi_cancel" in await run_meta(raw, table, run_id)

    await backend.create_run(make_run("born", cancel_requested_at=at(0)))
    await backend.create_run(
        make_run("done", status=RunStatus.COMPLETED, cancel_requested_at=at(0))
    )
    await backend.create_run(make_run("r1", status=RunStatus.SUSPENDED))
    assert (await indexed("born"), await indexed("done"), await indexed("r1")) == (
        True,
        False,
        False,
    )
    assert await backend.request_cancellation("r1", None, at(1))
    assert await indexed("r1")
    await backend.append_events(
        "r1", [], expected_last_sequence=0, update=RunUpdate({"status": RunStatus.RUNNING})
    )
    assert await indexed("r1")  # still asked, still unfinished
    await backend.append_events(
        "r1", [], expected_last_sequence=0, update=RunUpdate({"status": RunStatus.CANCELLED})
    )
    assert not await indexed("r1")  # finished: out of the index, request kept
    asked = await backend.list_runs(cancel_requested=True)
    assert [r.run_id for r in asked] == ["r1", "done", "born"]  # not only the index's
    await backend.append_events(
        "born", [], expected_last_sequence=0, update=RunUpdate({"cancel_requested_at": None})
    )
    assert not await indexed("born")


async def test_cancel_requested_suspended_runs_are_read_from_the_cancel_index(
    backend: DynamoDBStorageBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        await backend.create_run(make_run(f"s{i}", status=RunStatus.SUSPENDED, created_at=at(i)))
    await backend.request_cancellation("s1", None, at(5))
    await backend.connect()
    indexes: list[str] = []
    real = backend._query

    def spy(**params: Any) -> Any:
        indexes.append(params.get("IndexName", ""))
        return real(**params)

    monkeypatch.setattr(backend, "_query", spy)
    listed = await backend.list_runs(status=RunStatus.SUSPENDED, cancel_requested=True)
    assert [r.run_id for r in listed] == ["s1"]
    assert indexes == ["runs_cancel_requested"]


async def test_an_older_table_gets_the_cancel_index_and_its_requests(
    table: str, endpoint: str, raw: Any
) -> None:
    await create_table_without(raw, table, "runs_cancel_requested", ("gsi_cancel",))
    # Runs as an older release stored them: requests without gsi_cancel.
    for i, status in enumerate([RunStatus.SUSPENDED, RunStatus.SUSPENDED, RunStatus.RUNNING]):
        asked = None if i == 1 else at(10)
        run = make_run(f"old{i}", status=status, created_at=at(i), cancel_requested_at=asked)
        item = _run_item(run)
        item.pop("gsi_cancel", None)
        await raw.put_item(TableName=table, Item=item)

    fixed = DynamoDBStorageBackend(
        table, moto.REGION, endpoint, create_table=False, session=moto.emulator_session()
    )
    with pytest.raises(StorageError, match="runs_cancel_requested.*add_index_request"):
        await fixed.connect()
    await fixed.close()

    upgraded = DynamoDBStorageBackend(table, moto.REGION, endpoint, session=moto.emulator_session())
    try:
        await upgraded.connect()
        asked_runs = await upgraded.list_runs(status=RunStatus.SUSPENDED, cancel_requested=True)
        assert [r.run_id for r in asked_runs] == ["old0"]
        running = await upgraded.list_runs(status=RunStatus.RUNNING, cancel_requested=True)
        assert [r.run_id for r in running] == ["old2"]
    finally:
        await upgraded.close()
    marker = await raw.get_item(
        TableName=table, Key={"PK": {"S": "MIGRATIONS"}, "SK": {"S": "cancel_index"}}
    )
    assert "Item" in marker


# -- hooks -----------------------------------------------------------------------------------


async def test_hook_items_and_their_index_stay_out_of_run_listings(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    await backend.create_run(make_run("r1", status=RunStatus.PENDING))
    await backend.save_hook(make_hook("h1", run_id="r1"))
    (head,) = await hook_items(raw, table, "h1")
    assert head["SK"] == {"S": "HOOK"} and head["hook_status"] == {"S": "pending"}
    assert "status" not in head  # would put the hook into runs_by_status
    assert head["gsi_hook"] == {"S": "H#pending"}
    pointer = [i for i in await items_of(raw, table, "r1") if i["SK"]["S"].startswith("HOOKID#")]
    assert pointer == [
        {"PK": {"S": "RUN#r1"}, "SK": {"S": "HOOKID#hook:approval#1"}, "token_hash": {"S": "h1"}}
    ]
    assert [r.run_id for r in await backend.list_runs(status=RunStatus.PENDING)] == ["r1"]
    assert [r.run_id for r in await backend.list_runs()] == ["r1"]
    assert await backend.get_events("r1") == []


async def test_one_megabyte_hook_payload_round_trips_through_chunks(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    payload = '"' + base64.b64encode(os.urandom(750_000)).decode() + '"'
    await backend.save_hook(make_hook("h1"))
    assert await backend.update_hook(
        "h1", expected=HookStatus.PENDING, status=HookStatus.RECEIVED, payload=payload
    )
    hook = await backend.get_hook("h1")
    assert hook is not None and hook.payload == payload
    (listed,) = await backend.list_hooks(status=HookStatus.RECEIVED)
    assert listed.payload == payload
    (by_run,) = await backend.list_hooks(run_id="r1")
    assert by_run.payload == payload
    parts = [i for i in await hook_items(raw, table, "h1") if "part" in i]
    assert len(parts) >= 3 and all(len(i["part"]["B"]) <= CHUNK_BYTES for i in parts)

    # A replaced payload takes its chunks with it, in the same transaction.
    assert await backend.update_hook(
        "h1", expected=HookStatus.RECEIVED, status=HookStatus.RECEIVED, payload='"small"'
    )
    assert [i["SK"]["S"] for i in await hook_items(raw, table, "h1")] == ["HOOK"]
    hook = await backend.get_hook("h1")
    assert hook is not None and hook.payload == '"small"'


async def test_saved_hook_with_a_large_payload_and_schema(backend: DynamoDBStorageBackend) -> None:
    payload = '"' + base64.b64encode(os.urandom(600_000)).decode() + '"'
    schema = '{"description": "' + "s" * 100_000 + '"}'  # compresses well
    hook = make_hook("h1", status=HookStatus.RECEIVED, payload=payload, schema=schema)
    assert await backend.save_hook(hook) == hook
    assert await backend.get_hook("h1") == hook
    assert await backend.save_hook(make_hook("h2")) == hook  # the same run and hook_id

    noise = base64.b64encode(os.urandom(50_000)).decode()
    with pytest.raises(StorageError, match="schema"):
        await backend.save_hook(make_hook("h3", hook_id="other", schema=f'"{noise}"'))
    assert await backend.get_hook("h3") is None


async def test_a_delivery_whose_response_was_lost_still_wins(
    backend: DynamoDBStorageBackend,
) -> None:
    await backend.save_hook(make_hook("h1"))
    client = await backend._get_client()
    real = client.update_item

    async def lost_response(**kwargs: Any) -> Any:
        await real(**kwargs)  # the write lands, the response is lost: the SDK retries,
        return await real(**kwargs)  # and the retry fails the status condition

    client.update_item = lost_response
    try:
        won = await backend.update_hook(
            "h1", expected=HookStatus.PENDING, status=HookStatus.RECEIVED, payload="1"
        )
    finally:
        client.update_item = real
    assert won
    hook = await backend.get_hook("h1")
    assert hook is not None and (hook.status, hook.payload) == (HookStatus.RECEIVED, "1")


async def test_list_hooks_rechecks_index_entries(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    await backend.save_hook(make_hook("a", created_at=at(1)))
    await backend.save_hook(make_hook("b", hook_id="hook:approval#2", created_at=at(2)))
    await backend.update_hook("b", expected=HookStatus.PENDING, status=HookStatus.RECEIVED)
    # A lagging index: "b" is still indexed as pending although it was received.
    await raw.update_item(
        TableName=table,
        Key={"PK": {"S": "HOOK#b"}, "SK": {"S": "HOOK"}},
        UpdateExpression="SET gsi_hook = :p",
        ExpressionAttributeValues={":p": {"S": "H#pending"}},
    )
    assert [h.token_hash for h in await backend.list_hooks(status=HookStatus.PENDING)] == ["a"]
    assert [h.token_hash for h in await backend.list_hooks()] == ["a"]  # "received" lags
    assert [h.token_hash for h in await backend.list_hooks(run_id="r1")] == ["b", "a"]


async def test_a_token_hash_taken_by_another_runs_hook_is_replaced(
    backend: DynamoDBStorageBackend,
) -> None:
    await backend.save_hook(make_hook("h1", run_id="r1"))
    replacement = make_hook("h1", run_id="r2", hook_id="hook:other#1", created_at=at(5))
    assert await backend.save_hook(replacement) == replacement
    assert await backend.get_hook("h1") == replacement
    assert await backend.list_hooks(run_id="r1") == []
    assert await backend.list_hooks(run_id="r2") == [replacement]
    # r1's hook id is free again.
    again = make_hook("h9", run_id="r1")
    assert await backend.save_hook(again) == again


async def create_table_without_hooks(raw: Any, table: str) -> None:
    """The table as releases before hooks created it."""
    await create_table_without(raw, table, INDEX_HOOKS, ("gsi_hook", "hook_sk"))


async def create_table_without(raw: Any, table: str, index: str, keys: tuple[str, ...]) -> None:
    """The table without ``index`` (and the definitions of its only key attributes)."""
    old = table_definition(table)
    old["GlobalSecondaryIndexes"] = [
        g for g in old["GlobalSecondaryIndexes"] if g["IndexName"] != index
    ]
    old["AttributeDefinitions"] = [
        a for a in old["AttributeDefinitions"] if a["AttributeName"] not in keys
    ]
    await raw.create_table(**old)


async def test_an_older_table_gets_the_hooks_index(table: str, endpoint: str, raw: Any) -> None:
    await create_table_without_hooks(raw, table)

    def new(create_table: bool) -> DynamoDBStorageBackend:
        return DynamoDBStorageBackend(
            table, moto.REGION, endpoint, create_table=create_table, session=moto.emulator_session()
        )

    fixed = new(create_table=False)
    with pytest.raises(StorageError, match="hooks_by_status.*add_index_request"):
        await fixed.connect()
    await fixed.close()

    upgrading = new(create_table=True)
    try:
        await upgrading.save_hook(make_hook("h1"))
        assert [h.token_hash for h in await upgrading.list_hooks()] == ["h1"]
    finally:
        await upgrading.close()
    description = (await raw.describe_table(TableName=table))["Table"]
    assert INDEX_HOOKS in {i["IndexName"] for i in description["GlobalSecondaryIndexes"]}


async def test_add_index_request_adds_the_index(table: str, raw: Any) -> None:
    await create_table_without_hooks(raw, table)
    await raw.update_table(**add_index_request(table, INDEX_HOOKS))
    description = (await raw.describe_table(TableName=table))["Table"]
    assert INDEX_HOOKS in {i["IndexName"] for i in description["GlobalSecondaryIndexes"]}


# -- signal inboxes --------------------------------------------------------------------------


async def test_signal_items_live_in_the_runs_partition_outside_every_index(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    await backend.create_run(make_run("r1", status=RunStatus.SUSPENDED, last_sequence=1))
    await backend.save_hook(make_hook("h1", run_id="r1"))
    stored = await backend.send_signal("r1", "go", '{"n": 1}', signal_id="s1", now=at(7))
    assert stored is not None and stored.sequence == 1
    items = {i["SK"]["S"]: i for i in await items_of(raw, table, "r1")}
    head, marker = items[f"SIGNAL#{1:020d}"], items["SIGNALID#s1"]
    assert marker == {"PK": {"S": "RUN#r1"}, "SK": {"S": "SIGNALID#s1"}, "sequence": {"N": "1"}}
    assert head["payload"] == {"S": '{"n": 1}'} and head["signal_id"] == {"S": "s1"}
    index_keys = {"status", "created_sk", "due_sk", "hook_sk"}
    assert not any(k.startswith("gsi_") or k in index_keys for k in (*head, *marker))
    meta = await run_meta(raw, table, "r1")
    assert meta["inbox_seq"] == {"N": "1"}
    assert meta["gsi_due"] == {"S": "DUE"}  # woken: indexed as a timer due at the send
    assert await backend.list_due_runs(at(7)) == ["r1"]
    assert [r.run_id for r in await backend.list_runs()] == ["r1"]
    assert await backend.get_events("r1") == []
    assert [h.token_hash for h in await backend.list_hooks(run_id="r1")] == ["h1"]


async def test_one_megabyte_signal_round_trips_through_chunks(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    big = '"' + base64.b64encode(os.urandom(750_000)).decode() + '"'
    await backend.create_run(make_run("r1"))
    await backend.send_signal("r1", "a", "1", signal_id="s1", now=at(1))
    await backend.send_signal("r1", "big", big, signal_id="s2", now=at(2))
    await backend.send_signal("r1", "c", "3", signal_id="s3", now=at(3))
    parts = [i for i in await items_of(raw, table, "r1") if "part" in i]
    assert len(parts) >= 3 and all(len(i["part"]["B"]) <= CHUNK_BYTES for i in parts)
    signals = await backend.list_signals("r1")
    assert [(s.sequence, s.name) for s in signals] == [(1, "a"), (2, "big"), (3, "c")]
    assert signals[1].payload == big
    (second,) = await backend.list_signals("r1", after_sequence=1, limit=1)
    assert second.payload == big
    again = await backend.send_signal("r1", "big", "0", signal_id="s2", now=at(9))
    assert again == signals[1]  # a repeated send answers the stored signal, chunks read


async def test_listing_stops_at_a_signal_not_yet_visible(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    # A Query is no snapshot: it may see signal 3 and not yet 2 (simulated by deleting
    # items). Returning 3 would make a reader that goes on after 3 skip 2 for good.
    big = '"' + base64.b64encode(os.urandom(750_000)).decode() + '"'
    await backend.create_run(make_run("r1"))
    for i, payload in enumerate(["1", "2", big, "4"], start=1):
        await backend.send_signal("r1", "a", payload, signal_id=f"s{i}", now=at(i))
    await raw.delete_item(
        TableName=table, Key={"PK": {"S": "RUN#r1"}, "SK": {"S": f"SIGNAL#{2:020d}"}}
    )
    assert [s.sequence for s in await backend.list_signals("r1")] == [1]
    assert [s.sequence for s in await backend.list_signals("r1", after_sequence=2)] == [3, 4]
    await raw.delete_item(
        TableName=table, Key={"PK": {"S": "RUN#r1"}, "SK": {"S": f"SIGNAL#{3:020d}#00001"}}
    )
    assert await backend.list_signals("r1", after_sequence=2) == []  # a chunk missing


async def test_a_send_racing_the_runs_status_change_is_retried(
    backend: DynamoDBStorageBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    await backend.create_run(make_run("r1"))  # running
    real = backend._inbox_state
    reads: list[str] = []

    async def then_suspend(run_id: str, signal_id: str) -> Any:
        state = await real(run_id, signal_id)
        if not reads:  # the writer suspends between the send's read and its write
            update = RunUpdate({"status": RunStatus.SUSPENDED})
            await backend.append_events(run_id, [], expected_last_sequence=0, update=update)
        reads.append(state[0]["status"]["S"])
        return state

    monkeypatch.setattr(backend, "_inbox_state", then_suspend)
    stored = await backend.send_signal("r1", "go", "1", signal_id="s1", now=at(5))
    assert stored is not None and stored.sequence == 1
    assert reads == ["running", "suspended"]  # the stale read's write was refused
    run = await backend.get_run("r1")
    assert run is not None and (run.status, run.wake_at) == (RunStatus.SUSPENDED, at(5))
    assert await backend.list_due_runs(at(5)) == ["r1"]


# -- the worker registry ---------------------------------------------------------------------


async def test_worker_items_live_in_their_own_partition_outside_every_index(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    await backend.create_run(make_run("r1", status=RunStatus.PENDING))
    await backend.save_worker(make_worker("w1", runs=["r1"], last_beat=at(4)))
    response = await raw.query(
        TableName=table,
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": "WORKERS"}},
        ConsistentRead=True,
    )
    (item,) = response["Items"]
    assert item["SK"] == {"S": "WORKER#w1"}
    # No attribute any index is keyed on (status, gsi_*, created_sk, ...).
    assert set(item) == {"PK", "SK", "worker_id", "last_beat", "data"}
    assert [r.run_id for r in await backend.list_runs()] == ["r1"]
    assert await backend.list_schedules() == []
    [worker] = await backend.list_workers()
    assert (worker.runs, worker.last_beat) == (["r1"], at(4))


async def test_a_table_of_the_previous_release_keeps_the_worker_registry(
    table: str, endpoint: str, raw: Any
) -> None:
    """The registry needs no index: a table created before it (with exactly the indexes
    this release defines, and no create_table) serves it as it is."""
    await raw.create_table(**table_definition(table))
    storage = DynamoDBStorageBackend(
        table, moto.REGION, endpoint, create_table=False, session=moto.emulator_session()
    )
    try:
        await storage.save_worker(make_worker("w1"))
        assert [w.worker_id for w in await storage.list_workers()] == ["w1"]
    finally:
        await storage.close()


async def test_a_damaged_worker_item_is_read_as_holding_no_runs(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    await backend.save_worker(make_worker("w1", runs=["r1"]))
    await raw.update_item(
        TableName=table,
        Key={"PK": {"S": "WORKERS"}, "SK": {"S": "WORKER#w1"}},
        UpdateExpression="SET #d = :v",
        ExpressionAttributeNames={"#d": "data"},
        ExpressionAttributeValues={":v": {"S": '{"runs": "not a list"}'}},
    )
    [stored] = await backend.list_workers()
    assert (stored.worker_id, stored.runs) == ("w1", [])


async def test_a_large_worker_record_is_compressed(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    runs = [f"run_{i:06d}" for i in range(5000)]  # ~60 KB of JSON
    await backend.save_worker(make_worker("w1", runs=runs))
    item = (
        await raw.get_item(TableName=table, Key={"PK": {"S": "WORKERS"}, "SK": {"S": "WORKER#w1"}})
    )["Item"]
    assert "data_z" in item and "data" not in item
    [stored] = await backend.list_workers()
    assert stored.runs == runs


# -- flow-control gates -----------------------------------------------------------------------


def gate_key(key: str) -> dict[str, Any]:
    return {"PK": {"S": f"GATE#{key}"}, "SK": {"S": "GATE"}}


async def test_gate_items_have_a_partition_each_outside_every_index(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    await backend.create_run(make_run("r1", status=RunStatus.PENDING, tags=["eu"]))
    # The longest key: 255 characters of 4 bytes each, which with a prefix would be over
    # the 1,024 bytes of a sort key, so a gate's key is its partition key.
    key = "\U0001f600" * 255
    assert await backend.save_gate(GateRecord(key, '{"holders": ["r1"]}'), expected_version=None)
    item = (await raw.get_item(TableName=table, Key=gate_key(key)))["Item"]
    # No attribute any index is keyed on (status, gsi_*, created_sk, ...).
    assert set(item) == {"PK", "SK", "gate_key", "version", "updated_at", "data", "write_token"}
    description = (await raw.describe_table(TableName=table))["Table"]
    for index in description["GlobalSecondaryIndexes"]:
        page = await raw.scan(TableName=table, IndexName=index["IndexName"])
        assert not [i for i in page["Items"] if i["PK"]["S"].startswith("GATE#")]
    assert [r.run_id for r in await backend.list_runs()] == ["r1"]
    assert [r.run_id for r in await backend.list_runs(status=RunStatus.PENDING)] == ["r1"]
    assert await backend.list_schedules() == []


async def test_a_table_of_the_previous_release_keeps_gates(
    table: str, endpoint: str, raw: Any
) -> None:
    """Gates need no index: a table created before them serves them as it is."""
    await raw.create_table(**table_definition(table))
    storage = DynamoDBStorageBackend(
        table, moto.REGION, endpoint, create_table=False, session=moto.emulator_session()
    )
    try:
        assert await storage.save_gate(GateRecord("rate:wf"), expected_version=None)
        stored = await storage.get_gate("rate:wf")
        assert stored is not None and stored.version == 1
    finally:
        await storage.close()


async def test_a_large_gate_is_compressed(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    data = json.dumps({"queue": [f"run_{i:06d}" for i in range(5000)]})  # ~60 KB
    assert await backend.save_gate(GateRecord("k", data), expected_version=None)
    item = (await raw.get_item(TableName=table, Key=gate_key("k")))["Item"]
    assert "data_z" in item and "data" not in item
    stored = await backend.get_gate("k")
    assert stored is not None and stored.data == data


async def test_a_gate_save_whose_response_was_lost_still_wins(
    backend: DynamoDBStorageBackend,
) -> None:
    assert await backend.save_gate(GateRecord("k", '{"n": 1}'), expected_version=None)
    client = await backend._get_client()
    real = client.put_item

    async def lost_response(**kwargs: Any) -> Any:
        await real(**kwargs)  # the write lands, the response is lost: the SDK retries,
        return await real(**kwargs)  # and the retry fails the version condition

    client.put_item = lost_response
    try:
        again = GateRecord("k", '{"n": 2}')
        won = await backend.save_gate(again, expected_version=1)
        lost = await backend.save_gate(GateRecord("k", '{"n": 3}'), expected_version=1)
    finally:
        client.put_item = real
    assert won and again.version == 2
    assert not lost  # another writer's token: a real conflict
    stored = await backend.get_gate("k")
    assert stored is not None and (stored.version, stored.data) == (2, '{"n": 2}')


# -- URLs ----------------------------------------------------------------------------------


async def test_from_url_parses_every_option() -> None:
    backend = DynamoDBStorageBackend.from_url(
        "dynamodb://AKID:s%2Fecret@My_Table.v2?region=eu-west-1"
        "&endpoint_url=http%3A%2F%2F127.0.0.1%3A8000&create_table=false"
    )
    assert backend.table_name == "My_Table.v2"  # case kept
    assert backend.region == "eu-west-1"
    assert backend.endpoint_url == "http://127.0.0.1:8000"
    assert backend.create_table is False
    credentials = await (await backend._session.get_credentials()).get_frozen_credentials()
    assert (credentials.access_key, credentials.secret_key) == ("AKID", "s/ecret")
    assert "s/ecret" not in repr(backend)


def test_from_url_defaults() -> None:
    backend = DynamoDBStorageBackend.from_url("dynamodb://")
    assert (backend.table_name, backend.region, backend.endpoint_url) == (
        "pyworkflow",
        "us-east-1",
        None,
    )
    assert backend.create_table is True
    raw_endpoint = DynamoDBStorageBackend.from_url("dynamodb://flows?endpoint_url=http://h:1")
    assert raw_endpoint.endpoint_url == "http://h:1"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("dynamodb://flows?regoin=us-east-1", "unsupported option"),
        ("dynamodb:///flows", "not a path"),
        ("dynamodb://ab", "invalid DynamoDB table name"),
        ("dynamodb://bad%20name", "invalid DynamoDB table name"),
        ("dynamodb://flows?create_table=maybe", "true or false"),
        ("dynamodb://AKID@flows", "KEY:SECRET"),
        ("redis://flows", "not a DynamoDB URL"),
    ],
)
def test_from_url_rejects_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        DynamoDBStorageBackend.from_url(url)


ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_PARTS = ("wJalrXUtnFEMI", "K7MDENG", "bPxRfiCYEXAMPLEKEY")  # an AWS-style secret with "/"


@pytest.mark.parametrize(
    "url",
    [
        "redis://{key}:{secret}@flows",  # another scheme
        "dynamodb://{key}:{secret}@flows",  # "/" in the secret left unencoded: a "path"
        "dynamodb://{key}:{secret_encoded}@flows?regoin=us-east-1",
        "dynamodb://{key}:{secret_encoded}@flows?create_table=maybe",
        "dynamodb://{key}:{secret_encoded}@ab",
        "dynamodb://{key}:{secret_encoded}/flows",  # the "@" forgotten
        "dynamodb://{key}:wJalr?K7MDENG@flows",  # "?" in the secret: a "query"
        "dynamodb://{key}:wJalr#K7MDENG@flows",  # "#" in the secret: a "fragment"
        "dynamodb://{key}:@flows",
        "dynamodb://flows?aws_secret_access_key={secret_encoded}&aws_access_key_id={key}",
    ],
)
def test_bad_url_errors_never_show_credentials(url: str) -> None:
    secret = "/".join(SECRET_PARTS)
    url = url.format(key=ACCESS_KEY, secret=secret, secret_encoded=secret.replace("/", "%2F"))
    with pytest.raises(ConfigurationError) as caught:
        DynamoDBStorageBackend.from_url(url)
    message = str(caught.value)
    assert "***" in message  # the URL is shown, redacted
    for part in (ACCESS_KEY, "wJalr", *SECRET_PARTS[1:]):
        assert part not in message


def test_repr_redacts_credentials_in_the_endpoint() -> None:
    backend = DynamoDBStorageBackend("flows", endpoint_url="http://user:s3cret@127.0.0.1:8000")
    assert "s3cret" not in repr(backend)
    assert "127.0.0.1:8000" in repr(backend)


async def test_url_reopens_the_same_data(backend: DynamoDBStorageBackend, endpoint: str) -> None:
    await backend.create_run(make_run("r1", last_sequence=1), make_events("r1", 1, 1))
    reopened = DynamoDBStorageBackend.from_url(moto.table_url(backend.table_name, endpoint))
    try:
        assert await reopened.get_run("r1") == await backend.get_run("r1")
        (event,) = await reopened.get_events("r1")
        assert event.type == EventType.STEP_COMPLETED
    finally:
        await reopened.close()


async def all_keys(raw: Any, table: str) -> list[tuple[str, str]]:
    """The (PK, SK) of every item in the table (scan pages followed)."""
    keys: list[tuple[str, str]] = []
    params: dict[str, Any] = {"TableName": table, "ProjectionExpression": "PK, SK"}
    while True:
        page = await raw.scan(**params)
        keys += [(i["PK"]["S"], i["SK"]["S"]) for i in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return sorted(keys)
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def test_deleting_runs_leaves_no_item(
    backend: DynamoDBStorageBackend, raw: Any, table: str
) -> None:
    await backend.connect()
    before = await all_keys(raw, table)
    # An event and a hook payload that stay large compressed: stored as chunk items.
    big = base64.b64encode(os.urandom(600_000)).decode()
    run = make_run(
        "r1",
        status=RunStatus.SUSPENDED,
        tags=["eu", "vip"],
        idempotency_key="k1",
        cancel_requested_at=at(1),
        last_sequence=2,
    )
    events = make_events("r1", 1, 2)
    events[1].data = {"blob": big}
    await backend.create_run(run, events)
    await backend.save_hook(
        make_hook("h1", run_id="r1", status=HookStatus.RECEIVED, payload=f'"{big}"')
    )
    await backend.send_signal("r1", "go", f'"{big}"', signal_id="s1", now=at(2))
    update = RunUpdate({"status": RunStatus.COMPLETED, "wake_at": None})
    await backend.append_events("r1", [], expected_last_sequence=2, update=update)
    sort_keys = [sk for _, sk in await all_keys(raw, table)]
    assert any(k.startswith("PART#") for k in sort_keys)  # hook payload chunks
    assert any(k.startswith("EVT#") and k.count("#") == 2 for k in sort_keys)  # event chunks
    assert any(k.startswith("SIGNAL#") and k.count("#") == 2 for k in sort_keys)  # signal's
    assert {"TAG#eu", "TAG#vip", "IDEM", "HOOKID#hook:approval#1", "SIGNALID#s1"} <= set(sort_keys)
    assert await backend.delete_runs(["r1"]) == 1
    assert await all_keys(raw, table) == before
