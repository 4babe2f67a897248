"""Items of a run: the run projection, its tag items and its event items (with data
chunks), and the reader that rebuilds events from them."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pyworkflow.core.exceptions import HistoryCorruptedError
from pyworkflow.storage.dynamodb.codec import (
    CHUNK_BYTES,
    COMPRESS_OVER,
    Item,
    _bytes,
    _from_micros,
    _micros,
    _n,
    _opt_dt,
    _opt_str,
    _payload,
    _payload_attrs,
    _s,
)
from pyworkflow.storage.dynamodb.keys import (
    _ALL,
    _CANCEL,
    _CHUNK_WIDTH,
    _DUE,
    _EVT,
    _RUN_SK,
    _SEQ_WIDTH,
    _TAG,
    _created_sk,
    _due_sk,
    _event_sk,
    _run_pk,
)
from pyworkflow.storage.payloads import PayloadLimit, event_json
from pyworkflow.storage.schemas import TERMINAL_STATUSES, Event, RunStatus, WorkflowRun

_STATUSES: dict[str, RunStatus] = {s.value: s for s in RunStatus}
_TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)

_DATETIME_FIELDS = frozenset(
    {
        "created_at",
        "updated_at",
        "started_at",
        "completed_at",
        "deadline_at",
        "wake_at",
        "cancel_requested_at",
        "lease_expires_at",
    }
)
_INT_FIELDS = frozenset({"recovery_attempts", "max_recovery_attempts", "nesting_depth"})
# Possibly large strings: stored as S, or zlib-compressed as B under "<name>_z".
_PAYLOAD_FIELDS = frozenset({"input_payload", "result_payload", "context_payload", "error"})
_STRING_FIELDS = frozenset(
    {
        "idempotency_key",
        "max_duration",
        "parent_run_id",
        "continued_from_run_id",
        "continued_to_run_id",
        "cancel_reason",
        "lease_owner",
        "queue",
        "trace_context",
    }
)
_REQUIRED_FIELDS = frozenset({"status", "updated_at", "recovery_attempts"})


def _field_attrs(name: str, value: Any) -> tuple[Item, list[str]]:
    """Attributes to set and to remove for one WorkflowRun field value (None clears)."""
    if name in _PAYLOAD_FIELDS:
        return _payload_attrs(name, value)
    if value is None:
        if name in _REQUIRED_FIELDS:
            raise ValueError(f"run field {name!r} cannot be cleared")
        return {}, [name]
    if name in _DATETIME_FIELDS:
        return {name: _n(_micros(value))}, []
    if name in _INT_FIELDS:
        return {name: _n(int(value))}, []
    if name == "status":
        return {name: _s(RunStatus(value).value)}, []
    if name in _STRING_FIELDS:
        return {name: _s(str(value))}, []
    raise ValueError(f"run field {name!r} cannot be updated")  # pragma: no cover


def _due_attrs(run_id: str, status: Any, wake_at: datetime | None) -> tuple[Item, list[str]]:
    """The sparse ``runs_due`` keys: present only while suspended with a wake time."""
    if status is not None and RunStatus(status) == RunStatus.SUSPENDED and wake_at is not None:
        return {"gsi_due": _s(_DUE), "due_sk": _s(_due_sk(wake_at, run_id))}, []
    return {}, ["gsi_due", "due_sk"]


def _cancel_attrs(changes: Mapping[str, Any]) -> tuple[Item, list[str]]:
    """The sparse ``runs_cancel_requested`` key a run update sets or removes.

    A run is in that index while it is asked to cancel and not finished: the write that
    records a request adds the key, one that clears the request or ends the run removes
    it. (A request a writer sets on a run that already ended adds it too; listing
    re-checks the status, so that entry is only skipped.)
    """
    ends = "status" in changes and RunStatus(changes["status"]) in TERMINAL_STATUSES
    if changes.get("cancel_requested_at") is not None and not ends:
        return {"gsi_cancel": _s(_CANCEL)}, []
    if ends or "cancel_requested_at" in changes:
        return {}, ["gsi_cancel"]
    return {}, []


def _run_item(run: WorkflowRun) -> Item:
    item: Item = {
        "PK": _s(_run_pk(run.run_id)),
        "SK": _s(_RUN_SK),
        "run_id": _s(run.run_id),
        "workflow_name": _s(run.workflow_name),
        "tags": {"L": [_s(t) for t in run.tags]},
        "recover_on_worker_loss": {"BOOL": bool(run.recover_on_worker_loss)},
        "last_sequence": _n(run.last_sequence),
        "created_sk": _s(_created_sk(run.created_at, run.run_id)),
        "gsi_all": _s(_ALL),
        "gsi_wf": _s(f"W#{run.workflow_name}"),
    }
    for name in (
        *_DATETIME_FIELDS,
        *_INT_FIELDS,
        *_PAYLOAD_FIELDS,
        *_STRING_FIELDS,
        "status",
    ):
        sets, _ = _field_attrs(name, getattr(run, name))
        item.update(sets)
    if run.parent_run_id is not None:
        item["gsi_parent"] = _s(f"P#{run.parent_run_id}")
    due, _ = _due_attrs(run.run_id, run.status, run.wake_at)
    item.update(due)
    cancel, _ = _cancel_attrs(
        {"status": run.status, "cancel_requested_at": run.cancel_requested_at}
    )
    item.update(cancel)
    return item


def _tag_items(run: WorkflowRun) -> list[Item]:
    """One item per distinct tag (tags never change after creation)."""
    items = []
    for tag in dict.fromkeys(run.tags):
        item: Item = {
            "PK": _s(_run_pk(run.run_id)),
            "SK": _s(f"{_TAG}{tag}"),
            "gsi_tag": _s(f"T#{tag}"),
            "created_sk": _s(_created_sk(run.created_at, run.run_id)),
            "run_id": _s(run.run_id),
            "workflow_name": _s(run.workflow_name),
        }
        if run.parent_run_id is not None:
            item["parent_run_id"] = _s(run.parent_run_id)
        items.append(item)
    return items


def _item_to_run(item: Item) -> WorkflowRun:
    return WorkflowRun(
        run_id=item["run_id"]["S"],
        workflow_name=item["workflow_name"]["S"],
        status=_STATUSES[item["status"]["S"]],
        created_at=_from_micros(item["created_at"]["N"]),
        updated_at=_from_micros(item["updated_at"]["N"]),
        started_at=_opt_dt(item, "started_at"),
        completed_at=_opt_dt(item, "completed_at"),
        input_payload=_payload(item, "input_payload"),
        result_payload=_payload(item, "result_payload"),
        error=_payload(item, "error"),
        idempotency_key=_opt_str(item, "idempotency_key"),
        max_duration=_opt_str(item, "max_duration"),
        deadline_at=_opt_dt(item, "deadline_at"),
        context_payload=_payload(item, "context_payload"),
        tags=[t["S"] for t in item["tags"]["L"]],
        recovery_attempts=int(item["recovery_attempts"]["N"]),
        max_recovery_attempts=int(item["max_recovery_attempts"]["N"]),
        recover_on_worker_loss=bool(item["recover_on_worker_loss"]["BOOL"]),
        parent_run_id=_opt_str(item, "parent_run_id"),
        nesting_depth=int(item["nesting_depth"]["N"]),
        continued_from_run_id=_opt_str(item, "continued_from_run_id"),
        continued_to_run_id=_opt_str(item, "continued_to_run_id"),
        wake_at=_opt_dt(item, "wake_at"),
        cancel_requested_at=_opt_dt(item, "cancel_requested_at"),
        cancel_reason=_opt_str(item, "cancel_reason"),
        lease_owner=_opt_str(item, "lease_owner"),
        lease_expires_at=_opt_dt(item, "lease_expires_at"),
        last_sequence=int(item["last_sequence"]["N"]),
        queue=_opt_str(item, "queue"),  # absent on items written before routing existed
        trace_context=_opt_str(item, "trace_context"),  # absent before tracing existed
    )


def _event_items(run_id: str, event: Event, limit: PayloadLimit) -> list[Item]:
    """The event's item, followed by its data chunks when the data is too large.

    Raises:
        SerializationError: the data holds NaN or an infinity.
        PayloadTooLargeError: the data is over ``limit``.
    """
    sk = _event_sk(event.sequence)
    head: Item = {
        "PK": _s(_run_pk(run_id)),
        "SK": _s(sk),
        "sequence": _n(event.sequence),
        "event_id": _s(event.event_id),
        "type": _s(event.type.value),
        "timestamp": _n(_micros(event.timestamp)),
    }
    text = event_json(run_id, event, limit)
    raw = text.encode()
    if len(raw) <= COMPRESS_OVER:
        head["data"] = _s(text)
        return [head]
    packed = zlib.compress(raw, 6)
    if len(packed) <= CHUNK_BYTES:
        head["data_z"] = {"B": packed}
        return [head]
    parts = [packed[i : i + CHUNK_BYTES] for i in range(0, len(packed), CHUNK_BYTES)]
    head["chunks"] = _n(len(parts))
    chunks: list[Item] = [
        {"PK": _s(_run_pk(run_id)), "SK": _s(f"{sk}#{i:0{_CHUNK_WIDTH}d}"), "part": {"B": part}}
        for i, part in enumerate(parts)
    ]
    return [head, *chunks]


class _EventReader:
    """Rebuilds events from their items (heads and chunks, in sort-key order).

    An item that does not decode raises :class:`HistoryCorruptedError` naming its
    sequence (from its sort key).
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.events: list[Event] = []
        self._head: Item | None = None
        self._parts: list[bytes] = []

    def feed(self, item: Item) -> None:
        if "part" in item:
            if self._head is None:
                raise self._corrupted(item, "a data chunk without its event item")
            self._parts.append(_bytes(item["part"]["B"]))
            return
        self._finish()
        if "chunks" in item:
            self._head = item
        else:
            self.events.append(self._event(item, None))

    def done(self) -> list[Event]:
        self._finish()
        return self.events

    def _finish(self) -> None:
        head, parts = self._head, self._parts
        if head is None:
            return
        self._head, self._parts = None, []
        if len(parts) != int(head["chunks"]["N"]):
            raise self._corrupted(head, f"{len(parts)} of {head['chunks']['N']} data chunks")
        self.events.append(self._event(head, b"".join(parts)))

    def _event(self, item: Item, packed: bytes | None) -> Event:
        data: str | bytes | None = None
        try:
            data = self._data(item, packed)
            return Event.from_stored(
                self.run_id,
                int(item["sequence"]["N"]),
                item["event_id"]["S"],
                item["type"]["S"],
                item["timestamp"]["N"],
                data,
                _from_micros,
            )
        except (KeyError, TypeError, ValueError):
            pass
        # A missing or mistyped attribute: read leniently, so the shared rule names it.
        return Event.from_stored(
            self.run_id,
            _attr(item, "sequence", "N"),
            _attr(item, "event_id", "S"),
            _attr(item, "type", "S"),
            _attr(item, "timestamp", "N"),
            _attr(item, "data", "S") if data is None else data,
            _from_micros,
            position=_sk_sequence(item),
        )

    def _data(self, item: Item, packed: bytes | None) -> str | bytes:
        try:
            if packed is not None:
                return zlib.decompress(packed)
            if "data_z" in item:
                return zlib.decompress(_bytes(item["data_z"]["B"]))
        except zlib.error as exc:
            raise self._corrupted(item, f"event data does not decompress ({exc})") from None
        text: str = item["data"]["S"]
        return text

    def _corrupted(self, item: Item, reason: str) -> HistoryCorruptedError:
        """The error for a damaged item, at the sequence of its sort key."""
        return HistoryCorruptedError(self.run_id, _sk_sequence(item), reason)


def _attr(item: Item, name: str, kind: str) -> Any:
    """The value of attribute ``name`` if it has type ``kind`` (``None`` otherwise); a
    number as ``int`` when it is one."""
    value = item.get(name)
    value = value.get(kind) if isinstance(value, dict) else None
    if kind == "N" and isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value)
    return value


def _sk_sequence(item: Item) -> int | None:
    """The sequence in an event item's sort key (``EVT#<digits>[#chunk]``)."""
    digits = str(_attr(item, "SK", "S") or "")[len(_EVT) :][:_SEQ_WIDTH]
    return int(digits) if digits.isdigit() else None
