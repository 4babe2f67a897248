"""Turn Python values into JSON-native trees (see the package docstring for the wire format).

The native fast path comes first because every step argument and result passes through
here; everything else dispatches on the exact type, so subclasses we do not know how to
rebuild faithfully (``OrderedDict``, a ``datetime`` subclass...) are not silently stripped
of their type: they need pickle, which only the ``allow_pickle`` setting permits (see
:mod:`.policy`).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sys
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import cloudpickle
from pydantic import BaseModel

from pyworkflow.core.exceptions import SerializationError
from pyworkflow.serialization.policy import SETTING_HINT, forced, pickle_allowed, pickle_policy

TAG_KEY = "__pw__"
"""The reserved key that marks a dict as a tagged value rather than a plain mapping."""

NATIVE_TYPES: frozenset[type] = frozenset({str, int, float, bool, type(None)})


def encode(value: Any, *, where: str = "value", allow_pickle: bool | None = None) -> Any:
    """Encode ``value`` into a tree of JSON-native values.

    Plain JSON data (str/int/float/bool/None, lists, dicts with str keys) comes back as an
    equal plain structure; other supported types become tagged dicts; anything else is
    pickled with cloudpickle, if pickle is allowed.

    Args:
        value: The value to encode.
        where: Human description of the value's origin, used in error messages (for
            example ``"result of step 'charge'"``).
        allow_pickle: ``None`` follows the ``allow_pickle`` setting; ``False`` refuses
            pickle for this call whatever the setting; ``True`` allows it.

    Returns:
        A tree made only of dict (str keys), list, str, int, float, bool and None.

    Raises:
        SerializationError: If the value (or something inside it) is not encodable and
            pickle is not allowed, or it cannot be pickled either.
    """
    if type(value) in NATIVE_TYPES:
        return value
    if allow_pickle is not None:
        with pickle_policy(allow_pickle):
            return encode(value, where=where)
    try:
        return _encode(value, where)
    except SerializationError:
        raise
    except RecursionError as exc:
        raise SerializationError(
            f"cannot serialize {where}: the value is nested too deeply or contains a cycle"
        ) from exc
    except Exception as exc:
        # A broken __eq__, property or model_dump must not surface as a bare TypeError.
        raise SerializationError(f"cannot serialize {where}: {type(exc).__name__}: {exc}") from exc


# One encoder for every stored JSON text: json.dumps with options builds an encoder per
# call, and JSONEncoder.encode still builds its C encoder per call; the C encoder itself
# is built once here (no cycle check: the values are encoded trees, and a cycle still
# ends in RecursionError). Where the C accelerator is missing, the portable path.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_C_COMPACT = (
    _c_make_encoder(
        None, _COMPACT.default, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
    if _c_make_encoder is not None
    else None
)


def compact_json(value: Any) -> str:
    """Plain JSON values (already encoded trees) as compact UTF-8 JSON text, the form
    storage backends write."""
    if _C_COMPACT is None:
        return _COMPACT.encode(value)
    return "".join(_C_COMPACT(value, 0))


def dumps(value: Any, *, where: str = "value") -> str:
    """Encode ``value`` and render it as JSON text.

    Args:
        value: The value to encode.
        where: Human description of the value's origin, used in error messages.

    Returns:
        The JSON text of :func:`encode`'s result.

    Raises:
        SerializationError: If the value cannot be encoded.
    """
    return json.dumps(encode(value, where=where))


def class_path(cls: type) -> str:
    """Return the ``module:QualName`` import path of ``cls``."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _encode(value: Any, where: str) -> Any:
    t = type(value)
    if t in NATIVE_TYPES:
        return value
    if t is list:
        return [x if type(x) in NATIVE_TYPES else _encode(x, where) for x in value]
    if t is dict:
        return _encode_dict(value, where)
    if t is tuple:
        return {TAG_KEY: "tuple", "v": [_encode(x, where) for x in value]}
    if t is set or t is frozenset:
        return {TAG_KEY: t.__name__, "v": _sorted_items(value, where)}
    scalar = _SCALARS.get(t)
    if scalar is not None:
        return scalar(value)
    return _encode_object(value, where)


