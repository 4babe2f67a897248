"""The DynamoDB client under the backend: one aiobotocore client per event loop, table
setup on first use, and request helpers that retry and map errors to StorageError."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

# aioboto3/aiobotocore/botocore ship no type information (no py.typed, and this project
# does not depend on third-party stub packages); every client call is typed Any here.
import aioboto3  # type: ignore[import-untyped]
from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from pyworkflow.core.exceptions import ConfigurationError, StorageError
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.dynamodb.codec import Item, _item_bytes, _n, _s
from pyworkflow.storage.dynamodb.expressions import _Expr
from pyworkflow.storage.dynamodb.keys import _hook_key, _run_key
from pyworkflow.storage.dynamodb.table import (
    _ADDED_INDEXES,
    _TABLE_NAME,
    DEFAULT_REGION,
    DEFAULT_TABLE,
    TABLE_NAME_RULE,
    TABLE_WAIT_SECONDS,
    _index_names,
    _is_active,
    _missing_indexes,
    add_index_request,
    table_definition,
)
from pyworkflow.storage.dynamodb.url import redact_text
from pyworkflow.storage.schemas import VersionedRecord

# DynamoDB limits (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html)
MAX_TRANSACTION_ITEMS = 100
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024
MAX_BATCH_GET = 100
#: The largest ``Limit`` a growing ``Query`` reaches (a 1 MB page holds about 5,000 run
#: index items anyway).
MAX_GROWN_LIMIT = 20_000

# Transaction cancellation reasons worth retrying (nothing was written).
_RETRY_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)
_RETRY_CODES = frozenset({"TransactionConflictException", "TransactionInProgressException"})
_MAX_ATTEMPTS = 8

R = TypeVar("R", bound=VersionedRecord)


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _reasons(exc: BaseException) -> list[str]:
    """Cancellation reason codes of a TransactionCanceledException, one per item."""
    response = getattr(exc, "response", None) or {}
    return [str(r.get("Code") or "None") for r in response.get("CancellationReasons") or ()]


def _why(exc: BaseException) -> str:
    """The SDK's message for ``exc``, with any URL in it (the endpoint) redacted."""
    return redact_text(str(exc))


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(min(0.5, 0.01 * 2**attempt) * (0.5 + random.random()))


