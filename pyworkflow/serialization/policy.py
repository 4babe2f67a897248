"""Whether the pickle fallback may be used: the ``allow_pickle`` setting.

Unpickling runs code chosen by whoever wrote the bytes, so pickled values are refused
unless a deployment opts in (every process that can write to its storage is trusted).
This layer cannot read the configuration itself (it sits below it):
:mod:`pyworkflow.core.config` installs the reader with :func:`use_setting`. A caller can
also refuse pickle for one call whatever the setting (messages from a broker).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

SETTING_HINT = (
    "set allow_pickle=True (configure(allow_pickle=True) or PYWORKFLOW_ALLOW_PICKLE=1) "
    "only if every process that can write to the storage is trusted: unpickling runs code"
)
"""How to enable pickle, with its risk; error messages end with it."""


def _off() -> bool:
    return False


_setting: Callable[[], bool] = _off
# None: follow the setting; False: refused for this call whatever the setting; True: allowed.
_override: ContextVar[bool | None] = ContextVar("pyworkflow_allow_pickle", default=None)


def use_setting(read: Callable[[], bool]) -> None:
    """Install the function that reads the ``allow_pickle`` setting (the config does)."""
    global _setting
    _setting = read


def pickle_allowed() -> bool:
    """Whether the value being encoded or decoded now may use pickle."""
    override = _override.get()
    return _setting() if override is None else override


def forced() -> bool:
    """Whether the current call refused pickle itself (so the setting would not help)."""
    return _override.get() is False


@contextmanager
def pickle_policy(allow: bool | None) -> Iterator[None]:
    """Within the block, ``allow`` decides instead of the setting (``None``: the setting)."""
    if allow is None:
        yield
        return
    token = _override.set(allow)
    try:
        yield
    finally:
        _override.reset(token)
