"""Attribute values of the DynamoDB backend's items: numbers, strings, datetimes (epoch
microseconds) and possibly large strings (plain, zlib-compressed, or split into chunks)."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from pyworkflow.core.exceptions import PayloadTooLargeError

Item = dict[str, Any]

# Data above this many bytes is zlib-compressed; compressed data above CHUNK_BYTES is
# split into chunk items. Both stay well under the 400 KB item limit with the keys.
COMPRESS_OVER = 16 * 1024
CHUNK_BYTES = 350_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Shifts epoch microseconds of any datetime (year 1..9999) to 0..3.2e17: 18 digits.
_SORT_OFFSET = (_EPOCH - datetime(1, 1, 1, tzinfo=UTC)) // _MICROSECOND
_SORT_WIDTH = 18


def _micros(value: datetime) -> int:
    # Exact integer arithmetic; an aware datetime in any zone maps to the same instant.
    return (value - _EPOCH) // _MICROSECOND


def _from_micros(value: str) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value))


def _sort_key(micros: int) -> str:
    """Fixed-width digits whose string order is the numeric order of ``micros``."""
    return f"{micros + _SORT_OFFSET:0{_SORT_WIDTH}d}"


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _blob_attrs(name: str, value: str | None) -> tuple[Item, list[str], list[bytes]]:
    """Attributes to set and to remove for a possibly large string, and its chunks.

    Plain (``name``) up to 16 KiB, else zlib-compressed (``<name>_z``) when that is
    smaller; compressed bytes over ``CHUNK_BYTES`` are returned as chunks (and the
    count as ``<name>_chunks``) for the caller to store as separate items.
    """
    plain, packed_name, count = name, f"{name}_z", f"{name}_chunks"
    if value is None:
        return {}, [plain, packed_name, count], []
    raw = value.encode()
    if len(raw) > COMPRESS_OVER:
        packed = zlib.compress(raw, 6)
        if len(packed) > CHUNK_BYTES:
            parts = [packed[i : i + CHUNK_BYTES] for i in range(0, len(packed), CHUNK_BYTES)]
            return {count: _n(len(parts))}, [plain, packed_name], parts
        if len(packed) < len(raw):
            return {packed_name: {"B": packed}}, [plain, count], []
    return {plain: _s(value)}, [packed_name, count], []


def _payload_attrs(name: str, value: str | None) -> tuple[Item, list[str]]:
    """Attributes to set and to remove for a run payload field (plain or compressed)."""
    sets, removes, parts = _blob_attrs(name, value)
    if parts:
        raw = len(value.encode()) if value is not None else 0
        packed = sum(len(p) for p in parts)
        raise PayloadTooLargeError(
            f"dynamodb: {name} is {raw:,} bytes ({packed:,} compressed, over "
            f"{CHUNK_BYTES:,}); a run item must stay under DynamoDB's 400 KB item limit. "
            "Keep large values in step results (events are chunked) or external storage; "
            "nothing was written.",
            field=name,
            size=raw,
            limit=CHUNK_BYTES,
        )
    # Run payloads are never chunked: there is no count attribute to remove.
    return sets, [r for r in removes if r != f"{name}_chunks"]


def _opt_dt(item: Item, name: str) -> datetime | None:
    value = item.get(name)
    return None if value is None else _from_micros(value["N"])


def _opt_str(item: Item, name: str) -> str | None:
    value = item.get(name)
    return None if value is None else cast(str, value["S"])


def _payload(item: Item, name: str) -> str | None:
    packed = item.get(f"{name}_z")
    if packed is not None:
        return zlib.decompress(_bytes(packed["B"])).decode()
    return _opt_str(item, name)


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else bytes(value)


def _item_bytes(item: Item) -> int:
    """Approximate stored size of an item (names plus values), for limit checks."""
    total = 0
    for name, value in item.items():
        total += len(name)
        (kind, raw), *_ = value.items()
        if kind in ("S", "N"):
            total += len(raw.encode()) if kind == "S" else len(raw)
        elif kind == "B":
            total += len(raw)
        elif kind == "L":
            total += sum(len(v.get("S", "").encode()) + 3 for v in raw) + 3
        else:
            total += 1
    return total
