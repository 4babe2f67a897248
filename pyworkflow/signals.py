"""Sending signals to runs: ``send_signal`` and what ``start(..., signal=...)`` sends.

A signal goes to the run's inbox in storage (unfenced: the sender never touches the
run's log, which only its owner writes); the run moves it into its history when its code
waits for it (:func:`pyworkflow.wait_for_signal`). See ``docs/signals.md``.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from pydantic import BaseModel

from pyworkflow.core.config import discover_workflows, get_config, get_storage, resolve_storage
from pyworkflow.core.exceptions import RunEndedError, RunNotFoundError, SerializationError
from pyworkflow.core.registry import get_workflow
from pyworkflow.primitives.signals import check_signal_name, signal_model
from pyworkflow.runtime import get_runtime
from pyworkflow.storage.base import SIGNALS, StorageBackend, require_capability
from pyworkflow.storage.payloads import check_size, refuse_non_finite
from pyworkflow.storage.schemas import RunStatus, SignalRecord, utcnow

# How many continue_as_new links a send follows to the run that takes it.
_MAX_HOPS = 1000

_SIGNAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")


def encode_signal_payload(name: str, payload: Any, limit: Any = None) -> str:
    """``payload`` as the JSON text stored for signal ``name``: validated by the signal's
    model when this process knows one (``define_signal``, a configured workflow module).

    Raises:
        pydantic.ValidationError: the payload does not match the signal's model.
        SerializationError: it is not a JSON value (or holds NaN / an infinity).
        PayloadTooLargeError: it is over ``limit``.
    """
    model = signal_model(name)
    if model is None:
        discover_workflows()  # the model may be defined in a configured workflow module
        model = signal_model(name)
    if model is not None:
        payload = model.model_validate(payload).model_dump(mode="json")
    elif isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json")
    what = f"payload of signal {name!r}"
    try:
        text = json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        refuse_non_finite(payload, what)
        raise SerializationError(f"{what} must be a JSON value: {exc}") from None
    if limit is not None:
        check_size(text, what, limit)
    return text


async def send_signal(
    run_id: str,
    name: str,
    payload: Any = None,
    *,
    signal_id: str | None = None,
    storage: StorageBackend | str | None = None,
    wake_here: bool = True,
) -> SignalRecord:
    """Send signal ``name`` with ``payload`` to the run; return it as stored.

    The run takes it at a ``wait_for_signal(name)``, now if it is waiting, else when it
    next waits (signals are buffered, and each wait takes the oldest one not taken).
    ``signal_id`` makes the send idempotent: a second send with the same id to the same
    run stores nothing and returns the first (default: a fresh id). A run that continued
    as new passes the signal on to the run continuing it (the returned record names it).

    A run waiting for signals is woken: under the local runtime on the caller's event
    loop when its workflow is registered here (``wake_here=False`` for callers that
    exit at once, such as the CLI), else by whichever process serves it (the stored
    signal makes the run due, so its timers bring it back).

    Raises:
        ValueError: ``name`` or ``signal_id`` is not a valid name.
        RunNotFoundError: no such run.
        RunEndedError: the run has ended (nothing was stored).
        pydantic.ValidationError: the payload does not match the signal's model.
        SerializationError: the payload is not a JSON value.
        PayloadTooLargeError: the payload is over the payload limit.
        ConfigurationError: the storage keeps no signal inboxes.
    """
    check_signal_name(name)
    if signal_id is None:
        signal_id = f"sig_{uuid.uuid4().hex}"
    elif not isinstance(signal_id, str) or not _SIGNAL_ID.fullmatch(signal_id):
        raise ValueError(
            "signal_id must be 1-200 characters of letters, digits, '_', '.', ':' or '-', "
            f"not {signal_id!r}"
        )
    backend = get_storage() if storage is None else resolve_storage(storage)
    require_capability(backend, SIGNALS)
    await backend.connect()
    run = await backend.get_run(run_id)
    if run is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    text = encode_signal_payload(name, payload, backend.payload_limit)
    for _ in range(_MAX_HOPS):
        stored = await backend.send_signal(
            run.run_id, name, text, signal_id=signal_id, now=utcnow()
        )
        if stored is not None:
            break
        run = await backend.get_run(run.run_id) or run
        if run.status != RunStatus.CONTINUED_AS_NEW or not run.continued_to_run_id:
            raise RunEndedError(
                f"run {run.run_id!r} has ended ({run.status.value}): signal {name!r} not sent"
            )
        # A loop that continued as new: the signal goes to the run continuing it.
        run = await backend.get_run(run.continued_to_run_id) or run
    else:
        raise RunEndedError(f"run {run_id!r}: its continue_as_new chain is too long to follow")
    if run.status != RunStatus.SUSPENDED:
        run = await backend.get_run(run.run_id) or run
    if run.status == RunStatus.SUSPENDED:
        # A run executing now reads its inbox before it suspends; only a suspended one
        # needs waking (the stored signal already made it due: this is for speed).
        runtime_name = get_config().default_runtime
        if runtime_name != "local" or (wake_here and get_workflow(run.workflow_name)):
            await get_runtime(runtime_name).wake(run.run_id, backend)
    return stored


__all__ = ["encode_signal_payload", "send_signal"]