class _Cancelled(Exception):
    """A transaction whose conditions failed (reason codes, one per item)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons

    def failed(self, index: int) -> bool:
        """Whether the condition of the ``index``-th transaction item failed."""
        return index < len(self.reasons) and self.reasons[index] == "ConditionalCheckFailed"


class TableClient(StorageBackend):
    """Connection and request plumbing shared by the backend's parts (see
    :class:`~pyworkflow.storage.dynamodb.DynamoDBStorageBackend` for the arguments)."""

    def __init__(
        self,
        table_name: str = DEFAULT_TABLE,
        region: str = DEFAULT_REGION,
        endpoint_url: str | None = None,
        *,
        create_table: bool = True,
        session: Any = None,
    ) -> None:
        if not _TABLE_NAME.match(table_name):
            raise ConfigurationError(
                f"invalid DynamoDB table name {table_name!r}: {TABLE_NAME_RULE}"
            )
        self.table_name = table_name
        self.region = region
        self.endpoint_url = endpoint_url
        self.create_table = create_table
        self._session = session if session is not None else aioboto3.Session()
        self._client: Any = None
        self._client_cm: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._table_ready = False

    # -- connection management ----------------------------------------------------------

    async def _get_client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        if self._lock is None or self._loop is not loop:
            # A new loop: locks and the HTTP session of the old one cannot be reused.
            self._lock, self._loop = asyncio.Lock(), loop
            self._client = self._client_cm = None
        async with self._lock:
            if self._client is None:
                self._client = await self._open()
            return self._client

    async def _open(self) -> Any:
        cm = self._session.client(
            "dynamodb",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            config=AioConfig(retries={"mode": "standard", "max_attempts": 5}),
        )
        try:
            client = await cm.__aenter__()
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"dynamodb: cannot open a client: {_why(exc)}") from exc
        try:
            if not self._table_ready:
                await self._ensure_table(client)
                self._table_ready = True
        except BaseException:
            await cm.__aexit__(None, None, None)
            raise
        self._client_cm = cm
        return client

    async def connect(self) -> None:
        await self._get_client()

    async def close(self) -> None:
        cm, self._client, self._client_cm = self._client_cm, None, None
        # A client opened on another (finished) loop cannot be closed from this one.
        if cm is not None and self._loop is asyncio.get_running_loop():
            try:
                await cm.__aexit__(None, None, None)
            except (ClientError, BotoCoreError, OSError) as exc:
                raise StorageError(f"dynamodb: closing the client failed: {_why(exc)}") from exc

    async def _ensure_table(self, client: Any) -> None:
        """Create the table if allowed and missing; wait until it and its indexes are
        active; check that the indexes this backend queries exist."""
        try:
            description = await self._describe(client)
            if description is None:
                if not self.create_table:
                    raise StorageError(
                        f"dynamodb: table {self.table_name!r} does not exist in "
                        f"{self.region} and create_table is off; create it (see "
                        "pyworkflow.storage.dynamodb.table_definition) or enable create_table"
                    )
                try:
                    await client.create_table(**table_definition(self.table_name))
                except ClientError as exc:
                    if _error_code(exc) != "ResourceInUseException":  # created meanwhile
                        raise
                description = await self._wait_active(client)
            elif not _is_active(description):
                description = await self._wait_active(client)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(
                f"dynamodb: cannot prepare table {self.table_name!r}: {_why(exc)}"
            ) from exc
        keys = {k["AttributeName"]: k["KeyType"] for k in description.get("KeySchema", [])}
        if keys != {"PK": "HASH", "SK": "RANGE"}:
            raise StorageError(
                f"dynamodb: table {self.table_name!r} has key schema {keys}; "
                "pyworkflow needs PK (HASH, string) and SK (RANGE, string)"
            )
        missing = _missing_indexes(description)
        if missing and self.create_table and set(missing) <= _ADDED_INDEXES:
            # A table made by an earlier release: add the newer indexes in place.
            for name in missing:
                description = await self._add_index(client, name)
            missing = _missing_indexes(description)
        if missing:
            raise StorageError(
                f"dynamodb: table {self.table_name!r} lacks the global secondary "
                f"index(es) {', '.join(missing)}; add them as in "
                "pyworkflow.storage.dynamodb.table_definition (for an index a newer "
                "release added: client.update_table(**add_index_request(table, index)), "
                "or connect once with create_table enabled)"
            )

    async def _add_index(self, client: Any, name: str) -> Item:
        """Add index ``name`` to the existing table and wait until it is active (DynamoDB
        backfills it from the existing items). Another process adding it at the same
        time is fine."""
        try:
            try:
                await client.update_table(**add_index_request(self.table_name, name))
            except ClientError:
                description = await self._describe(client)
                if description is None or name not in _index_names(description):
                    raise
            return await self._wait_active(client)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(
                f"dynamodb: cannot add index {name!r} to table {self.table_name!r}: {_why(exc)}"
            ) from exc

    async def _describe(self, client: Any) -> Item | None:
        try:
            response = await client.describe_table(TableName=self.table_name)
        except ClientError as exc:
            if _error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        return cast(Item, response["Table"])

    async def _wait_active(self, client: Any) -> Item:
        deadline = asyncio.get_running_loop().time() + TABLE_WAIT_SECONDS
        delay = 0.05
        while True:
            description = await self._describe(client)
            if description is not None and _is_active(description):
                return description
            if asyncio.get_running_loop().time() > deadline:
                raise StorageError(
                    f"dynamodb: table {self.table_name!r} not active after "
                    f"{TABLE_WAIT_SECONDS:.0f} s"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    # -- request helpers ------------------------------------------------------------------

    def _error(self, action: str, exc: BaseException) -> StorageError:
        text = f"dynamodb ({self.table_name}): {action} failed: {_why(exc)}"
        if "size" in str(exc).lower():
            text += " (DynamoDB limits: 400 KB per item, 4 MB and 100 items per transaction)"
        return StorageError(text)

    async def _call(self, operation: str, expected: Iterable[str] = (), **params: Any) -> Item:
        """One client call; errors become StorageError except the ``expected`` codes,
        which are re-raised as ``ClientError`` for the caller to interpret."""
        client = await self._get_client()
        method = getattr(client, operation)
        for attempt in range(_MAX_ATTEMPTS):
            try:
                return cast(Item, await method(TableName=self.table_name, **params))
            except ClientError as exc:
                code = _error_code(exc)
                if code in expected:
                    raise
                if code in _RETRY_CODES and attempt < _MAX_ATTEMPTS - 1:
                    await _backoff(attempt)
                    continue
                raise self._error(operation, exc) from exc
            except BotoCoreError as exc:
                raise self._error(operation, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _transact(self, actions: list[Item], what: str) -> None:
        """Run ``actions`` as one transaction.

        Raises:
            _Cancelled: a condition failed (nothing was written).
            StorageError: over the transaction limits, or any other failure.
        """
        if len(actions) > MAX_TRANSACTION_ITEMS:
            raise StorageError(
                f"dynamodb: {what} needs {len(actions)} items in one transaction; DynamoDB "
                f"allows {MAX_TRANSACTION_ITEMS} (each event is one item, plus one per "
                "350 KB chunk of large data). Append fewer events at a time; nothing was written."
            )
        size = sum(_item_bytes(next(iter(a.values())).get("Item", {})) for a in actions)
        if size > MAX_TRANSACTION_BYTES:
            raise StorageError(
                f"dynamodb: {what} writes about {size} bytes in one transaction; DynamoDB "
                f"allows {MAX_TRANSACTION_BYTES}. Nothing was written."
            )
        for action in actions:
            next(iter(action.values()))["TableName"] = self.table_name
        client = await self._get_client()
        for attempt in range(_MAX_ATTEMPTS):
            try:
                await client.transact_write_items(
                    TransactItems=actions, ClientRequestToken=uuid.uuid4().hex
                )
                return
            except ClientError as exc:
                code = _error_code(exc)
                if code == "TransactionCanceledException":
                    reasons = _reasons(exc)
                    if "ConditionalCheckFailed" in reasons:
                        raise _Cancelled(reasons) from exc
                    if set(reasons) - {"None"} <= _RETRY_REASONS and attempt < _MAX_ATTEMPTS - 1:
                        await _backoff(attempt)
                        continue
                elif code in _RETRY_CODES and attempt < _MAX_ATTEMPTS - 1:
                    await _backoff(attempt)
                    continue
                raise self._error(what, exc) from exc
            except BotoCoreError as exc:
                raise self._error(what, exc) from exc

    async def _get_item(self, key: Item, projection: Sequence[str] = ()) -> Item | None:
        params: Item = {"Key": key, "ConsistentRead": True}
        if projection:
            expr = _Expr()
            params["ProjectionExpression"] = ", ".join(expr.name(p) for p in projection)
            params.update(expr.params())
        response = await self._call("get_item", **params)
        return cast(Item | None, response.get("Item"))

    async def _put_versioned(
        self, record: R, expected_version: int | None, to_item: Callable[[R, int, str], Item]
    ) -> bool:
        """Save ``record`` by compare-and-set (schedules, flow-control gates): one
        ``PutItem`` of ``to_item(record, version, write_token)`` under
        ``attribute_not_exists`` (insert) or ``version = :expected`` (a missing item fails
        it too). A failed condition re-reads the item's write token: our own (an SDK
        retry of a put that did land) answers ``True``, any other ``False``. On success
        ``record.version`` is the version stored."""
        version = 1 if expected_version is None else expected_version + 1
        token = uuid.uuid4().hex
        item = to_item(record, version, token)
        expr = _Expr()
        if expected_version is None:
            condition = f"attribute_not_exists({expr.name('PK')})"
        else:
            condition = f"{expr.name('version')} = {expr.value(_n(expected_version))}"
        try:
            await self._call(
                "put_item",
                expected=("ConditionalCheckFailedException",),
                Item=item,
                ConditionExpression=condition,
                **expr.params(),
            )
        except ClientError:
            key = {"PK": item["PK"], "SK": item["SK"]}
            stored = await self._get_item(key, ("write_token",))
            if stored is None or stored.get("write_token") != _s(token):
                return False
        record.version = version
        return True

    async def _delete_item(
        self, key: Item, *, attribute: str = "PK", allowed: Sequence[str] | None = None
    ) -> bool:
        """Delete one item if it exists (``allowed=None``), or if its string
        ``attribute`` is one of ``allowed``; whether it did (a conditional ``DeleteItem``)."""
        expr = _Expr()
        name = expr.name(attribute)
        if allowed is None:
            condition = f"attribute_exists({name})"
        else:
            condition = f"{name} IN ({', '.join(expr.value({'S': v}) for v in allowed)})"
        try:
            await self._call(
                "delete_item",
                expected=("ConditionalCheckFailedException",),
                Key=key,
                ConditionExpression=condition,
                **expr.params(),
            )
        except ClientError:
            return False
        return True

    async def _query(self, *, grow: bool = False, **params: Any) -> AsyncIterator[list[Item]]:
        """Pages of a ``Query`` (follows ``LastEvaluatedKey``). With ``grow``, each page
        may read four times as many items as the last (``Limit`` counts items read before
        a ``FilterExpression``: a selective filter would otherwise take many round trips;
        DynamoDB still ends a page at 1 MB)."""
        start: Item | None = None
        while True:
            if start is not None:
                params["ExclusiveStartKey"] = start
            response = await self._call("query", **params)
            yield cast(list[Item], response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start:
                return
            if grow and "Limit" in params:
                params["Limit"] = min(params["Limit"] * 4, MAX_GROWN_LIMIT)

    async def _batch_get_runs(
        self, run_ids: Sequence[str], projection: Sequence[str] = ()
    ) -> dict[str, Item]:
        """Run items by id, read consistently (ids that do not exist are left out)."""
        keys = [_run_key(r) for r in dict.fromkeys(run_ids)]
        return {item["PK"]["S"][4:]: item for item in await self._batch_get_keys(keys, projection)}

    async def _batch_get_hooks(self, token_hashes: Sequence[str]) -> dict[str, Item]:
        """Hook items by token hash, read consistently (missing ones are left out)."""
        keys = [_hook_key(h) for h in dict.fromkeys(token_hashes)]
        return {item["token_hash"]["S"]: item for item in await self._batch_get_keys(keys, ())}

    async def _batch_get_keys(self, keys: Sequence[Item], projection: Sequence[str]) -> list[Item]:
        chunks = [keys[i : i + MAX_BATCH_GET] for i in range(0, len(keys), MAX_BATCH_GET)]
        found: list[Item] = []
        for items in await asyncio.gather(*(self._batch_get(c, projection) for c in chunks)):
            found.extend(items)
        return found

    async def _batch_get(self, keys: Sequence[Item], projection: Sequence[str]) -> list[Item]:
        request: Item = {"Keys": list(keys), "ConsistentRead": True}
        if projection:
            expr = _Expr()
            request["ProjectionExpression"] = ", ".join(expr.name(p) for p in ("PK", *projection))
            request.update(expr.params())
        client = await self._get_client()
        items: list[Item] = []
        pending: Item = {self.table_name: request}
        for attempt in range(_MAX_ATTEMPTS * 2):
            try:
                response = await client.batch_get_item(RequestItems=pending)
            except (ClientError, BotoCoreError) as exc:
                raise self._error("batch_get_item", exc) from exc
            items.extend(response.get("Responses", {}).get(self.table_name, []))
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                return items
            await _backoff(attempt)
        raise StorageError(f"dynamodb ({self.table_name}): batch read kept being throttled")
