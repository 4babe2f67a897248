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

Sizes are capped, so an exception with a huge message is recorded as a normal failure
instead of making its own failure event too large to store. ``message`` keeps its first
:data:`ERROR_TEXT_LIMIT` (32 KiB) characters and ``traceback`` as many, its start and its
end (the innermost frames; a single line over 8 KiB, such as a huge message repeated in
the last line, is cut first); each cut is marked ``... [truncated N chars]``. Strings at
the top of ``args`` and ``attrs`` are cut like the message; if either is still over
:data:`ERROR_DATA_LIMIT` (64 KiB) both are dropped, and the error decodes as a
``StepFailedError`` with the recorded type name. An over-size ``pickled`` is dropped.
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
from pyworkflow.serialization.encoder import class_path, compact_json, encode
from pyworkflow.serialization.policy import pickle_allowed

#: The most characters of an error's message and of its traceback stored with it (the cut
#: mark comes on top); strings in its ``args`` and ``attrs`` are cut to it as well.
ERROR_TEXT_LIMIT = 32 * 1024
#: The most characters of each of an error's encoded ``args``, ``attrs`` and ``pickled``
#: (room for the message, cut, and a little more).
ERROR_DATA_LIMIT = 2 * ERROR_TEXT_LIMIT
# A traceback line longer than this (a huge message, as the final line repeats it) is
# cut on its own first, so the frames around it survive the cut of the whole.
_TRACEBACK_LINE_LIMIT = ERROR_TEXT_LIMIT // 4


def truncate_text(text: str, limit: int = ERROR_TEXT_LIMIT, *, keep_end: bool = False) -> str:
    """``text`` cut to ``limit`` characters, the cut marked ``... [truncated N chars]``.

    Args:
        text: what to shorten.
        limit: the most characters kept.
        keep_end: keep the start and the end and cut the middle (a traceback's last
            lines are its innermost frames and the error itself), instead of keeping the
            start only.
    """
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    if not keep_end:
        return f"{text[:limit]}... [truncated {cut:,} chars]"
    head = limit // 2
    return f"{text[:head]}\n... [truncated {cut:,} chars] ...\n{text[head - limit :]}"


def error_summary(error: Any) -> str:
    """An encoded error (or any value) as one line, ``Type: message``."""
    if isinstance(error, dict):
        kind = str(error.get("type") or "Error").rsplit(".", 1)[-1]
        message = str(error.get("message") or "")
        return f"{kind}: {message}" if message else kind
    return str(error)


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
    pickled = _pickle(exc) if pickle_allowed() else None
    return {
        "type": f"{cls.__module__}.{cls.__qualname__}",
        "message": truncate_text(_message(exc)),
        "traceback": _traceback(exc),
        "cls": class_path(cls),
        "args": args,
        "attrs": attrs,
        "pickled": pickled if pickled is None or len(pickled) <= ERROR_DATA_LIMIT else None,
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


def _traceback(exc: BaseException) -> str:
    if exc.__traceback__ is None:
        return ""
    lines = traceback.format_exception(exc)
    text = "".join(_cut_line(line) for line in lines)
    return truncate_text(text, keep_end=True)


def _cut_line(line: str) -> str:
    if len(line) <= _TRACEBACK_LINE_LIMIT:
        return line
    body = line.removesuffix("\n")
    return truncate_text(body, _TRACEBACK_LINE_LIMIT) + line[len(body) :]


def _constructor_data(exc: BaseException) -> tuple[Any, Any]:
    state = dict(getattr(exc, "__dict__", None) or {})
    # A library error is rebuilt from its message and attributes, as by its __reduce__.
    args = [exc.message] if isinstance(exc, WorkflowError) else list(exc.args)
    where = f"arguments of exception {type(exc).__qualname__!r}"
    try:
        encoded_args = _cut_strings(encode(args, where=where, allow_pickle=False))
        encoded_attrs = _cut_strings(encode(state, where=where, allow_pickle=False))
    except SerializationError:
        return None, None
    if max(len(compact_json(encoded_args)), len(compact_json(encoded_attrs))) > ERROR_DATA_LIMIT:
        return None, None  # still too large: decoded from the message and type alone
    return encoded_args, encoded_attrs


def _cut_strings(encoded: Any) -> Any:
    """An encoded list or dict with its top-level strings cut to the size limit (the
    message an exception was constructed with, usually)."""
    if isinstance(encoded, list):
        return [truncate_text(v) if isinstance(v, str) else v for v in encoded]
    if isinstance(encoded, dict):
        return {k: truncate_text(v) if isinstance(v, str) else v for k, v in encoded.items()}
    return encoded


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
