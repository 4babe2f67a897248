"""Items of a hook: the hook item (payload plain, compressed or in versioned chunk items)
and its conversion back to a :class:`HookRecord`."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from pyworkflow.core.exceptions import StorageError
from pyworkflow.storage.dynamodb.codec import (
    Item,
    _blob_attrs,
    _from_micros,
    _item_bytes,
    _micros,
    _n,
    _opt_dt,
    _opt_str,
    _payload,
    _s,
)
from pyworkflow.storage.dynamodb.keys import _HOOK_SK, _hook_gsi, _hook_pk, _hook_sk, _part_sk
from pyworkflow.storage.schemas import HookRecord, HookStatus

# Compressed size limit of a hook's schema (it shares the hook item with the payload).
MAX_HOOK_SCHEMA_BYTES = 32 * 1024

_HOOK_STATUSES: dict[str, HookStatus] = {s.value: s for s in HookStatus}


def _part_items(token_hash: str, version: str, parts: Sequence[bytes]) -> list[Item]:
    return [
        {"PK": _s(_hook_pk(token_hash)), "SK": _s(_part_sk(version, i)), "part": {"B": part}}
        for i, part in enumerate(parts)
    ]


def _old_part_keys(token_hash: str, head: Item) -> list[Item]:
    """Keys of the payload chunks ``head`` (a stored hook item) points at."""
    if "payload_chunks" not in head:
        return []
    version = head["payload_part"]["S"]
    return [
        {"PK": _s(_hook_pk(token_hash)), "SK": _s(_part_sk(version, i))}
        for i in range(int(head["payload_chunks"]["N"]))
    ]


def _hook_items(hook: HookRecord, version: str) -> tuple[Item, list[Item]]:
    """The hook's item and its payload chunk items (written under ``version``)."""
    status = HookStatus(hook.status)
    head: Item = {
        "PK": _s(_hook_pk(hook.token_hash)),
        "SK": _s(_HOOK_SK),
        "token_hash": _s(hook.token_hash),
        "run_id": _s(hook.run_id),
        "hook_id": _s(hook.hook_id),
        "name": _s(hook.name),
        "hook_status": _s(status.value),
        "created_at": _n(_micros(hook.created_at)),
        "gsi_hook": _s(_hook_gsi(status)),
        "hook_sk": _s(_hook_sk(hook.created_at, hook.token_hash)),
        "write_token": _s(version),
    }
    if hook.token:
        head["token"] = _s(hook.token)
    for name in ("expires_at", "received_at"):
        value = getattr(hook, name)
        if value is not None:
            head[name] = _n(_micros(value))
    schema, _, schema_parts = _blob_attrs("schema", hook.schema)
    if schema_parts or _item_bytes(schema) > MAX_HOOK_SCHEMA_BYTES:
        raise StorageError(
            f"dynamodb: the schema of hook {hook.hook_id!r} is over "
            f"{MAX_HOOK_SCHEMA_BYTES} bytes compressed; it must fit in the hook item"
        )
    head.update(schema)
    payload, _, parts = _blob_attrs("payload", hook.payload)
    head.update(payload)
    if parts:
        head["payload_part"] = _s(version)
    return head, _part_items(hook.token_hash, version, parts)


def _item_to_hook(item: Item, chunked_payload: bytes | None) -> HookRecord:
    payload = (
        zlib.decompress(chunked_payload).decode()
        if chunked_payload is not None
        else _payload(item, "payload")
    )
    return HookRecord(
        token_hash=item["token_hash"]["S"],
        run_id=item["run_id"]["S"],
        hook_id=item["hook_id"]["S"],
        name=item["name"]["S"],
        token=_opt_str(item, "token") or "",
        status=_HOOK_STATUSES[item["hook_status"]["S"]],
        created_at=_from_micros(item["created_at"]["N"]),
        expires_at=_opt_dt(item, "expires_at"),
        received_at=_opt_dt(item, "received_at"),
        payload=payload,
        schema=_payload(item, "schema"),
    )


def _hook_order(item: Item) -> tuple[int, str]:
    return int(item["created_at"]["N"]), item["token_hash"]["S"]
