"""Redis storage: runs and event logs in Redis, every multi-key write one Lua script.

Extra: ``pip install 'pyworkflow-engine[redis]'`` (redis-py >= 5.0.1, asyncio API).
Server: Redis >= 6.2 (``ZRANGE ... BYLEX REV LIMIT``); tested with Redis 7.

URL (see :meth:`RedisStorageBackend.from_url`)::

    redis://[[user]:password@]host[:port][/db][?prefix=NAME&option=value...]
    rediss://...                        (TLS)
    unix:///path/to/redis.sock?db=0&prefix=NAME

``prefix`` (default ``pyworkflow``) namespaces every key, so several applications or
tests can share one database. The other query options are redis-py connection options
(``socket_timeout``, ``socket_connect_timeout``, ``max_connections``,
``health_check_interval``, ``timeout``, ``client_name``, ``ssl_cert_reqs``, ...).
``storage_from_url`` routes ``redis://``; build ``rediss://`` and ``unix://`` backends
with :meth:`RedisStorageBackend.from_url` (or the constructor). Passwords are never
echoed: error messages and ``repr`` show the URL with the password replaced by ``***``.

Features: persistent (data outlives the process, within the server's persistence, see
below) and ``cross_process``: every check-then-write runs inside one Lua script, which
Redis executes atomically, so the sequence fence of :meth:`append_events`, the
idempotency key of :meth:`create_run` and the lease compare-and-set hold across any
number of processes and hosts.

Key layout
----------
Every key starts with ``{prefix}:``. The braces make the prefix a Redis Cluster *hash
tag*: all keys of one prefix live in one slot, which the multi-key Lua scripts need on a
cluster (they also touch keys they compute, not only those passed in ``KEYS``). A
cluster therefore spreads *prefixes*, not runs, over its shards (cluster mode is designed
for but not covered by the test suite, which runs against a single server). A prefix may not
contain braces; because it is enclosed in braces, no prefix's keys can collide with
another prefix's.

==========================================  ====================================================
key                                         content
==========================================  ====================================================
``{p}:run:<run_id>``                        hash: one field per non-``None`` run field
                                            (datetimes as integer epoch microseconds, tags as
                                            JSON, booleans ``0``/``1``), plus ``_m`` (the run's
                                            index member, below) and ``_w`` (the token of the
                                            last write, see *Retries*)
``{p}:events:<run_id>``                     list: one compact JSON object per event
                                            (``RPUSH``), sequence ``n`` at index ``n - 1``
``{p}:idem:<key>``                          string: idempotency key -> run id
``{p}:idx:all``                             zset of every run
``{p}:idx:status:<status>``                 zset of the runs in that status
``{p}:idx:wf:<workflow_name>``              zset of the runs of that workflow
``{p}:idx:tag:<tag>``                       zset of the runs carrying that tag
``{p}:idx:parent:<parent_run_id>``          zset of a parent's child runs
``{p}:wake``                                zset: suspended runs with a ``wake_at``, score =
                                            ``wake_at`` in epoch microseconds
``{p}:active``                              zset: pending/running/interrupted runs, score =
                                            ``lease_expires_at`` (``-inf`` when unleased)
``{p}:schedule:<schedule_id>``              hash: one field per non-``None`` schedule field
                                            (encoded like run hashes), plus ``_w`` (the token
                                            of the last write)
``{p}:sidx:all``                            zset of every schedule id (every score 0: member
                                            order is id order)
``{p}:sidx:due``                            zset: active schedules with a ``next_run_time``,
                                            score = ``next_run_time`` in epoch microseconds
==========================================  ====================================================

The ``idx:*`` sets are *lexicographic* sorted sets (every score 0) whose members are
``<created_at micros + 10**18, 19 digits>:<run_id>``: member order is exactly
``(created_at, run_id)``, so ``list_runs`` (newest first, ties by ``run_id`` descending)
is one ``ZRANGE ... BYLEX REV`` and a paging cursor is an exclusive lex bound (keyset
paging, unaffected by runs created meanwhile). Zsets emptied by ``ZREM`` disappear.
Run hashes are encoded from the ``WorkflowRun`` field types, so a field added to the
dataclass round-trips without a change here or a migration (old runs read its default).

Complexity (n = runs under the prefix, k = results):

* ``get_run``, ``get_run_by_idempotency_key``, ``acquire_lease``, ``release_lease``:
  O(1) (plus the size of the run record).
* ``create_run``: O(log n) per index, plus the events. ``append_events``: O(log n) plus
  the events and changed fields.
* ``get_events(after_sequence=s)``: O(e - s) with ``LRANGE`` (e = the log's length).
* ``list_runs`` with at most one of status/workflow/tag/parent: O(log n + offset + k).
  With several such filters the script walks the *smallest* of their sets in order
  (newest first, time range and cursor applied as lex bounds) and checks membership in
  the others with ``ZSCORE`` (O(1) each): O(log n + m) where m is how many entries of
  the smallest set it reads before it has ``offset + limit`` matches. The walk runs
  inside one script, so a very unselective combination over a huge set blocks Redis
  while it runs; prefer the most selective filter, or paginate with small limits.
* ``list_due_runs``, ``next_wake_time``, ``list_stale_runs``: O(log n + k).
* ``claim_due_runs``: O(log n + m), m = due runs read (due runs leased by someone else
  are skipped, and read again until their leases end).
* Schedules (s = schedules under the prefix): ``save_schedule`` (one compare-and-set
  script on the ``version`` field), ``get_schedule`` and ``delete_schedule`` O(log s);
  ``list_due_schedules`` O(log s + k); ``list_schedules`` walks the ids in order, O(s) at
  worst with a filter (schedules are few).

Datetimes are stored as exact integer epoch microseconds in run hashes and events. Sorted
set scores (``wake``, ``active``, ``sidx:due``) are doubles, exact for integers up to 2**53 µs, i.e.
for dates between the years 1685 and 2255; beyond that only the *ordering* of
``wake``/lease/next-run times can blur by a few microseconds (the stored values stay exact).
Lease and wake times are compared inside Lua as numbers, with the same range.

Retries and reconnection
------------------------
redis-py reconnects by itself. The backend's client (unless you pass your own
``client``) is configured to retry every command up to :data:`RETRIES` times with a
short jittered exponential backoff on ``ConnectionError``/``TimeoutError``, so a
connection killed by the server (``CLIENT KILL``, an idle timeout, a failover) does not
break the next call. Bad credentials (``AuthenticationError``, a ``ConnectionError``
subclass) are not retried. Retrying is only safe if every command is idempotent, and a
command whose connection died after Redis ran it is *ambiguous*: it may have applied.
Reads and ``acquire_lease``/``renew_leases``/``release_lease``/``claim_due_runs`` are
idempotent for a given owner (a retried acquire finds its own lease and succeeds again).
``create_run`` and ``append_events`` are not naturally: a retried append would find
its own events already there and report a *false* :class:`SequenceConflictError` (the
engine would then drop a run it still owns until lease recovery), and a retried create
would raise a false :class:`RunAlreadyExistsError`. Both therefore send a random write
token that the script stores in the run hash (``_w``); when the fence fails but the
run's token is the caller's and the sequence is exactly where this write would have put
it, the script reports success instead of a conflict. A genuine conflicting writer still
gets the conflict. Errors that survive the retries are raised as
:class:`~pyworkflow.core.exceptions.StorageError`.

Connections come from a *blocking* pool of :data:`MAX_CONNECTIONS` (URL
``max_connections``): more concurrent calls than connections wait up to
:data:`POOL_TIMEOUT` seconds (URL ``timeout``) for one, instead of failing with redis-py's
"Too many connections". Every connection is named (``CLIENT SETNAME``, see
:attr:`RedisStorageBackend.client_name`), so ``CLIENT LIST`` shows which belong to
pyworkflow. Scripts that return many records (``list_runs``, ``list_stale_runs``,
``get_events``) return them as one JSON document, decoded in C, rather than thousands of
RESP items parsed in Python.

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
* Nothing here expires: finished runs stay until you delete them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import secrets
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url as _redis_parse_url
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pyworkflow.core.exceptions import (
    ConfigurationError,
    RunAlreadyExistsError,
    SequenceConflictError,
    StorageError,
    WorkflowNotFoundError,
)
from pyworkflow.serialization import compact_json
from pyworkflow.storage.base import RunQuery, StorageBackend, parse_cursor
from pyworkflow.storage.schemas import (
    TERMINAL_STATUSES,
    UPDATABLE_RUN_FIELDS,
    Event,
    HookRecord,
    HookStatus,
    RunStatus,
    RunUpdate,
    ScheduleRecord,
    ScheduleStatus,
    WorkflowRun,
)

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "pyworkflow"
SCHEMES = ("redis", "rediss", "unix")
#: Attempts after the first on a connection error or timeout (see "Retries" above), with
#: jittered exponential backoff from RETRY_BASE s capped at RETRY_CAP s: about 1.5 to 3 s
#: in all, enough to ride out a dropped connection or a quick restart, short enough to
#: fail fast when the server is really gone.
RETRIES = 6
RETRY_BASE = 0.05
RETRY_CAP = 2.0
MIN_SERVER_VERSION = (6, 2)
#: Pooled connections per backend (URL ``max_connections``). Redis runs commands one at
#: a time, so a few dozen connections already saturate it; more callers wait their turn.
MAX_CONNECTIONS = 64
#: Seconds a call waits for a free pooled connection before failing (URL ``timeout``).
POOL_TIMEOUT = 30.0
# redis-py connection options a URL may carry besides ``prefix``.
URL_OPTIONS = frozenset(
    {
        "db",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "max_connections",
        "health_check_interval",
        "timeout",
        "client_name",
        "protocol",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
    }
)

# -- encoding (hot path: a few C-level operations per value) ------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MEMBER_BIAS = 10**18  # makes every datetime's micros non-negative, 19 digits
_MEMBER_TS_LEN = 20  # "<19 digits>:"
_ACTIVE = tuple(
    s.value for s in RunStatus if s not in TERMINAL_STATUSES and s != RunStatus.SUSPENDED
)
_RENEW_CHUNK = 500
_T = TypeVar("_T")


def _micros(value: datetime) -> int:
    # Exact integer arithmetic; an aware datetime in any zone maps to the same instant.
    return (value - _EPOCH) // _MICROSECOND


def _from_micros(value: str | bytes | int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value))


def _member(created_micros: int, run_id: str) -> str:
    """The run's entry in every ``idx:*`` set: lexicographic order = (created_at, run_id)."""
    return f"{created_micros + _MEMBER_BIAS:019d}:{run_id}"


