"""What storage accepts as a payload: strict JSON (no ``NaN`` or ``Infinity``, which are
not JSON and which other readers of the stored data reject) of at most a size limit.

Backends check every value they are about to store (a run's payloads, event data, a hook
payload, a schedule's data) *before* their first write, so a refused value leaves
nothing behind. The limit is the ``max_payload_bytes`` option (default 2 MiB; the
configuration passes it here with :func:`set_max_payload_bytes`), or the server's own
limit when that is lower (a backend's
:attr:`~pyworkflow.storage.base.StorageBackend.server_payload_limit`, e.g. MySQL's
``max_allowed_packet``). Sizes are bytes of UTF-8 JSON text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from pyworkflow.core.exceptions import PayloadTooLargeError, SerializationError
from pyworkflow.serialization import compact_json
from pyworkflow.storage.schemas import Event, GateRecord, HookRecord, ScheduleRecord, WorkflowRun

DEFAULT_MAX_PAYLOAD_BYTES = 2 * 1024 * 1024
#: Run fields holding JSON text that may be large (user values and errors).
RUN_PAYLOAD_FIELDS = ("input_payload", "result_payload", "context_payload", "error")


class PayloadLimit(NamedTuple):
    """A size limit in bytes and where it comes from (for error messages)."""

    size: int
    source: str


_configured = PayloadLimit(DEFAULT_MAX_PAYLOAD_BYTES, "max_payload_bytes")


def set_max_payload_bytes(size: int) -> None:
    """Set the process-wide ``max_payload_bytes`` (the configuration calls this)."""
    global _configured
    _configured = PayloadLimit(size, "max_payload_bytes")


def effective_limit(server: PayloadLimit | None) -> PayloadLimit:
    """The configured limit, or ``server``'s when that is lower."""
    if server is not None and server.size < _configured.size:
        return server
    return _configured


def check_size(text: str | None, what: str, limit: PayloadLimit) -> None:
    """Refuse ``text`` if its UTF-8 encoding is over ``limit``.

    Raises:
        PayloadTooLargeError: naming ``what``, its size and the limit.
    """
    # UTF-8 needs at most 4 bytes per character: short texts need no encoding to check.
    if text is None or len(text) * 4 <= limit.size:
        return
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit.size:
        raise PayloadTooLargeError(
            f"{what} is {size:,} bytes, over the payload limit of {limit.size:,} bytes "
            f"({limit.source}); nothing was written",
            field=what,
            size=size,
            limit=limit.size,
        )


def strict_json(value: Any, what: str) -> str:
    """``value`` (JSON-native) as compact JSON text, refusing ``NaN`` and infinities.

    Raises:
        SerializationError: ``value`` holds a non-finite float; the message names
            ``what`` and the path to it (``data.result[2]``).
    """
    try:
        text = compact_json(value)
    except ValueError:  # an encoder built with allow_nan=False refuses them itself
        refuse_non_finite(value, what)
        raise
    # Non-finite floats render as these bare words; only then is the value walked.
    if "NaN" in text or "Infinity" in text:
        refuse_non_finite(value, what)
    return text


def loads_strict(text: str) -> Any:
    """JSON text from outside (a command line, a form) as a value, refusing ``NaN`` and
    infinities, which Python's reader accepts but no JSON reader elsewhere does.

    Raises:
        ValueError: it is not JSON (``json.JSONDecodeError``) or holds such a constant.
    """
    return json.loads(text, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def refuse_non_finite(value: Any, what: str) -> None:
    """Raise if ``value`` holds a NaN or infinite float.

    Raises:
        SerializationError: naming ``what``, the float and the path to it.
    """
    found = non_finite_path(value)
    if found is not None:
        raise SerializationError(
            f"{what} holds {found[1]} at {found[0] or 'the top level'}: NaN and "
            "Infinity are not JSON and cannot be stored"
        )


def non_finite_path(value: Any, path: str = "") -> tuple[str, float] | None:
    """Where ``value`` holds a NaN or infinite float (a ``data["k"][0]``-style path
    relative to ``value``, and the float), or ``None``."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    if isinstance(value, Mapping):
        items: Any = ((f"{path}[{k!r}]", v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for sub_path, item in items:
        found = non_finite_path(item, sub_path)
        if found is not None:
            return found
    return None


def event_json(run_id: str, event: Event, limit: PayloadLimit) -> str:
    """An event's ``data`` as strict JSON text, checked against ``limit``."""
    # The hot path of every write: render once, and look closer (and name the event)
    # only when the text could be refused.
    text = compact_json(event.data)
    if len(text) * 4 <= limit.size and "NaN" not in text and "Infinity" not in text:
        return text
    what = f"data of event {event.sequence} ({event.type.value}) of run {run_id!r}"
    text = strict_json(event.data, what)
    check_size(text, what, limit)
    return text


def check_events(run_id: str, events: Sequence[Event], limit: PayloadLimit) -> None:
    """Check events a backend stores without rendering them as JSON itself."""
    for event in events:
        event_json(run_id, event, limit)


def check_run(run: WorkflowRun, limit: PayloadLimit) -> None:
    """Check the payload fields of a run about to be created."""
    for name in RUN_PAYLOAD_FIELDS:
        check_size(getattr(run, name), f"{name} of run {run.run_id!r}", limit)


def check_changes(run_id: str, changes: Mapping[str, Any], limit: PayloadLimit) -> None:
    """Check the payload fields a run update sets."""
    for name in RUN_PAYLOAD_FIELDS:
        if name in changes:
            check_size(changes[name], f"{name} of run {run_id!r}", limit)


def check_hook(hook: HookRecord, limit: PayloadLimit) -> None:
    """Check a hook about to be saved (its payload, when it already has one)."""
    check_size(hook.payload, f"payload of hook {hook.hook_id!r} of run {hook.run_id!r}", limit)


def check_hook_payload(token_hash: str, payload: str | None, limit: PayloadLimit) -> None:
    """Check a payload about to be delivered to the hook with ``token_hash``."""
    check_size(payload, f"payload of hook {token_hash[:12]}...", limit)


def check_signal(run_id: str, name: str, payload: str, limit: PayloadLimit) -> None:
    """Check a signal payload about to be sent to the run's inbox."""
    check_size(payload, f"payload of signal {name!r} to run {run_id!r}", limit)


def check_schedule(schedule: ScheduleRecord, limit: PayloadLimit) -> None:
    """Check a schedule about to be saved."""
    check_size(schedule.data, f"data of schedule {schedule.schedule_id!r}", limit)


def check_gate(gate: GateRecord, limit: PayloadLimit) -> None:
    """Check a flow-control gate about to be saved."""
    check_size(gate.data, f"data of flow-control gate {gate.key!r}", limit)


__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "RUN_PAYLOAD_FIELDS",
    "PayloadLimit",
    "check_changes",
    "check_events",
    "check_gate",
    "check_hook",
    "check_hook_payload",
    "check_run",
    "check_schedule",
    "check_size",
    "effective_limit",
    "event_json",
    "non_finite_path",
    "refuse_non_finite",
    "set_max_payload_bytes",
    "strict_json",
]
