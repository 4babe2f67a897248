"""Store exceptions in the event log and rebuild them on replay.

An encoded error is a JSON-native dict::

    {"type": "module.QualName", "message": "...", "traceback": "...", "pickled": "..." | None}

``pickled`` is the base64 cloudpickle of the exception; it is ``None`` when the exception
cannot be pickled *or* cannot be unpickled again (a classic case: an ``__init__`` with
several required arguments that passes only one to ``super().__init__``). In that case
decoding yields a :class:`~pyworkflow.core.exceptions.StepFailedError` carrying the
message and the original type name.
"""

from __future__ import annotations

import base64
import traceback
from typing import Any

import cloudpickle

from pyworkflow.core.exceptions import StepFailedError


def encode_error(exc: BaseException) -> dict[str, Any]:
    """Encode an exception as a JSON-native dict.

    Args:
        exc: The exception to encode (its traceback, if any, is rendered as text).

    Returns:
        A dict with ``type``, ``message``, ``traceback`` and ``pickled`` keys.
    """
    cls = type(exc)
    return {
        "type": f"{cls.__module__}.{cls.__qualname__}",
        "message": _message(exc),
        "traceback": "".join(traceback.format_exception(exc)) if exc.__traceback__ else "",
        "pickled": _pickle(exc),
    }


def decode_error(data: dict[str, Any]) -> BaseException:
    """Rebuild an exception encoded by :func:`encode_error`.

    Args:
        data: The dict :func:`encode_error` returned (possibly after a JSON round trip).

    Returns:
        The original exception (same class, message and attributes) when it was pickled,
        otherwise a ``StepFailedError(message, error_type=type)``.
    """
    rebuilt = _unpickle(data.get("pickled"))
    if rebuilt is not None:
        return rebuilt
    return StepFailedError(str(data.get("message", "")), error_type=data.get("type"))


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        # A broken __str__ must not hide the error being recorded.
        return repr(exc.args)


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