def _json(value: Any) -> str:
    return compact_json(value)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _Codec:
    """Hash field <-> value conversion for one record dataclass, derived from its field
    types, so a field added to the dataclass round-trips without touching this module:
    datetimes as integer epoch microseconds, enums by value, ``bool`` as ``0``/``1``,
    ``int`` as decimal, ``str`` as is, anything else (lists, dicts) as JSON. ``None`` is
    an absent field, which reads back as the dataclass default."""

    def __init__(self, cls: type[Any], enums: Mapping[str, type[StrEnum]]) -> None:
        self.cls = cls
        self.encoders: dict[str, Callable[[Any], str]] = {}
        self.decoders: dict[str, Callable[[str], Any]] = {}
        for f in fields(cls):
            kind = str(f.type).replace(" | None", "").strip()
            encode: Callable[[Any], str]
            decode: Callable[[str], Any]
            if kind == "datetime":
                encode, decode = _encode_dt, _from_micros
            elif kind in enums:
                encode, decode = _enum_codec(enums[kind])
            elif kind == "bool":
                encode, decode = (lambda v: "1" if v else "0"), (lambda v: v == "1")
            elif kind == "int":
                encode, decode = (lambda v: str(int(v))), int
            elif kind == "str":
                encode, decode = str, _identity
            else:
                encode, decode = _json, json.loads
            self.encoders[f.name] = encode
            self.decoders[f.name] = decode

    def pairs(self, record: Any) -> list[str]:
        """``[field, value, ...]`` of the record's non-``None`` fields."""
        out: list[str] = []
        for name, encode in self.encoders.items():
            value = getattr(record, name)
            if value is not None:
                out += (name, encode(value))
        return out

    def encode(self, name: str, value: Any) -> str:
        return self.encoders[name](value)

    def decode(self, raw: Mapping[Any, Any] | Sequence[Any]) -> Any:
        """The record from ``HGETALL`` output, or ``None`` when it is empty."""
        h = _decode_hash(raw)
        if not h:
            return None
        decoders = self.decoders
        # Internal fields (``_m``, ``_w``) and fields of a newer version are skipped.
        return self.cls(**{k: decoders[k](v) for k, v in h.items() if k in decoders})


def _enum_codec(enum: type[StrEnum]) -> tuple[Callable[[Any], str], Callable[[str], Any]]:
    by_value = {member.value: member for member in enum}

    def encode(value: Any) -> str:
        return enum(value).value

    return encode, by_value.__getitem__


def _encode_dt(value: datetime) -> str:
    return str(_micros(value))


def _identity(value: str) -> str:
    return value


def _decode_hash(raw: Mapping[Any, Any] | Sequence[Any]) -> dict[str, str]:
    """``HGETALL`` output (a dict from redis-py, a flat list from a script) as text."""
    if isinstance(raw, Mapping):
        return {_text(k): _text(v) for k, v in raw.items()}
    items = [_text(v) for v in raw]
    return dict(zip(items[::2], items[1::2], strict=True))


