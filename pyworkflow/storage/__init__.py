"""Storage: where runs and their event logs live.

Built-in backends need no extra: :class:`InMemoryStorageBackend` (``memory://``),
:class:`SQLiteStorageBackend` (``sqlite:///path.db``, the default) and
:class:`FileStorageBackend` (``file:///dir``). Server backends (``postgresql://``,
``mysql://``, ``redis://``) are imported only when their URL is used, so this package
never imports an optional driver. Build any of them with :func:`storage_from_url` or
:func:`storage_from_config`.
"""

from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.config import storage_from_config, storage_from_url
from pyworkflow.storage.file import FileStorageBackend
from pyworkflow.storage.memory import InMemoryStorageBackend
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
from pyworkflow.storage.sqlite import SQLiteStorageBackend

__all__ = [
    "Event",
    "EventType",
    "FileStorageBackend",
    "InMemoryStorageBackend",
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
