"""Records <-> Redis hashes and events <-> JSON list items.

Run, hook, schedule and gate hashes hold one field per non-``None`` record field, encoded from
the dataclass field types (:class:`Codec`), so a field added to a dataclass round-trips
without a change here or a migration (old records read its default). Datetimes are
exact integer epoch microseconds, in hashes and in events. Hot path: a few C-level
operations per value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pyworkflow.serialization import compact_json
from pyworkflow.storage.payloads import PayloadLimit, effective_limit, event_json
from pyworkflow.storage.schemas import (
    Event,
    GateRecord,
    HookRecord,
    HookStatus,
    RunStatus,
    ScheduleRecord,
    ScheduleStatus,
    WorkflowRun,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(value: datetime) -> int:
    """``value`` as integer epoch microseconds."""
    # Exact integer arithmetic; an aware datetime in any zone maps to the same instant.
    return (value - _EPOCH) // _MICROSECOND


def from_micros(value: str | bytes | int) -> datetime:
    """The UTC datetime of integer epoch microseconds (as a number or its digits)."""
    return _EPOCH + timedelta(microseconds=int(value))


def text(value: str | bytes) -> str:
    """A reply item as ``str`` (the client may or may not decode responses)."""
    return value.decode() if isinstance(value, bytes) else value


class Codec:
    """Hash field <-> value conversion for one record dataclass, derived from its field
    types, so a field added to the dataclass round-trips without touching this module:
    datetimes as integer epoch microseconds, enums by value, ``bool`` as ``0``/``1``,
    ``int`` as decimal, ``str`` as is, anything else (lists, dicts) as JSON. ``None`` is
    an absent field, which reads back as the dataclass default."""

    def __init__(self, cls: type[Any], enums: Mapping[str, type[StrEnum]]) -> None:
        self.cls = cls
        self.encoders: dict[str, Callable[[Any], str]] = {}
        self.decoders: dict[str, Callable[[str], Any]] = {}
        for f in fields(cls):
            kind = str(f.type).replace(" | None", "").strip()
            encode: Callable[[Any], str]
            decode: Callable[[str], Any]
            if kind == "datetime":
                encode, decode = _encode_dt, from_micros
            elif kind in enums:
                encode, decode = _enum_codec(enums[kind])
            elif kind == "bool":
                encode, decode = (lambda v: "1" if v else "0"), (lambda v: v == "1")
            elif kind == "int":
                encode, decode = (lambda v: str(int(v))), int
            elif kind == "str":
                encode, decode = str, _identity
            else:
                encode, decode = compact_json, json.loads
            self.encoders[f.name] = encode
            self.decoders[f.name] = decode

    def pairs(self, record: Any) -> list[str]:
        """``[field, value, ...]`` of the record's non-``None`` fields."""
        out: list[str] = []
        for name, encode in self.encoders.items():
            value = getattr(record, name)
            if value is not None:
                out += (name, encode(value))
        return out

    def encode(self, name: str, value: Any) -> str:
        """One field's value as stored in the hash."""
        return self.encoders[name](value)

    def decode(self, raw: Mapping[Any, Any] | Sequence[Any]) -> Any:
        """The record from ``HGETALL`` output, or ``None`` when it is empty."""
        h = _decode_hash(raw)
        if not h:
            return None
        decoders = self.decoders
        # Internal fields (``_m``, ``_w``) and fields of a newer version are skipped.
        return self.cls(**{k: decoders[k](v) for k, v in h.items() if k in decoders})


def _enum_codec(enum: type[StrEnum]) -> tuple[Callable[[Any], str], Callable[[str], Any]]:
    by_value = {member.value: member for member in enum}

    def encode(value: Any) -> str:
        return enum(value).value

    return encode, by_value.__getitem__


def _encode_dt(value: datetime) -> str:
    return str(micros(value))


def _identity(value: str) -> str:
    return value


def _decode_hash(raw: Mapping[Any, Any] | Sequence[Any]) -> dict[str, str]:
    """``HGETALL`` output (a dict from redis-py, a flat list from a script) as text."""
    if isinstance(raw, Mapping):
        return {text(k): text(v) for k, v in raw.items()}
    items = [text(v) for v in raw]
    return dict(zip(items[::2], items[1::2], strict=True))


RUNS = Codec(WorkflowRun, {"RunStatus": RunStatus})
HOOKS = Codec(HookRecord, {"HookStatus": HookStatus})
SCHEDULES = Codec(ScheduleRecord, {"ScheduleStatus": ScheduleStatus})
GATES = Codec(GateRecord, {})


def run_from_hash(raw: Mapping[Any, Any] | Sequence[Any]) -> WorkflowRun | None:
    """The run of a ``HGETALL`` reply, ``None`` for an empty one."""
    run: WorkflowRun | None = RUNS.decode(raw)
    return run


def hook_from_hash(raw: Mapping[Any, Any] | Sequence[Any]) -> HookRecord | None:
    """The hook of a ``HGETALL`` reply, ``None`` for an empty one."""
    hook: HookRecord | None = HOOKS.decode(raw)
    return hook


def schedule_from_hash(raw: Mapping[Any, Any] | Sequence[Any]) -> ScheduleRecord | None:
    """The schedule of a ``HGETALL`` reply, ``None`` for an empty one."""
    schedule: ScheduleRecord | None = SCHEDULES.decode(raw)
    return schedule


def gate_from_hash(raw: Mapping[Any, Any] | Sequence[Any]) -> GateRecord | None:
    """The gate of a ``HGETALL`` reply, ``None`` for an empty one."""
    gate: GateRecord | None = GATES.decode(raw)
    return gate


def encode_event(run_id: str, event: Event, limit: PayloadLimit | None = None) -> str:
    """An event as one compact JSON list item (its ``run_id`` is the list's).

    Raises:
        SerializationError: the data holds NaN or an infinity.
        PayloadTooLargeError: the data is over ``limit`` (default: ``max_payload_bytes``).
    """
    data = event_json(run_id, event, limit or effective_limit(None))
    # The same text compact_json gives for the whole item, with the data checked once.
    ts = micros(event.timestamp)
    head = compact_json({"s": event.sequence, "i": event.event_id, "t": event.type.value, "ts": ts})
    return f'{head[:-1]},"d":{data}}}'


# Keys of an event item (see encode_event), in Event.from_stored_record's order.
_EVENT_KEYS = ("s", "i", "t", "ts", "d")


def decode_events(run_id: str, items: Sequence[Any], after_sequence: int) -> list[Event]:
    """The events of ``run_id`` from its log items after index ``after_sequence`` (item
    ``n - 1`` holds sequence ``n``): the parsed objects of the ``events`` script's array,
    or the raw text of each item.

    Raises:
        HistoryCorruptedError: an item does not decode.
    """
    first = after_sequence + 1
    from_stored = Event.from_stored
    try:
        return [
            from_stored(run_id, e["s"], e["i"], e["t"], e["ts"], e["d"], from_micros, n)
            for n, e in enumerate(items, first)
        ]
    except (KeyError, TypeError):  # an item that is not an object, or lacks a key
        decode = Event.from_stored_record
        return [decode(run_id, e, n, from_micros, _EVENT_KEYS) for n, e in enumerate(items, first)]