_RUNS = _Codec(WorkflowRun, {"RunStatus": RunStatus})
_HOOKS = _Codec(HookRecord, {"HookStatus": HookStatus})
_SCHEDULES = _Codec(ScheduleRecord, {"ScheduleStatus": ScheduleStatus})


def _run_from_hash(raw: Mapping[Any, Any] | Sequence[Any]) -> WorkflowRun | None:
    run: WorkflowRun | None = _RUNS.decode(raw)
    return run


def _hook_from_hash(raw: Mapping[Any, Any] | Sequence[Any]) -> HookRecord | None:
    hook: HookRecord | None = _HOOKS.decode(raw)
    return hook


def _schedule_from_hash(raw: Mapping[Any, Any] | Sequence[Any]) -> ScheduleRecord | None:
    schedule: ScheduleRecord | None = _SCHEDULES.decode(raw)
    return schedule


def _encode_event(event: Event) -> str:
    return _json(
        {
            "s": event.sequence,
            "i": event.event_id,
            "t": event.type.value,
            "ts": _micros(event.timestamp),
            "d": event.data,
        }
    )


def _check_sequences(events: Sequence[Event], first: int) -> None:
    # The log relies on "sequence n lives at list index n - 1" (get_events reads by index).
    for offset, event in enumerate(events):
        if event.sequence != first + offset:
            raise ValueError(
                f"events must carry consecutive sequences starting at {first}; "
                f"got {[e.sequence for e in events]}"
            )


# -- URLs ------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: safe to log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable redis URL>"
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))


def _parse_url(url: str) -> tuple[str, str | None]:
    """``(url without the prefix option, prefix or None)``; validates scheme and options."""
    safe = redact_url(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ConfigurationError(f"invalid Redis URL {safe!r}: {exc}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise ConfigurationError(
            f"invalid Redis URL {safe!r}: scheme must be one of "
            f"{', '.join(s + '://' for s in SCHEMES)}"
        )
    db = parts.path.strip("/")
    if parts.scheme.lower() != "unix" and db and not db.isdigit():
        # redis-py would silently fall back to db 0: the wrong data, quietly.
        raise ConfigurationError(
            f"invalid Redis URL {safe!r}: the path must be a database number (/0, /1, ...)"
        )
    options = parse_qsl(parts.query, keep_blank_values=True)
    unknown = {name for name, _ in options if name != "prefix" and name not in URL_OPTIONS}
    if unknown:
        raise ConfigurationError(
            f"unsupported option(s) {', '.join(sorted(unknown))} in Redis URL {safe!r}; "
            f"supported: {', '.join(sorted(URL_OPTIONS | {'prefix'}))}"
        )
    prefixes = [value for name, value in options if name == "prefix"]
    rest = [(name, value) for name, value in options if name != "prefix"]
    clean = urlunsplit(parts._replace(query=urlencode(rest)))
    try:
        # redis-py's own parser: casts every option, checks the db number.
        _redis_parse_url(clean)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"invalid Redis URL {safe!r}: {exc}") from None
    return clean, (prefixes[-1] if prefixes else None)


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not prefix:
        raise ConfigurationError("Redis key prefix must be a non-empty string")
    if "{" in prefix or "}" in prefix:
        raise ConfigurationError(
            f"Redis key prefix {prefix!r} may not contain braces (it becomes the hash tag "
            "'{prefix}')"
        )
    return prefix


# -- Lua -------------------------------------------------------------------------------
# Every script gets the key base "{prefix}:" as ARGV[1]; the run's own keys come in KEYS
# (what a cluster client routes by), derived keys are built from the base.


def _lua_set(values: Sequence[str]) -> str:
    return "{" + ", ".join(f"[{json.dumps(v)}] = true" for v in values) + "}"


_PRELUDE = f"""
local P = ARGV[1]
local TERMINAL = {_lua_set(sorted(s.value for s in TERMINAL_STATUSES))}
local ACTIVE = {_lua_set(_ACTIVE)}

-- Re-derive the run's status/wake/active index entries from its hash.
local function reindex(run_id, run_key, old_status)
  local f = redis.call('HMGET', run_key, 'status', 'wake_at', 'lease_expires_at', '_m')
  local status, wake, lease, member = f[1], f[2], f[3], f[4]
  if old_status ~= status then
    if old_status then redis.call('ZREM', P .. 'idx:status:' .. old_status, member) end
    redis.call('ZADD', P .. 'idx:status:' .. status, 0, member)
  end
  if status == 'suspended' and wake then
    redis.call('ZADD', P .. 'wake', wake, run_id)
  else
    redis.call('ZREM', P .. 'wake', run_id)
  end
  if ACTIVE[status] then
    redis.call('ZADD', P .. 'active', lease or '-inf', run_id)
  else
    redis.call('ZREM', P .. 'active', run_id)
  end
end

-- Run CMD key ARGV[first..last] in chunks (unpack has a stack limit). Even chunk size,
-- so HSET field/value pairs are never split.
local function chunked(cmd, key, first, last)
  local i = first
  while i <= last do
    local j = math.min(i + 999, last)
    redis.call(cmd, key, unpack(ARGV, i, j))
    i = j + 1
  end
end
"""

# KEYS: run, events, then the static index sets (all, workflow, parent, tags).
# ARGV: base, run_id, has_idem, idem_key, token, npairs, pairs..., events...
_CREATE = (
    _PRELUDE
    + """
local run_key, events_key = KEYS[1], KEYS[2]
local run_id, has_idem, idem, token = ARGV[2], ARGV[3] == '1', ARGV[4], ARGV[5]
local npairs = tonumber(ARGV[6])
if has_idem then
  local existing = redis.call('GET', P .. 'idem:' .. idem)
  if existing then
    return {'dup', redis.call('HGETALL', P .. 'run:' .. existing)}
  end
end
if redis.call('EXISTS', run_key) == 1 then
  if redis.call('HGET', run_key, '_w') == token then return {'replayed'} end
  return {'exists'}
end
chunked('HSET', run_key, 7, 6 + npairs)
redis.call('HSET', run_key, '_w', token)
chunked('RPUSH', events_key, 7 + npairs, #ARGV)
if has_idem then redis.call('SET', P .. 'idem:' .. idem, run_id) end
local member = redis.call('HGET', run_key, '_m')
for i = 3, #KEYS do redis.call('ZADD', KEYS[i], 0, member) end
reindex(run_id, run_key, false)
return {'ok'}
"""
)

