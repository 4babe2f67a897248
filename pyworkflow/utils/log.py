"""pyworkflow's own logger: loguru's, behind a level of its own.

A library must not decide what an application's logs look like. So pyworkflow installs
no sink and no global patcher; it writes through loguru like any module, and holds its
own records back below a package level (WARNING until the application asks for more
with :func:`set_log_level`, ``configure_logging`` or a worker's ``--loglevel``). An
application that never configures anything sees pyworkflow's warnings and errors on
loguru's default stderr sink, and none of its DEBUG lines.

Every layer logs through :data:`logger` (this module imports nothing of pyworkflow).
The records' run context (``run_id``, ``workflow_name``, ``step_id``, ...) is added by a
patcher bound to this logger only, which ``pyworkflow.observability.run_context``
installs when ``pyworkflow`` is imported: the application's own records are left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loguru import logger as _loguru

if TYPE_CHECKING:
    from loguru import Record

LEVELS = {
    "TRACE": 5,
    "DEBUG": 10,
    "INFO": 20,
    "SUCCESS": 25,
    "WARNING": 30,
    "ERROR": 40,
    "CRITICAL": 50,
}
DEFAULT_LEVEL = "WARNING"

_threshold = LEVELS[DEFAULT_LEVEL]
_patchers: list[Callable[[Record], None]] = []


def level_number(level: str | int) -> int:
    """The number of a level name (``"info"`` and ``"INFO"`` alike) or number.

    Raises:
        ValueError: not a level loguru knows.
    """
    if isinstance(level, int):
        return level
    try:
        return LEVELS[level.upper()]
    except KeyError:
        try:
            return int(_loguru.level(level.upper()).no)
        except ValueError:
            raise ValueError(
                f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}"
            ) from None


def set_log_level(level: str | int) -> None:
    """Let pyworkflow's own records through from ``level`` up (default ``"WARNING"``).

    Sinks still filter by their own levels: this only decides what pyworkflow emits.

    Raises:
        ValueError: ``level`` is not a level name or number.
    """
    global _threshold
    _threshold = level_number(level)


def log_level() -> int:
    """The level from which pyworkflow's own records are emitted."""
    return _threshold


def add_record_patcher(patcher: Callable[[Record], None]) -> None:
    """Have ``patcher`` fill in each record pyworkflow emits (once per patcher)."""
    if patcher not in _patchers:
        _patchers.append(patcher)


def _patch(record: Record) -> None:
    for patcher in _patchers:
        patcher(record)


_base = _loguru.patch(_patch)


class PackageLogger:
    """What pyworkflow's modules log through: loguru's methods, held back below the
    package level. Records name the calling module and line, as loguru's would."""

    __slots__ = ()

    def enabled(self, level: str | int) -> bool:
        return level_number(level) >= _threshold

    def debug(self, message: str, *args: Any, **kwargs: Any) -> None:
        if _threshold <= 10:
            _base.opt(depth=1).debug(message, *args, **kwargs)

    def info(self, message: str, *args: Any, **kwargs: Any) -> None:
        if _threshold <= 20:
            _base.opt(depth=1).info(message, *args, **kwargs)

    def warning(self, message: str, *args: Any, **kwargs: Any) -> None:
        if _threshold <= 30:
            _base.opt(depth=1).warning(message, *args, **kwargs)

    def error(self, message: str, *args: Any, **kwargs: Any) -> None:
        if _threshold <= 40:
            _base.opt(depth=1).error(message, *args, **kwargs)

    def exception(self, message: str, *args: Any, **kwargs: Any) -> None:
        """An ERROR record with the exception being handled."""
        if _threshold <= 40:
            _base.opt(depth=1, exception=True).error(message, *args, **kwargs)

    def failure(self, exc: BaseException, message: str, *args: Any, **kwargs: Any) -> None:
        """An ERROR record with ``exc`` and its traceback."""
        if _threshold <= 40:
            _base.opt(depth=1, exception=exc).error(message, *args, **kwargs)

    def log(self, level: str, message: str, *args: Any, **kwargs: Any) -> None:
        if level_number(level) >= _threshold:
            _base.opt(depth=1).log(level.upper(), message, *args, **kwargs)


logger = PackageLogger()

#: For lines the application's own code wrote (the workflow ``log`` primitive, re-emitted
#: by a step worker or a transient run): the run's context, never held back.
user_logger = _base
