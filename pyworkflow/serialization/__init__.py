"""Encode and decode values (and exceptions) for storage in the event log.

Wire format
-----------
:func:`encode` turns a value into a JSON-native tree. JSON data passes through as-is, so a
plain ``{"user": "ada", "ids": [1, 2]}`` is stored exactly like that. Every other supported
value becomes a dict with the reserved key ``"__pw__"`` naming its tag and ``"v"`` holding
its payload (itself encoded recursively where it contains values)::

    tag          "v" payload                         extra keys
    tuple        [item, ...]
    set          [item, ...]  (sorted by JSON text)
    frozenset    [item, ...]  (sorted by JSON text)
    dict         [[key, value], ...]                 used for non-str keys or a "__pw__" key
    datetime     ISO 8601 text (with offset if aware) "zone": IANA name for a ZoneInfo
    date / time  ISO 8601 text
    timedelta    [days, seconds, microseconds]
    decimal      str(value)
    uuid         str(value)
    bytes        base64 text
    bytearray    base64 text
    enum         the member's encoded value          "cls": "module:QualName"
    dataclass    {field name: encoded value}         "cls": "module:QualName"
    pydantic     encoded model_dump(mode="python")   "cls": "module:QualName"
    pickle       base64 cloudpickle bytes              (only with ``allow_pickle``)

Classes are referenced by import path when a worker can import them again. Anything else
(a plain class, a class defined inside a function) needs pickle, which only the
``allow_pickle`` setting permits (:mod:`.policy`): unpickling runs code, so without it
such a value raises :class:`~pyworkflow.core.exceptions.SerializationError` naming its
type, ``where`` it came from and the setting, and a stored pickle is refused the same
way. Classes from ``__main__`` are pickled by value with the setting, and referenced as
``__main__:Name`` without it (readable by the script that stored them). Exceptions have
their own format, see :mod:`pyworkflow.serialization.errors`.
"""

from __future__ import annotations

from pyworkflow.serialization.decoder import decode, loads
from pyworkflow.serialization.encoder import TAG_KEY, compact_json, dumps, encode
from pyworkflow.serialization.errors import decode_error, encode_error

__all__ = [
    "TAG_KEY",
    "compact_json",
    "decode",
    "decode_error",
    "dumps",
    "encode",
    "encode_error",
    "loads",
]