# KEYS: run, events. ARGV: base, run_id, expected, new_last, token, nset, pairs...,
# ndel, fields..., events...
_APPEND = (
    _PRELUDE
    + """
local run_key, events_key = KEYS[1], KEYS[2]
local run_id, expected, new_last, token = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local current = redis.call('HGET', run_key, 'last_sequence')
if not current then return {'missing'} end
if current ~= expected then
  -- A retry of this very write that already landed (see "Retries" in the module doc).
  if current == new_last and redis.call('HGET', run_key, '_w') == token then
    return {'replayed'}
  end
  return {'conflict', current}
end
local old_status = redis.call('HGET', run_key, 'status')
local nset = tonumber(ARGV[6])
chunked('HSET', run_key, 7, 6 + nset)
local ndel_at = 7 + nset
local ndel = tonumber(ARGV[ndel_at])
if ndel > 0 then chunked('HDEL', run_key, ndel_at + 1, ndel_at + ndel) end
chunked('RPUSH', events_key, ndel_at + ndel + 1, #ARGV)
reindex(run_id, run_key, old_status)
return {'ok'}
"""
)

# KEYS: run. ARGV: base, run_id, owner, expires, now, has_steal, steal_from.
_ACQUIRE = (
    _PRELUDE
    + """
local run_key = KEYS[1]
local run_id, owner, expires, now = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local f = redis.call('HMGET', run_key, 'status', 'lease_owner', 'lease_expires_at')
local status, holder, until_ = f[1], f[2], f[3]
if not status or TERMINAL[status] then return 0 end
if holder and holder ~= owner and not (ARGV[6] == '1' and holder == ARGV[7])
    and until_ and tonumber(until_) >= now then
  return 0
end
redis.call('HSET', run_key, 'lease_owner', owner, 'lease_expires_at', expires)
if ACTIVE[status] then redis.call('ZADD', P .. 'active', expires, run_id) end
return 1
"""
)

# KEYS: run keys. ARGV: base, owner, expires, run ids (same order as KEYS)...
_RENEW = (
    _PRELUDE
    + """
local owner, expires = ARGV[2], ARGV[3]
for i, run_key in ipairs(KEYS) do
  local f = redis.call('HMGET', run_key, 'status', 'lease_owner')
  if f[2] == owner then
    redis.call('HSET', run_key, 'lease_expires_at', expires)
    if ACTIVE[f[1]] then redis.call('ZADD', P .. 'active', expires, ARGV[3 + i]) end
  end
end
return 0
"""
)

# KEYS: run. ARGV: base, run_id, owner.
_RELEASE = (
    _PRELUDE
    + """
local run_key = KEYS[1]
local f = redis.call('HMGET', run_key, 'status', 'lease_owner')
if f[2] and f[2] == ARGV[3] then
  redis.call('HDEL', run_key, 'lease_owner', 'lease_expires_at')
  if ACTIVE[f[1]] then redis.call('ZADD', P .. 'active', '-inf', ARGV[2]) end
end
return 0
"""
)

# KEYS: wake set. ARGV: base, now, owner, expires, limit. Due runs (all suspended, by
# construction of the wake set) in wake order; leased to ``owner`` unless another
# owner's lease is live. Returns the ids it leased.
_CLAIM = (
    _PRELUDE
    + """
local now_arg, owner, expires = ARGV[2], ARGV[3], ARGV[4]
local now, limit = tonumber(now_arg), tonumber(ARGV[5])
local batch = math.max(2 * limit, 100)
local claimed, offset = {}, 0
while #claimed < limit do
  local ids = redis.call('ZRANGE', KEYS[1], '-inf', now_arg, 'BYSCORE', 'LIMIT', offset, batch)
  for _, id in ipairs(ids) do
    local run_key = P .. 'run:' .. id
    local f = redis.call('HMGET', run_key, 'lease_owner', 'lease_expires_at')
    if not f[1] or f[1] == owner or not f[2] or tonumber(f[2]) < now then
      redis.call('HSET', run_key, 'lease_owner', owner, 'lease_expires_at', expires)
      claimed[#claimed + 1] = id
      if #claimed == limit then break end
    end
  end
  if #ids < batch then break end
  offset = offset + #ids
end
return claimed
"""
)

# KEYS: the index sets a record must be in (>= 1). ARGV: base, max, min (lex bounds),
# offset, limit, record key kind ('run:' or 'hook:'; runs and hooks share it). Returns
# the matching records' HGETALL lists, newest first, as one JSON array (cjson): one bulk
# reply decoded in C rather than thousands of RESP items.
_QUERY = """
local P = ARGV[1]
local best, best_n = 1, -1
for i = 1, #KEYS do
  local n = redis.call('ZCARD', KEYS[i])
  if n == 0 then return '[]' end
  if best_n < 0 or n < best_n then best, best_n = i, n end
end
local maxb, minb = ARGV[2], ARGV[3]
local offset, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local found = {}
if #KEYS == 1 then
  found = redis.call('ZRANGE', KEYS[1], maxb, minb, 'BYLEX', 'REV', 'LIMIT', offset, limit)
else
  local batch = math.min(math.max(offset + limit, 64), 1000)
  local skipped = 0
  while #found < limit do
    local members = redis.call('ZRANGE', KEYS[best], maxb, minb, 'BYLEX', 'REV', 'LIMIT', 0, batch)
    for _, m in ipairs(members) do
      local ok = true
      for i = 1, #KEYS do
        if i ~= best and not redis.call('ZSCORE', KEYS[i], m) then ok = false break end
      end
      if ok then
        if skipped < offset then
          skipped = skipped + 1
        else
          found[#found + 1] = m
          if #found == limit then break end
        end
      end
    end
    if #members < batch then break end
    maxb = '(' .. members[#members]
  end
end
if #found == 0 then return '[]' end
local out = {}
for i, m in ipairs(found) do
  out[i] = redis.call('HGETALL', P .. ARGV[6] .. string.sub(m, MEMBER_TS_LEN + 1))
end
return cjson.encode(out)
""".replace("MEMBER_TS_LEN", str(_MEMBER_TS_LEN))

# KEYS: active set. ARGV: base, now, limit. Runs whose lease ended before now (or none).
_STALE = """
local ids = redis.call('ZRANGE', KEYS[1], '-inf', '(' .. ARGV[2], 'BYSCORE', 'LIMIT', 0, ARGV[3])
if #ids == 0 then return '[]' end
local out = {}
for i, id in ipairs(ids) do out[i] = redis.call('HGETALL', ARGV[1] .. 'run:' .. id) end
return cjson.encode(out)
"""

# KEYS: events list. ARGV: first index. The events as one JSON array: one bulk reply
# parsed by json.loads in C, instead of one RESP item per event parsed in Python
# (2-3x faster for long histories).
_EVENTS = """
return '[' .. table.concat(redis.call('LRANGE', KEYS[1], ARGV[1], -1), ',') .. ']'
"""

# KEYS: idempotency key. ARGV: base.
_BY_KEY = """
local run_id = redis.call('GET', KEYS[1])
if not run_id then return {} end
return redis.call('HGETALL', ARGV[1] .. 'run:' .. run_id)
"""

