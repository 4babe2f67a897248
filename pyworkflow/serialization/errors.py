"""Store exceptions in the event log and rebuild them on replay.

An encoded error is a JSON-native dict::

    {"type": "module.QualName", "message": "...", "traceback": "...",
     "cls": "module:QualName", "args": [...] | None, "attrs": {...} | None,
     "pickled": "..." | None}

``args`` and ``attrs`` are the exception's ``args`` and instance attributes (what its
``__reduce__`` keeps), encoded without pickle. Decoding imports the class named by
``cls``, only if it is an ``Exception`` subclass, calls it with ``args`` and restores
``attrs`` and ``args``; the library's own errors go through the same rebuilder as their
``__reduce__``. ``args`` is ``None`` when a value in them would need pickle. Records
written by earlier versions have no ``cls``/``args``: their class (from ``type``) is
called with the message.

``pickled`` (base64 cloudpickle) is written and read only when the ``allow_pickle``
setting is on. When the exception cannot be rebuilt, decoding yields a
:class:`~pyworkflow.core.exceptions.StepFailedError` carrying the message and the
original type name.
"""

from __future__ import annotations

import base64
import traceback
from typing import Any

import cloudpickle

from pyworkflow.core.exceptions import (
    SerializationError,
    StepFailedError,
    WorkflowError,
    _rebuild_error,  # the library errors' own __reduce__ rebuilder
)
from pyworkflow.serialization.decoder import decode, import_class
from pyworkflow.serialization.encoder import class_path, encode
from pyworkflow.serialization.policy import pickle_allowed


def encode_error(exc: BaseException) -> dict[str, Any]:
    """Encode an exception as a JSON-native dict.

    Args:
        exc: The exception to encode (its traceback, if any, is rendered as text).

    Returns:
        A dict with ``type``, ``message``, ``traceback``, ``cls``, ``args``, ``attrs``
        and ``pickled`` keys (``pickled`` is ``None`` unless ``allow_pickle`` is on).
    """
    cls = type(exc)
    args, attrs = _constructor_data(exc)
    return {
        "type": f"{cls.__module__}.{cls.__qualname__}",
        "message": _message(exc),
        "traceback": "".join(traceback.format_exception(exc)) if exc.__traceback__ else "",
        "cls": class_path(cls),
        "args": args,
        "attrs": attrs,
        "pickled": _pickle(exc) if pickle_allowed() else None,
    }


def decode_error(data: dict[str, Any]) -> BaseException:
    """Rebuild an exception encoded by :func:`encode_error`.

    Args:
        data: The dict :func:`encode_error` returned (possibly after a JSON round trip).

    Returns:
        The original exception (same class, message and attributes) when it can be
        rebuilt, otherwise a ``StepFailedError(message, error_type=type)``.
    """
    if pickle_allowed():
        unpickled = _unpickle(data.get("pickled"))
        if unpickled is not None:
            return unpickled
    rebuilt = _rebuild(data)
    if rebuilt is not None:
        return rebuilt
    return StepFailedError(str(data.get("message", "")), error_type=data.get("type"))


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        # A broken __str__ must not hide the error being recorded.
        return repr(exc.args)


def _constructor_data(exc: BaseException) -> tuple[Any, Any]:
    state = dict(getattr(exc, "__dict__", None) or {})
    # A library error is rebuilt from its message and attributes, as by its __reduce__.
    args = [exc.message] if isinstance(exc, WorkflowError) else list(exc.args)
    where = f"arguments of exception {type(exc).__qualname__!r}"
    try:
        return encode(args, where=where, allow_pickle=False), encode(
            state, where=where, allow_pickle=False
        )
    except SerializationError:
        return None, None


def _rebuild(data: dict[str, Any]) -> Exception | None:
    cls = _exception_class(data)
    if cls is None:
        return None
    try:
        if "args" not in data:  # written by an earlier version: the message is all we have
            return cls(str(data.get("message", "")))
        args = decode(data["args"], allow_pickle=False)
        attrs = decode(data.get("attrs") or {}, allow_pickle=False)
        if not isinstance(args, list) or not isinstance(attrs, dict):
            return None  # None: a value in them needed pickle when it was recorded
        if issubclass(cls, WorkflowError):
            return _rebuild_error(cls, str(args[0]) if args else "", attrs)
        err = cls(*args)
        err.__dict__.update(attrs)
        # An __init__ that rewrites its arguments (message formatting) must not do so twice.
        err.args = tuple(args)
    except Exception:  # noqa: BLE001 - an exception we cannot rebuild becomes StepFailedError
        return None
    return err


def _exception_class(data: dict[str, Any]) -> type[Exception] | None:
    """The recorded class, imported by name, if it is an ``Exception`` subclass."""
    path = data.get("cls")
    for candidate in [path] if isinstance(path, str) else _dotted_paths(data.get("type")):
        try:
            cls = import_class(candidate)
        except SerializationError:
            continue
        return cls if issubclass(cls, Exception) else None
    return None


def _dotted_paths(name: Any) -> list[str]:
    """``a.b.C`` (written before ``cls`` existed) as ``a.b:C`` then ``a:b.C``."""
    if not isinstance(name, str):
        return []
    parts = name.split(".")
    return [f"{'.'.join(parts[:i])}:{'.'.join(parts[i:])}" for i in range(len(parts) - 1, 0, -1)]


def _pickle(exc: BaseException) -> str | None:
    try:
        data: bytes = cloudpickle.dumps(exc)
    except Exception:
        return None
    # Pickling succeeds for many exceptions that cannot be rebuilt; find out now, while the
    # original is at hand, rather than on replay.
    if _load(data) is None:
        return None
    return base64.b64encode(data).decode("ascii")


def _unpickle(pickled: Any) -> BaseException | None:
    if not isinstance(pickled, str):
        return None
    try:
        data = base64.b64decode(pickled, validate=True)
    except ValueError:
        return None
    return _load(data)


def _load(data: bytes) -> BaseException | None:
    try:
        obj = cloudpickle.loads(data)
    except Exception:
        return None
    return obj if isinstance(obj, BaseException) else None
