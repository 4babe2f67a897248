"""The public class, :class:`RedisStorageBackend`, assembled from its parts (one module
each: runs and events, timers and leases, hooks and cancellation, signal inboxes,
schedules, flow-control gates, the worker registry, retention), which all build on
:class:`~pyworkflow.storage.redis.connection.RedisConnection`.
"""

from __future__ import annotations

from pyworkflow.storage.redis.gates import GateStore
from pyworkflow.storage.redis.hooks import HookStore
from pyworkflow.storage.redis.leases import LeaseStore
from pyworkflow.storage.redis.retention import RetentionStore
from pyworkflow.storage.redis.runs import RunStore
from pyworkflow.storage.redis.schedules import ScheduleStore
from pyworkflow.storage.redis.signals import SignalStore
from pyworkflow.storage.redis.workers import WorkerStore


class RedisStorageBackend(
    RunStore,
    LeaseStore,
    HookStore,
    SignalStore,
    ScheduleStore,
    GateStore,
    WorkerStore,
    RetentionStore,
):
    """Runs and events in Redis (see :mod:`pyworkflow.storage.redis` for guarantees and
    :mod:`pyworkflow.storage.redis.keys` for the layout).

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL; may carry ``?prefix=``
            (which then wins over the default ``prefix``) and redis-py options.
        prefix: namespace of every key (``{prefix}:...``); no braces.
        client: an existing ``redis.asyncio.Redis`` to use instead of building one from
            ``url``. The caller owns it (``close()`` leaves it open) and its retry
            settings; decoded (``decode_responses=True``) or not, both work.

    The backend connects on first use. Its own client is bound to the event loop that
    first used it; on a new loop (successive ``asyncio.run`` calls) a fresh client is
    built. Call :meth:`close` before the loop ends to release connections cleanly.
    """

    capabilities = frozenset({"persistent", "cross_process"})

    @classmethod
    def from_url(cls, url: str) -> RedisStorageBackend:
        """Build from ``redis://host:port/db?prefix=name`` (also ``rediss://``, ``unix://``).

        Raises:
            ConfigurationError: wrong scheme, malformed port or db, unknown option,
                or an invalid prefix (the message never contains the password).
        """
        return cls(url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, prefix={self.prefix!r})"