# KEYS: wake set. ARGV: base. The exact wake_at of the earliest sleeper (the score is a
# double; the hash holds the exact integer).
_NEXT_WAKE = """
local first = redis.call('ZRANGE', KEYS[1], 0, 0)
if #first == 0 then return false end
return redis.call('HGET', ARGV[1] .. 'run:' .. first[1], 'wake_at')
"""


# KEYS: run. ARGV: base, now, has_reason, reason. The first request's time and reason
# stick; later requests still answer 1 (the run is asked to cancel). Idempotent.
_CANCEL = (
    _PRELUDE
    + """
local run_key = KEYS[1]
local status = redis.call('HGET', run_key, 'status')
if not status or TERMINAL[status] then return 0 end
if redis.call('HEXISTS', run_key, 'cancel_requested_at') == 0 then
  redis.call('HSET', run_key, 'cancel_requested_at', ARGV[2])
  if ARGV[3] == '1' then redis.call('HSET', run_key, 'cancel_reason', ARGV[4]) end
end
return 1
"""
)

# KEYS: hook, the run's hook-id map, index sets (all, run, status).
# ARGV: base, token_hash, hook_id, npairs, pairs...
# One hook per (run, hook_id): a second save returns the stored one (replay, or a retry
# of this very save). A hook stored under the same token_hash for another (run, hook_id)
# is replaced, index entries included (the memory backend's behaviour).
_SAVE_HOOK = """
local P, token_hash, hook_id = ARGV[1], ARGV[2], ARGV[3]
local hook_key, ids_key = KEYS[1], KEYS[2]
local existing = redis.call('HGET', ids_key, hook_id)
if existing then
  local stored = redis.call('HGETALL', P .. 'hook:' .. existing)
  if #stored > 0 then return {'dup', stored} end
end
local old = redis.call('HMGET', hook_key, 'run_id', 'hook_id', 'status', '_m')
if old[4] then
  redis.call('ZREM', P .. 'hidx:all', old[4])
  redis.call('ZREM', P .. 'hidx:run:' .. old[1], old[4])
  redis.call('ZREM', P .. 'hidx:status:' .. old[3], old[4])
  redis.call('HDEL', P .. 'hookids:' .. old[1], old[2])
  redis.call('DEL', hook_key)
end
local npairs = tonumber(ARGV[4])
redis.call('HSET', hook_key, unpack(ARGV, 5, 4 + npairs))
redis.call('HSET', ids_key, hook_id, token_hash)
local member = redis.call('HGET', hook_key, '_m')
for i = 3, #KEYS do redis.call('ZADD', KEYS[i], 0, member) end
return {'ok'}
"""

# KEYS: hook. ARGV: base, expected, status, token, has_payload, payload, has_received,
# received. Compare-and-set on the status; the write token makes a retried winning
# update answer 1 again instead of a false "someone else won".
_UPDATE_HOOK = """
local P, expected, status, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local hook_key = KEYS[1]
local f = redis.call('HMGET', hook_key, 'status', '_m', '_w')
if not f[1] then return 0 end
if f[1] ~= expected then
  if f[1] == status and f[3] == token then return 1 end
  return 0
end
redis.call('HSET', hook_key, 'status', status, '_w', token)
if ARGV[5] == '1' then redis.call('HSET', hook_key, 'payload', ARGV[6]) end
if ARGV[7] == '1' then redis.call('HSET', hook_key, 'received_at', ARGV[8]) end
if status ~= expected then
  redis.call('ZREM', P .. 'hidx:status:' .. expected, f[2])
  redis.call('ZADD', P .. 'hidx:status:' .. status, 0, f[2])
end
return 1
"""

# KEYS: schedule, id set (sidx:all), due set (sidx:due).
# ARGV: base, schedule_id, expected version ('' to insert), new version, token, due score
# ('' when not due-able: paused or no next_run_time), npairs, pairs... (every field of
# the new record, its version and _w = token included).
# Compare-and-set on the version field; the whole hash is replaced. A retry of a save
# that had landed (the hash still carries its token and version) answers 1 again
# instead of a false "someone else won".
_SAVE_SCHEDULE = """
local key = KEYS[1]
local id, expected, version, token, due = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local f = redis.call('HMGET', key, 'version', '_w')
if f[2] == token and f[1] == version then return 1 end
if expected == '' then
  if f[1] then return 0 end
elseif f[1] ~= expected then
  return 0
end
redis.call('DEL', key)
local npairs = tonumber(ARGV[7])
redis.call('HSET', key, unpack(ARGV, 8, 7 + npairs))
redis.call('ZADD', KEYS[2], 0, id)
if due == '' then
  redis.call('ZREM', KEYS[3], id)
else
  redis.call('ZADD', KEYS[3], due, id)
end
return 1
"""

# KEYS: schedule, id set, due set. ARGV: schedule_id. Whether the schedule existed.
_DELETE_SCHEDULE = """
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return existed
"""

# KEYS: id set. ARGV: base, has_workflow, workflow_name, has_status, status, limit.
# Walks the ids in order (a lex range per batch), keeping the schedules that pass the
# filters; their HGETALL lists as one JSON array.
_LIST_SCHEDULES = """
local P, has_wf, wf = ARGV[1], ARGV[2] == '1', ARGV[3]
local has_status, status, limit = ARGV[4] == '1', ARGV[5], tonumber(ARGV[6])
local batch = math.min(math.max(limit, 64), 1000)
local out, from = {}, '-'
while #out < limit do
  local ids = redis.call('ZRANGE', KEYS[1], from, '+', 'BYLEX', 'LIMIT', 0, batch)
  for _, id in ipairs(ids) do
    local key = P .. 'schedule:' .. id
    local ok = true
    if has_wf or has_status then
      local f = redis.call('HMGET', key, 'workflow_name', 'status')
      ok = (not has_wf or f[1] == wf) and (not has_status or f[2] == status)
    end
    if ok then
      out[#out + 1] = redis.call('HGETALL', key)
      if #out == limit then break end
    end
  end
  if #ids < batch then break end
  from = '(' .. ids[#ids]
end
if #out == 0 then return '[]' end
return cjson.encode(out)
"""

# KEYS: due set. ARGV: base, now, limit. Due schedules, earliest first (ties: id order,
# as the set orders equal scores), as one JSON array of HGETALL lists.
_DUE_SCHEDULES = """
local ids = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[2], 'BYSCORE', 'LIMIT', 0, ARGV[3])
if #ids == 0 then return '[]' end
local out = {}
for i, id in ipairs(ids) do out[i] = redis.call('HGETALL', ARGV[1] .. 'schedule:' .. id) end
return cjson.encode(out)
"""


