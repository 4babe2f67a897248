"""Redis storage: runs and event logs in Redis, every multi-key write one Lua script.

Extra: ``pip install 'pyworkflow-engine[redis]'`` (redis-py >= 5.0.1, asyncio API).
Server: Redis >= 6.2 (``ZRANGE ... BYLEX REV LIMIT``); tested with Redis 7.

URL: ``redis://[[user]:password@]host[:port][/db][?prefix=NAME&option=value...]``,
``rediss://`` (TLS) or ``unix:///path/to/redis.sock`` (see :mod:`.url`). Error messages
and ``repr`` never show the password.

Features: persistent (data outlives the process, within the server's persistence, see
below) and ``cross_process``: every check-then-write runs inside one Lua script, which
Redis executes atomically, so the sequence fence of :meth:`append_events`, the
idempotency key of :meth:`create_run` and the lease compare-and-set hold across any
number of processes and hosts.

The package, by what each module holds:

* :mod:`~pyworkflow.storage.redis.backend`: :class:`RedisStorageBackend`, assembled from
  :mod:`~pyworkflow.storage.redis.runs` (runs, event logs, queries),
  :mod:`~pyworkflow.storage.redis.leases` (timers and leases),
  :mod:`~pyworkflow.storage.redis.hooks` (cancellation, hooks),
  :mod:`~pyworkflow.storage.redis.signals` (signal inboxes),
  :mod:`~pyworkflow.storage.redis.schedules`,
  :mod:`~pyworkflow.storage.redis.gates` (flow-control gates) and
  :mod:`~pyworkflow.storage.redis.workers` (the worker registry), all on
  :mod:`~pyworkflow.storage.redis.connection` (client, pool, retries, error mapping).
* :mod:`~pyworkflow.storage.redis.url`: URL syntax, options, validation, redaction.
* :mod:`~pyworkflow.storage.redis.keys`: the key layout and index members.
* :mod:`~pyworkflow.storage.redis.codec`: records <-> hashes, events <-> JSON.
* :mod:`~pyworkflow.storage.redis.scripts` and ``lua/*.lua``: the Lua scripts.

Durability caveats
------------------
Redis keeps data in memory; what survives a crash is what its persistence wrote:

* **RDB snapshots only** (the default ``save`` rules) lose every write since the last
  snapshot, minutes of steps and timers. **AOF** (``appendonly yes``) with
  ``appendfsync everysec`` (the usual choice) loses up to about one second of writes
  (two in the worst case) on a power loss or kernel crash; a crash of the Redis process
  alone normally loses nothing, as the writes already reached the OS;
  ``appendfsync always`` fsyncs every write (every script) and loses nothing
  acknowledged, at a large throughput cost. For workflow state use AOF, ideally with
  ``always`` when a lost step completion would re-run a non-idempotent step.
* A server with **no persistence** (``save ""``, ``appendonly no``: the local test server
  runs this way) loses everything on restart.
* **Replication is asynchronous.** On failover (Sentinel, cluster, a managed service),
  writes acknowledged by the old primary but not yet replicated are lost: a step whose
  completion was acknowledged can be re-run, and a lease or timer can go back in time.
  ``WAIT``/``min-replicas-to-write`` narrow the window, they do not close it. Fencing
  still holds on the new primary (an append carries the sequence it expects), so the
  surviving log stays gap-free with one writer, but an acknowledged suffix can vanish
  and be recorded differently when the run is recovered.
* **Memory is the capacity.** Everything, event payloads included, must fit in RAM.
  Measured on Redis 7 (64-bit): about 1.4-1.6 KB per run with small payloads and one
  event (run hash ~0.45 KB, a one-event list ~0.25 KB, five index entries and key
  overhead ~0.8 KB); each further event costs about its JSON size (lists pack events
  tightly), each tag ~0.1 KB, payloads their size. Size for the histories you keep,
  then leave headroom for the copy-on-write
  of RDB/AOF rewrites (up to 2x under heavy writes). Set ``maxmemory``
  with ``maxmemory-policy noeviction``: an eviction policy that drops keys silently
  corrupts runs (a lost event list, an index pointing nowhere). Under ``noeviction``
  a full Redis rejects writes, which surface as ``StorageError``.
* Nothing here expires: finished runs stay until you delete them
  (:func:`pyworkflow.purge_runs`, ``pyworkflow runs purge``).
"""

from pyworkflow.storage.redis.backend import RedisStorageBackend
from pyworkflow.storage.redis.connection import MAX_CONNECTIONS as MAX_CONNECTIONS
from pyworkflow.storage.redis.connection import MIN_SERVER_VERSION as MIN_SERVER_VERSION
from pyworkflow.storage.redis.connection import POOL_TIMEOUT as POOL_TIMEOUT
from pyworkflow.storage.redis.connection import RETRIES as RETRIES
from pyworkflow.storage.redis.connection import RETRY_BASE as RETRY_BASE
from pyworkflow.storage.redis.connection import RETRY_CAP as RETRY_CAP
from pyworkflow.storage.redis.url import DEFAULT_PREFIX, DEFAULT_URL, redact_url
from pyworkflow.storage.redis.url import SCHEMES as SCHEMES
from pyworkflow.storage.redis.url import URL_OPTIONS as URL_OPTIONS

__all__ = ["DEFAULT_PREFIX", "DEFAULT_URL", "RedisStorageBackend", "redact_url"]
