"""Rebuild Python values from the JSON-native trees :mod:`.encoder` produces.

Stored data may outlive the code that wrote it, so every failure (unknown tag, a class that
moved, a corrupt pickle) is reported as a :class:`SerializationError` naming what was
being decoded rather than as whatever low-level error happened to surface. A pickled
value is loaded only when the ``allow_pickle`` setting permits it (see :mod:`.policy`).
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import json
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
from pyworkflow.serialization.encoder import NATIVE_TYPES, TAG_KEY
from pyworkflow.serialization.policy import SETTING_HINT, forced, pickle_allowed, pickle_policy

_Decoder = Callable[[dict[str, Any]], Any]


def decode(tree: Any, *, allow_pickle: bool | None = None) -> Any:
    """Rebuild the value :func:`~pyworkflow.serialization.encode` turned into ``tree``.

    Args:
        tree: A JSON-native tree, as produced by ``encode`` (or read back from JSON).
        allow_pickle: ``None`` follows the ``allow_pickle`` setting; ``False`` refuses
            pickled values for this call whatever the setting (data from outside the
            deployment's storage); ``True`` allows them.

    Returns:
        The original value, with its original types.

    Raises:
        SerializationError: If the tree holds an unknown tag, a class path that cannot be
            imported, a pickled value while pickle is not allowed, a corrupt pickle or
            otherwise malformed tagged data.
    """
    if type(tree) in NATIVE_TYPES:
        return tree
    if allow_pickle is not None:
        with pickle_policy(allow_pickle):
            return decode(tree)
    try:
        return _decode(tree)
    except SerializationError:
        raise
    except RecursionError as exc:
        raise SerializationError("cannot decode stored value: it is nested too deeply") from exc
    except Exception as exc:
        raise SerializationError(
            f"cannot decode stored value: {type(exc).__name__}: {exc}"
        ) from exc


def loads(text: str) -> Any:
    """Parse JSON text and decode it.

    Args:
        text: JSON text, as produced by :func:`~pyworkflow.serialization.dumps`.

    Returns:
        The original value.

    Raises:
        SerializationError: If the text is not valid JSON or cannot be decoded.
    """
    try:
        tree = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise SerializationError(f"cannot decode stored value: invalid JSON ({exc})") from exc
    return decode(tree)


def import_class(path: str) -> type:
    """Import the class named by a ``module:QualName`` path.

    Args:
        path: The class's import path, as written by the encoder.

    Returns:
        The class.

    Raises:
        SerializationError: If the module or attribute does not exist or is not a class.
    """
    module_name, sep, qualname = path.partition(":")
    try:
        if not sep or not module_name or not qualname:
            raise ValueError("expected 'module:QualName'")
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        hint = (
            "; it was defined in the script that stored it, which is not this process's "
            "__main__: define it in an importable module"
            if module_name == "__main__"
            else ""
        )
        raise SerializationError(
            f"cannot import class {path!r} ({type(exc).__name__}: {exc}){hint}"
        ) from exc
    if not isinstance(obj, type):
        raise SerializationError(f"cannot import class {path!r}: it names a non-class object")
    return obj


def _decode(tree: Any) -> Any:
    t = type(tree)
    if t in NATIVE_TYPES:
        return tree
    if t is list:
        return [x if type(x) in NATIVE_TYPES else _decode(x) for x in tree]
    if t is dict:
        if TAG_KEY in tree:
            return _decode_tagged(tree)
        return {k: v if type(v) in NATIVE_TYPES else _decode(v) for k, v in tree.items()}
    raise SerializationError(f"cannot decode stored value of type {t.__qualname__!r}")


def _decode_tagged(tree: dict[str, Any]) -> Any:
    tag = tree[TAG_KEY]
    handler = _BY_TAG.get(tag) if isinstance(tag, str) else None
    if handler is None:
        raise SerializationError(f"cannot decode stored value with unknown tag {tag!r}")
    try:
        return handler(tree)
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(
            f"cannot decode stored {tag!r} value ({type(exc).__name__}: {exc})"
        ) from exc


def _class_of(tree: dict[str, Any], base: type) -> Any:
    cls = import_class(tree["cls"])
    if not issubclass(cls, base):
        raise SerializationError(f"class {tree['cls']!r} is not a {base.__qualname__} subclass")
    return cls


def _decode_datetime(tree: dict[str, Any]) -> datetime:
    value = datetime.fromisoformat(tree["v"])
    zone = tree.get("zone")
    return value.astimezone(ZoneInfo(zone)) if zone else value


def _decode_enum(tree: dict[str, Any]) -> Enum:
    cls = _class_of(tree, Enum)
    member: Enum = cls(_decode(tree["v"]))
    return member


def _decode_pydantic(tree: dict[str, Any]) -> BaseModel:
    cls = _class_of(tree, BaseModel)
    model: BaseModel = cls.model_validate(_decode(tree["v"]))
    return model


def _decode_dataclass(tree: dict[str, Any]) -> Any:
    cls = import_class(tree["cls"])
    if not dataclasses.is_dataclass(cls):
        raise SerializationError(f"class {tree['cls']!r} is not a dataclass")
    state: dict[str, Any] = tree["v"]
    fields = [f for f in dataclasses.fields(cls) if f.name in state]
    # Fields added to the class since the value was stored fall back to their defaults;
    # stored fields the class no longer has are dropped.
    obj = cls(**{f.name: _decode(state[f.name]) for f in fields if f.init})
    for f in fields:
        if not f.init:
            # object.__setattr__ also works on frozen dataclasses.
            object.__setattr__(obj, f.name, _decode(state[f.name]))
    return obj


def _decode_pickle(tree: dict[str, Any]) -> Any:
    if forced():
        raise SerializationError("cannot decode value: pickled values are not accepted here")
    if not pickle_allowed():
        raise SerializationError(
            "cannot decode stored value: it holds a pickled value (written with allow_pickle "
            f"on, or by an earlier PyWorkflow version) and unpickling is disabled; {SETTING_HINT}"
        )
    try:
        return cloudpickle.loads(base64.b64decode(tree["v"], validate=True))
    except Exception as exc:
        raise SerializationError(
            f"cannot decode stored 'pickle' value: corrupt or unloadable pickle "
            f"({type(exc).__name__}: {exc})"
        ) from exc


def _b64(tree: dict[str, Any]) -> bytes:
    return base64.b64decode(tree["v"], validate=True)


_BY_TAG: dict[str, _Decoder] = {
    "tuple": lambda t: tuple(_decode(x) for x in t["v"]),
    "set": lambda t: {_decode(x) for x in t["v"]},
    "frozenset": lambda t: frozenset(_decode(x) for x in t["v"]),
    "dict": lambda t: {_decode(k): _decode(v) for k, v in t["v"]},
    "datetime": _decode_datetime,
    "date": lambda t: date.fromisoformat(t["v"]),
    "time": lambda t: time.fromisoformat(t["v"]),
    "timedelta": lambda t: timedelta(*t["v"]),
    "decimal": lambda t: Decimal(t["v"]),
    "uuid": lambda t: UUID(t["v"]),
    "bytes": _b64,
    "bytearray": lambda t: bytearray(_b64(t)),
    "enum": _decode_enum,
    "pydantic": _decode_pydantic,
    "dataclass": _decode_dataclass,
    "pickle": _decode_pickle,
}