class _Retry(Retry):
    """redis-py's retry, except on bad credentials: ``AuthenticationError`` subclasses
    ``ConnectionError`` and would otherwise be retried with backoff, delaying a
    configuration error by seconds for nothing."""

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[_T]],
        fail: Callable[[Exception], Any] | Callable[[Exception, int], Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> _T:
        def retryable(error: Exception) -> bool:
            if isinstance(error, AuthenticationError):
                return False
            return is_retryable is None or is_retryable(error)

        return await super().call_with_retry(do, fail, retryable, with_failure_count)


# redis-py < 6 has no ``is_retryable`` hook (nor retries the handshake): plain Retry there.
_RETRY_CLASS = (
    _Retry if "is_retryable" in inspect.signature(Retry.call_with_retry).parameters else Retry
)


class _Scripts:
    """The Lua scripts, registered once per client (``EVALSHA``, loaded on ``NOSCRIPT``)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.create: AsyncScript = client.register_script(_CREATE)
        self.append: AsyncScript = client.register_script(_APPEND)
        self.acquire: AsyncScript = client.register_script(_ACQUIRE)
        self.renew: AsyncScript = client.register_script(_RENEW)
        self.release: AsyncScript = client.register_script(_RELEASE)
        self.claim: AsyncScript = client.register_script(_CLAIM)
        self.query: AsyncScript = client.register_script(_QUERY)
        self.stale: AsyncScript = client.register_script(_STALE)
        self.by_key: AsyncScript = client.register_script(_BY_KEY)
        self.next_wake: AsyncScript = client.register_script(_NEXT_WAKE)
        self.events: AsyncScript = client.register_script(_EVENTS)
        self.cancel: AsyncScript = client.register_script(_CANCEL)
        self.save_hook: AsyncScript = client.register_script(_SAVE_HOOK)
        self.update_hook: AsyncScript = client.register_script(_UPDATE_HOOK)
        self.save_schedule: AsyncScript = client.register_script(_SAVE_SCHEDULE)
        self.delete_schedule: AsyncScript = client.register_script(_DELETE_SCHEDULE)
        self.list_schedules: AsyncScript = client.register_script(_LIST_SCHEDULES)
        self.due_schedules: AsyncScript = client.register_script(_DUE_SCHEDULES)


class RedisStorageBackend(StorageBackend):
    """Runs and events in Redis (see the module docstring for layout and guarantees).

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

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        prefix: str = DEFAULT_PREFIX,
        client: aioredis.Redis | None = None,
    ) -> None:
        clean, url_prefix = _parse_url(url)
        if url_prefix is not None:
            if prefix != DEFAULT_PREFIX and prefix != url_prefix:
                raise ConfigurationError(
                    f"Redis key prefix given twice: prefix={prefix!r} and "
                    f"?prefix={url_prefix} in the URL"
                )
            prefix = url_prefix
        self.prefix = _check_prefix(prefix)
        self._url = clean
        self.url = redact_url(clean)  # safe to show
        self._base = "{" + self.prefix + "}:"
        names = [value for name, value in parse_qsl(urlsplit(clean).query) if name == "client_name"]
        #: The CLIENT SETNAME of this backend's connections (find them in CLIENT LIST).
        self.client_name = names[-1] if names else f"pyworkflow-{secrets.token_hex(6)}"
        self._external = client
        self._redis: aioredis.Redis | None = client
        self._scripts: _Scripts | None = _Scripts(client) if client is not None else None
        self._loop: asyncio.AbstractEventLoop | None = None

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

    # -- connection management ----------------------------------------------------------

    def _make_client(self) -> aioredis.Redis:
        retry = _RETRY_CLASS(
            EqualJitterBackoff(cap=RETRY_CAP, base=RETRY_BASE),
            RETRIES,
            supported_errors=(RedisConnectionError, RedisTimeoutError),
        )
        options: dict[str, Any] = {
            "retry": retry,
            "retry_on_error": [RedisConnectionError, RedisTimeoutError],
            "client_name": self.client_name,
            "max_connections": MAX_CONNECTIONS,
            "timeout": POOL_TIMEOUT,
        }
        # A blocking pool: more concurrent calls than connections wait for one, where
        # redis-py's default pool raises "Too many connections". (URL options win.)
        pool = aioredis.BlockingConnectionPool.from_url(self._url, **options)
        return aioredis.Redis.from_pool(pool)

    def _client(self) -> tuple[aioredis.Redis, _Scripts]:
        """The client and scripts for the running loop (built on first use)."""
        if self._external is None:
            loop = asyncio.get_running_loop()
            if self._redis is None or self._loop is not loop:
                # A client from a previous (now finished) loop cannot be awaited here;
                # its sockets die with that loop.
                self._redis = self._make_client()
                self._scripts = _Scripts(self._redis)
                self._loop = loop
        assert self._redis is not None and self._scripts is not None
        return self._redis, self._scripts

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except RedisError as exc:
            raise StorageError(f"redis ({self.url}, prefix {self.prefix!r}): {exc}") from exc

    def _key(self, *parts: str) -> str:
        """``{prefix}:part:part...`` (internal, also used by tests and tooling)."""
        return self._base + ":".join(parts)

    async def connect(self) -> None:
        """Check the server answers and is recent enough; idempotent."""
        client, _ = self._client()
        with self._errors():
            info = await client.info("server")
        version = str(info.get("redis_version", "0"))
        numbers = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if numbers < MIN_SERVER_VERSION:
            raise ConfigurationError(
                f"Redis {version} at {self.url} is too old: pyworkflow needs Redis >= "
                f"{'.'.join(map(str, MIN_SERVER_VERSION))}"
            )

    async def close(self) -> None:
        if self._external is not None:
            return
        client, loop = self._redis, self._loop
        self._redis, self._scripts, self._loop = None, None, None
        # A client built on another (finished) loop cannot be closed from this one; its
        # sockets went with that loop.
        if client is not None and loop is asyncio.get_running_loop():
            with self._errors():
                await client.aclose()

    # -- runs -----------------------------------------------------------------------------

    async def create_run(self, run: WorkflowRun, events: Sequence[Event] = ()) -> WorkflowRun:
        _check_sequences(events, 1)
        if run.last_sequence != len(events):
            raise ValueError(
                f"run {run.run_id!r}: last_sequence {run.last_sequence} does not match "
                f"its {len(events)} initial event(s)"
            )
        return await self._create(run, events, secrets.token_hex(8))

    async def _create(self, run: WorkflowRun, events: Sequence[Event], token: str) -> WorkflowRun:
        run_id = run.run_id
        pairs = _RUNS.pairs(run)
        pairs += ("_m", _member(_micros(run.created_at), run_id))
        index_keys = [self._key("idx", "all"), self._key("idx", "wf", run.workflow_name)]
        if run.parent_run_id is not None:
            index_keys.append(self._key("idx", "parent", run.parent_run_id))
        index_keys += [self._key("idx", "tag", tag) for tag in dict.fromkeys(run.tags)]
        key = run.idempotency_key
        args: list[str | int] = [
            self._base,
            run_id,
            "0" if key is None else "1",
            "" if key is None else key,
            token,
            len(pairs),
            *pairs,
            *map(_encode_event, events),
        ]
        client, scripts = self._client()
        with self._errors():
            reply = await scripts.create(
                keys=[self._key("run", run_id), self._key("events", run_id), *index_keys],
                args=args,
            )
        outcome = _text(reply[0])
        if outcome in ("ok", "replayed"):
            return run.copy()
        if outcome == "dup":
            existing = _run_from_hash(reply[1])
            if existing is None:  # pragma: no cover - an index pointing nowhere
                raise StorageError(f"idempotency key {key!r} points to a missing run")
            return existing
        raise RunAlreadyExistsError(f"run {run_id!r} already exists")

    async def get_run(self, run_id: str) -> WorkflowRun | None:
        client, _ = self._client()
        with self._errors():
            raw = await client.hgetall(self._key("run", run_id))
        return _run_from_hash(raw)

    async def get_run_by_idempotency_key(self, key: str) -> WorkflowRun | None:
        _, scripts = self._client()
        with self._errors():
            raw = await scripts.by_key(keys=[self._key("idem", key)], args=[self._base])
        return _run_from_hash(raw)

    async def query_runs(self, query: RunQuery) -> list[WorkflowRun]:
        if query.limit <= 0:
            return []
        keys = []
        if query.status is not None:
            keys.append(self._key("idx", "status", RunStatus(query.status).value))
        if query.workflow_name is not None:
            keys.append(self._key("idx", "wf", query.workflow_name))
        if query.tag is not None:
            keys.append(self._key("idx", "tag", query.tag))
        if query.parent_run_id is not None:
            keys.append(self._key("idx", "parent", query.parent_run_id))
        if not keys:
            keys.append(self._key("idx", "all"))
        # Lex bounds over "<19-digit biased micros>:<run_id>" members.
        upper: list[str] = []
        if query.created_before is not None:
            upper.append(f"{_micros(query.created_before) + _MEMBER_BIAS:019d}")
        if query.cursor is not None:
            upper.append(_member(*parse_cursor(query.cursor)))
        max_bound = "(" + min(upper) if upper else "+"
        if query.created_after is not None:
            min_bound = f"[{_micros(query.created_after) + _MEMBER_BIAS:019d}"
        else:
            min_bound = "-"
        _, scripts = self._client()
        with self._errors():
            rows = await scripts.query(
                keys=keys,
                args=[
                    self._base,
                    max_bound,
                    min_bound,
                    max(query.offset, 0),
                    query.limit,
                    "run:",
                ],
            )
        return [run for run in map(_run_from_hash, json.loads(rows)) if run is not None]

    # -- events ---------------------------------------------------------------------------

    async def append_events(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_last_sequence: int,
        update: RunUpdate | None = None,
    ) -> None:
        await self._append(run_id, events, expected_last_sequence, update, secrets.token_hex(8))

    async def _append(
        self,
        run_id: str,
        events: Sequence[Event],
        expected: int,
        update: RunUpdate | None,
        token: str,
    ) -> None:
        """:meth:`append_events` with an explicit write token (tests replay a retry)."""
        _check_sequences(events, expected + 1)
        new_last = events[-1].sequence if events else expected
        sets: list[str] = ["last_sequence", str(new_last), "_w", token]
        deletes: list[str] = []
        if update is not None and update.changes:
            for name, value in update.changes.items():
                if name not in UPDATABLE_RUN_FIELDS:
                    raise ValueError(f"RunUpdate cannot change {name!r}")
                if value is None:
                    deletes.append(name)
                else:
                    sets += (name, _RUNS.encode(name, value))
        args: list[str | int] = [
            self._base,
            run_id,
            str(expected),
            str(new_last),
            token,
            len(sets),
            *sets,
            len(deletes),
            *deletes,
            *map(_encode_event, events),
        ]
        _, scripts = self._client()
        with self._errors():
            reply = await scripts.append(
                keys=[self._key("run", run_id), self._key("events", run_id)], args=args
            )
        outcome = _text(reply[0])
        if outcome in ("ok", "replayed"):  # replayed: a retry of this write that had landed
            return
        if outcome == "missing":
            raise WorkflowNotFoundError(f"run {run_id!r} not found")
        raise SequenceConflictError(
            f"run {run_id!r}: expected last sequence {expected}, found {_text(reply[1])}"
        )

    async def get_events(self, run_id: str, *, after_sequence: int = 0) -> list[Event]:
        _, scripts = self._client()
        with self._errors():
            raw = await scripts.events(
                keys=[self._key("events", run_id)], args=[max(after_sequence, 0)]
            )
        parse_type = Event.parse_type
        return [
            Event(
                run_id=run_id,
                type=parse_type(e["t"]),
                data=e["d"],
                sequence=e["s"],
                timestamp=_EPOCH + timedelta(microseconds=e["ts"]),
                event_id=e["i"],
            )
            for e in json.loads(raw)
        ]

    # -- timers and leases ----------------------------------------------------------------

    async def list_due_runs(self, now: datetime, limit: int = 100) -> list[str]:
        if limit <= 0:
            return []
        client, _ = self._client()
        with self._errors():
            ids: list[Any] = await client.zrangebyscore(
                self._key("wake"), "-inf", _micros(now), start=0, num=limit
            )
        return [_text(i) for i in ids]

    async def claim_due_runs(
        self, now: datetime, owner: str, expires_at: datetime, limit: int = 100
    ) -> list[str]:
        """Lease up to ``limit`` due runs in one atomic script (see the module docstring)."""
        if limit <= 0:
            return []
        _, scripts = self._client()
        with self._errors():
            ids = await scripts.claim(
                keys=[self._key("wake")],
                args=[self._base, _micros(now), owner, _micros(expires_at), limit],
            )
        return [_text(i) for i in ids]

    async def next_wake_time(self) -> datetime | None:
        _, scripts = self._client()
        with self._errors():
            raw = await scripts.next_wake(keys=[self._key("wake")], args=[self._base])
        return None if raw is None else _from_micros(raw)

    async def list_stale_runs(self, now: datetime, limit: int = 100) -> list[WorkflowRun]:
        if limit <= 0:
            return []
        _, scripts = self._client()
        with self._errors():
            rows = await scripts.stale(
                keys=[self._key("active")], args=[self._base, _micros(now), limit]
            )
        return [run for run in map(_run_from_hash, json.loads(rows)) if run is not None]

    async def acquire_lease(
        self,
        run_id: str,
        owner: str,
        expires_at: datetime,
        now: datetime,
        *,
        steal_from: str | None = None,
    ) -> bool:
        args: list[str | int] = [
            self._base,
            run_id,
            owner,
            _micros(expires_at),
            _micros(now),
            "0" if steal_from is None else "1",
            "" if steal_from is None else steal_from,
        ]
        _, scripts = self._client()
        with self._errors():
            won = await scripts.acquire(keys=[self._key("run", run_id)], args=args)
        return bool(int(won))

    async def renew_leases(self, run_ids: Sequence[str], owner: str, expires_at: datetime) -> None:
        ids = list(dict.fromkeys(run_ids))
        expires = _micros(expires_at)
        _, scripts = self._client()
        for start in range(0, len(ids), _RENEW_CHUNK):
            chunk = ids[start : start + _RENEW_CHUNK]
            with self._errors():
                await scripts.renew(
                    keys=[self._key("run", i) for i in chunk],
                    args=[self._base, owner, expires, *chunk],
                )

    async def release_lease(self, run_id: str, owner: str) -> None:
        _, scripts = self._client()
        with self._errors():
            await scripts.release(keys=[self._key("run", run_id)], args=[self._base, run_id, owner])

    # -- cancellation and hooks -------------------------------------------------------------

    async def request_cancellation(self, run_id: str, reason: str | None, now: datetime) -> bool:
        args: list[str | int] = [
            self._base,
            _micros(now),
            "0" if reason is None else "1",
            "" if reason is None else reason,
        ]
        _, scripts = self._client()
        with self._errors():
            asked = await scripts.cancel(keys=[self._key("run", run_id)], args=args)
        return bool(int(asked))

    async def save_hook(self, hook: HookRecord) -> HookRecord:
        pairs = _HOOKS.pairs(hook)
        pairs += ("_m", _member(_micros(hook.created_at), hook.token_hash))
        keys = [
            self._key("hook", hook.token_hash),
            self._key("hookids", hook.run_id),
            self._key("hidx", "all"),
            self._key("hidx", "run", hook.run_id),
            self._key("hidx", "status", HookStatus(hook.status).value),
        ]
        args: list[str | int] = [self._base, hook.token_hash, hook.hook_id, len(pairs), *pairs]
        _, scripts = self._client()
        with self._errors():
            reply = await scripts.save_hook(keys=keys, args=args)
        if _text(reply[0]) == "dup":
            existing = _hook_from_hash(reply[1])
            if existing is not None:
                return existing
        return hook.copy()

    async def get_hook(self, token_hash: str) -> HookRecord | None:
        client, _ = self._client()
        with self._errors():
            raw = await client.hgetall(self._key("hook", token_hash))
        return _hook_from_hash(raw)

    async def list_hooks(
        self,
        *,
        run_id: str | None = None,
        status: HookStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[HookRecord]:
        """Newest ``created_at`` first (ties: ``token_hash`` descending), through the same
        lexicographic index walk as :meth:`list_runs`."""
        if limit <= 0:
            return []
        keys = []
        if run_id is not None:
            keys.append(self._key("hidx", "run", run_id))
        if status is not None:
            keys.append(self._key("hidx", "status", HookStatus(status).value))
        if not keys:
            keys.append(self._key("hidx", "all"))
        _, scripts = self._client()
        with self._errors():
            rows = await scripts.query(
                keys=keys, args=[self._base, "+", "-", max(offset, 0), limit, "hook:"]
            )
        return [hook for hook in map(_hook_from_hash, json.loads(rows)) if hook is not None]

    async def update_hook(
        self,
        token_hash: str,
        *,
        expected: HookStatus,
        status: HookStatus,
        payload: str | None = None,
        received_at: datetime | None = None,
    ) -> bool:
        args: list[str | int] = [
            self._base,
            HookStatus(expected).value,
            HookStatus(status).value,
            secrets.token_hex(8),
            "0" if payload is None else "1",
            "" if payload is None else payload,
            "0" if received_at is None else "1",
            "" if received_at is None else _micros(received_at),
        ]
        _, scripts = self._client()
        with self._errors():
            won = await scripts.update_hook(keys=[self._key("hook", token_hash)], args=args)
        return bool(int(won))

    # -- schedules --------------------------------------------------------------------------

    def _schedule_keys(self, schedule_id: str) -> list[str]:
        return [
            self._key("schedule", schedule_id),
            self._key("sidx", "all"),
            self._key("sidx", "due"),
        ]

    async def save_schedule(
        self, schedule: ScheduleRecord, *, expected_version: int | None
    ) -> bool:
        """One script: compare the stored ``version`` field with ``expected_version`` (or
        check the schedule is absent), then replace the hash and its index entries."""
        version = 1 if expected_version is None else expected_version + 1
        record = schedule.copy()
        record.version = version
        token = secrets.token_hex(8)
        pairs = [*_SCHEDULES.pairs(record), "_w", token]
        due = (
            _micros(record.next_run_time)
            if ScheduleStatus(record.status) == ScheduleStatus.ACTIVE
            and record.next_run_time is not None
            else ""
        )
        args: list[str | int] = [
            self._base,
            record.schedule_id,
            "" if expected_version is None else expected_version,
            version,
            token,
            due,
            len(pairs),
            *pairs,
        ]
        _, scripts = self._client()
        with self._errors():
            saved = await scripts.save_schedule(
                keys=self._schedule_keys(record.schedule_id), args=args
            )
        if int(saved):
            schedule.version = version
            return True
        return False

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        client, _ = self._client()
        with self._errors():
            raw = await client.hgetall(self._key("schedule", schedule_id))
        return _schedule_from_hash(raw)

    async def list_schedules(
        self,
        *,
        workflow_name: str | None = None,
        status: ScheduleStatus | None = None,
        limit: int = 1000,
    ) -> list[ScheduleRecord]:
        if limit <= 0:
            return []
        args: list[str | int] = [
            self._base,
            "0" if workflow_name is None else "1",
            "" if workflow_name is None else workflow_name,
            "0" if status is None else "1",
            "" if status is None else ScheduleStatus(status).value,
            limit,
        ]
        _, scripts = self._client()
        with self._errors():
            rows = await scripts.list_schedules(keys=[self._key("sidx", "all")], args=args)
        return [s for s in map(_schedule_from_hash, json.loads(rows)) if s is not None]

    async def list_due_schedules(self, now: datetime, limit: int = 100) -> list[ScheduleRecord]:
        if limit <= 0:
            return []
        _, scripts = self._client()
        with self._errors():
            rows = await scripts.due_schedules(
                keys=[self._key("sidx", "due")], args=[self._base, _micros(now), limit]
            )
        return [s for s in map(_schedule_from_hash, json.loads(rows)) if s is not None]

    async def delete_schedule(self, schedule_id: str) -> bool:
        _, scripts = self._client()
        with self._errors():
            existed = await scripts.delete_schedule(
                keys=self._schedule_keys(schedule_id), args=[schedule_id]
            )
        return bool(int(existed))


__all__ = ["DEFAULT_PREFIX", "DEFAULT_URL", "RedisStorageBackend", "redact_url"]
