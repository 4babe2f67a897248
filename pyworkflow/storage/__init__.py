"""Storage: where runs and their event logs live.

Built-in backends need no extra: :class:`InMemoryStorageBackend` (``memory://``),
:class:`SQLiteStorageBackend` (``sqlite:///path.db``, the default) and
:class:`FileStorageBackend` (``file:///dir``). Server backends
(:class:`PostgresStorageBackend`, :class:`MySQLStorageBackend`,
:class:`RedisStorageBackend`, :class:`DynamoDBStorageBackend`) need their driver, a pip
extra. Build any of them with :func:`storage_from_url` or :func:`storage_from_config`.

Every backend class is importable from here, lazily: its module (and driver) is
imported on first use of the name, so this package never imports an optional driver.
Without the driver the name still imports, and building the backend raises
:class:`~pyworkflow.core.exceptions.ConfigurationError` naming the extra to install
(``pip install 'pyworkflow-engine[postgres]'``).
"""

from typing import TYPE_CHECKING, Any

from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.config import (
    backend_class,
    backend_names,
    storage_from_config,
    storage_from_url,
)
from pyworkflow.storage.schemas import (
    TERMINAL_STATUSES,
    UPDATABLE_RUN_FIELDS,
    Event,
    EventType,
    RunStatus,
    RunUpdate,
    StepStatus,
    WorkflowRun,
    utcnow,
)

if TYPE_CHECKING:
    from pyworkflow.storage.dynamodb import DynamoDBStorageBackend
    from pyworkflow.storage.file import FileStorageBackend
    from pyworkflow.storage.memory import InMemoryStorageBackend
    from pyworkflow.storage.mysql import MySQLStorageBackend
    from pyworkflow.storage.postgres import PostgresStorageBackend
    from pyworkflow.storage.redis import RedisStorageBackend
    from pyworkflow.storage.sqlite import SQLiteStorageBackend


def __getattr__(name: str) -> Any:
    """Import a backend class on first use (PEP 562); see the module docstring."""
    if name not in _BACKENDS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    cls = backend_class(name)
    if cls.__module__ != __name__:  # the real class (a stand-in is looked up again)
        globals()[name] = cls
    return cls


def __dir__() -> list[str]:
    return sorted({*globals(), *_BACKENDS})


_BACKENDS = frozenset(backend_names())

__all__ = [
    "DynamoDBStorageBackend",
    "Event",
    "EventType",
    "FileStorageBackend",
    "InMemoryStorageBackend",
    "MySQLStorageBackend",
    "PostgresStorageBackend",
    "RedisStorageBackend",
    "RunStatus",
    "RunUpdate",
    "SQLiteStorageBackend",
    "StepStatus",
    "StorageBackend",
    "TERMINAL_STATUSES",
    "UPDATABLE_RUN_FIELDS",
    "WorkflowRun",
    "storage_from_config",
    "storage_from_url",
    "utcnow",
]