def _encode_dict(value: dict[Any, Any], where: str) -> Any:
    if TAG_KEY not in value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            if type(k) is not str:
                break
            out[k] = v if type(v) in NATIVE_TYPES else _encode(v, where)
        else:
            return out
    pairs = [[_encode(k, where), _encode(v, where)] for k, v in value.items()]
    return {TAG_KEY: "dict", "v": pairs}


def _sorted_items(value: Any, where: str) -> list[Any]:
    # Set iteration order depends on hash seeds; sorting keeps stored JSON stable across runs.
    items = [_encode(x, where) for x in value]
    return sorted(items, key=lambda x: json.dumps(x, sort_keys=True))


def _encode_datetime(value: datetime) -> Any:
    out: dict[str, Any] = {TAG_KEY: "datetime", "v": value.isoformat()}
    # The ISO offset alone would turn a named zone into a fixed offset; keep the zone name.
    if isinstance(value.tzinfo, ZoneInfo):
        out["zone"] = value.tzinfo.key
    return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


_SCALARS: dict[type, Callable[[Any], Any]] = {
    datetime: _encode_datetime,
    date: lambda v: {TAG_KEY: "date", "v": v.isoformat()},
    time: lambda v: {TAG_KEY: "time", "v": v.isoformat()},
    timedelta: lambda v: {TAG_KEY: "timedelta", "v": [v.days, v.seconds, v.microseconds]},
    Decimal: lambda v: {TAG_KEY: "decimal", "v": str(v)},
    UUID: lambda v: {TAG_KEY: "uuid", "v": str(v)},
    bytes: lambda v: {TAG_KEY: "bytes", "v": _b64(v)},
    bytearray: lambda v: {TAG_KEY: "bytearray", "v": _b64(bytes(v))},
}


def _encode_object(value: Any, where: str) -> Any:
    cls = type(value)
    if _importable(cls) or (_reachable(cls) and not pickle_allowed()):
        if isinstance(value, Enum):
            return {TAG_KEY: "enum", "cls": class_path(cls), "v": _encode(value.value, where)}
        if isinstance(value, BaseModel):
            dumped = _encode(value.model_dump(mode="python"), where)
            return {TAG_KEY: "pydantic", "cls": class_path(cls), "v": dumped}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = dataclasses.fields(value)
            state = {f.name: _encode(getattr(value, f.name), where) for f in fields}
            return {TAG_KEY: "dataclass", "cls": class_path(cls), "v": state}
    return _pickle(value, where)


def _importable(cls: type) -> bool:
    """Whether a worker could find ``cls`` again by its import path.

    Classes in ``__main__`` or defined inside functions are not: they are pickled by value
    when ``allow_pickle`` is on. Without it, a ``__main__`` class is stored by reference,
    which the script that defined it (the local runtime) can read back, and other
    processes refuse with a clear error.
    """
    return cls.__module__ != "__main__" and _reachable(cls)


def _reachable(cls: type) -> bool:
    """Whether ``cls`` is found by its path in its (already loaded) module."""
    obj: Any = sys.modules.get(cls.__module__)
    for part in cls.__qualname__.split("."):
        obj = getattr(obj, part, None)
    return obj is cls


def _pickle(value: Any, where: str) -> Any:
    if not pickle_allowed():
        raise SerializationError(_refusal(value, where))
    try:
        data: bytes = cloudpickle.dumps(value)
    except Exception as exc:
        raise SerializationError(
            f"cannot serialize {where}: object of type {type(value).__qualname__!r} is not "
            f"JSON-encodable and cannot be pickled ({type(exc).__name__}: {exc})"
        ) from exc
    return {TAG_KEY: "pickle", "v": _b64(data)}


def _refusal(value: Any, where: str) -> str:
    cls = type(value)
    why = f"an object of type {cls.__qualname__!r} is not JSON-encodable"
    encodable_kind = isinstance(value, Enum | BaseModel) or dataclasses.is_dataclass(value)
    if encodable_kind and not isinstance(value, type):
        why += (
            f" (its class {class_path(cls)} is defined inside a function, where it cannot "
            "be imported again)"
        )
    if forced():
        return f"cannot serialize {where}: {why}, and pickled values are not accepted here"
    return (
        f"cannot serialize {where}: {why} and pickling is disabled; use JSON data, or a "
        f"dataclass, Pydantic model or Enum defined at module level, or {SETTING_HINT}"
    )
