"""DynamoDB storage: runs, event logs and hooks in one DynamoDB table (single-table design).

Extra: ``pip install 'pyworkflow-engine[dynamodb]'`` (installs ``aioboto3``).

URL (see :func:`pyworkflow.storage.config.storage_from_url`)::

    dynamodb://TABLE?region=us-east-1
    dynamodb://TABLE?region=eu-west-1&create_table=false
    dynamodb://KEY:SECRET@TABLE?region=us-east-1&endpoint_url=http://127.0.0.1:8000

``TABLE`` defaults to ``pyworkflow`` (``dynamodb://``). Credentials come from the standard
AWS chain (environment, profile, IAM role) unless the URL carries ``KEY:SECRET@``, which
is meant for local emulators (DynamoDB Local, moto); ``endpoint_url`` points at one.
``create_table`` (default ``true``) creates the table with on-demand billing when it is
missing, and adds the ``hooks_by_status`` index to a table created by a release before
hooks (an ``UpdateTable``; connect waits until the index is active). With ``false`` the
table must exist with every index (create it with the layout below, e.g. with provisioned
capacity; add a missing index with :func:`add_index_request`). Features: persistent,
shared safely by any number of processes (``cross_process``).

Table design
------------
One table, string keys ``PK`` (partition) and ``SK`` (sort)::

    item                PK                SK                          attributes
    run projection      RUN#<run_id>      META                        one per WorkflowRun field
    event               RUN#<run_id>      EVT#<sequence, 20 digits>   event_id, type, timestamp,
                                                                      data | data_z | chunks
    event data chunk    RUN#<run_id>      EVT#<sequence>#<n, 5 dig.>  part (binary)
    tag                 RUN#<run_id>      TAG#<tag>                   gsi_tag + immutable run fields
    idempotency key     IDEM#<key>        IDEM                        run_id
    hook                HOOK#<token_hash> HOOK                        one per HookRecord field
                                                                      (status as hook_status),
                                                                      gsi_hook, hook_sk,
                                                                      write_token, payload |
                                                                      payload_z | payload_chunks
                                                                      + payload_part (version)
    hook payload chunk  HOOK#<token_hash> PART#<version>#<n, 5 dig.>  part (binary)
    run's hook id       RUN#<run_id>      HOOKID#<hook_id>            token_hash
    schedule            SCHEDULES         SCHEDULE#<schedule_id>      one per ScheduleRecord
                                                                      field (status as
                                                                      schedule_status),
                                                                      data | data_z,
                                                                      write_token

A run's events share its partition and sort by sequence, so ``get_events`` is one
(paged) ``Query``. Run indexes (global secondary indexes), all but ``runs_due`` sorted
by ``created_sk`` = ``<created_at as 18 zero-padded digits>#<run_id>`` (so key order is
exactly ``(created_at, run_id)``, the order of ``list_runs``)::

    index               partition key                          used for
    runs_by_created     gsi_all = "RUN" (every run)            list_runs without key filters
    runs_by_status      status                                 status=, stale-run recovery
    runs_by_workflow    gsi_wf = "W#<workflow_name>"           workflow_name=
    runs_by_parent      gsi_parent = "P#<parent_run_id>"       parent_run_id= (sparse)
    runs_by_tag         gsi_tag = "T#<tag>" (tag items)        tag=
    runs_due            gsi_due = "DUE", sort due_sk =         list_due_runs, claim_due_runs,
                        "<wake_at digits>#<run_id>"            next_wake_time (sparse)

``runs_due`` is sparse: a run carries ``gsi_due``/``due_sk`` only while it is
``suspended`` with a ``wake_at``, so the index holds exactly the sleeping runs.
Index values are prefixed because DynamoDB rejects empty strings as key values.

Hooks have one index of their own (keys only)::

    hooks_by_status     gsi_hook = "H#<status>", sort          list_hooks without run_id
                        hook_sk = "<created_at digits>#<token_hash>"

``list_hooks(status=...)`` reads that partition newest first; without filters it reads
the four status partitions and merges them. ``list_hooks(run_id=...)`` needs no index:
one consistent ``Query`` of the run's ``HOOKID#`` items, then a ``BatchGetItem`` of the
hooks (a run has few), sorted and filtered in Python. The hook item stores its status as
``hook_status``: an attribute named ``status`` would put it into ``runs_by_status``.

Schedules need no index: they are few, and all live in the one ``SCHEDULES`` partition,
sorted by ``schedule_id``. ``list_schedules`` is a consistent ``Query`` of that partition
in key order (filters as a ``FilterExpression``); ``list_due_schedules`` reads the whole
partition with a filter on ``schedule_status`` and ``next_run_time`` and orders the
matches in Python. A schedule carries no index key attributes, so it is in no index.

Indexes project keys plus the few small attributes their filters need (``INCLUDE``:
``run_id``, ``status``, ``workflow_name``, ``parent_run_id``, ``tags``; the due index
``lease_owner``/``lease_expires_at``), never payloads or ``last_sequence``/``updated_at``.
So the frequent writes (every step bumps ``last_sequence``; leases are renewed) touch
the base item only; an index item is rewritten only when a run is created or its status
or timer changes. Listing reads candidate ids from an index and then fetches the runs
with a strongly consistent ``BatchGetItem``.

Atomicity
---------
* ``create_run``: one ``TransactWriteItems`` with the run (``attribute_not_exists``),
  its idempotency item (``attribute_not_exists``), tag items and first events. A
  failed idempotency condition returns the run that owns the key; a failed run
  condition raises :class:`RunAlreadyExistsError`. Exactly one run per key under any
  concurrency, across processes.
* ``append_events``: one transaction: ``Update`` of the run item with
  ``ConditionExpression last_sequence = :expected`` (the fence) plus one ``Put`` per
  event item with ``attribute_not_exists``. A cancelled transaction is re-read to tell
  :class:`WorkflowNotFoundError` from :class:`SequenceConflictError`. A pure projection
  update (no events) is a single conditional ``UpdateItem``.
* ``request_cancellation``: a conditional ``UpdateItem`` of ``cancel_requested_at`` and
  ``cancel_reason`` (run exists, not terminal, no request recorded yet); it leaves
  ``last_sequence`` alone, so the run's writer is never fenced out. A failed condition is
  re-read to answer ``True`` (asked before) or ``False`` (terminal or unknown run).
* ``save_hook``: one transaction with the hook item and the run's ``HOOKID#<hook_id>``
  item, both ``attribute_not_exists``, plus payload chunks. A failed condition is
  re-read: the run's stored hook with that ``hook_id`` is returned (a replay); a token
  hash held by another run's hook is replaced, as the reference backend does.
* ``update_hook``: a consistent read, then a write conditioned on ``hook_status =
  :expected AND write_token = :read`` (the item is unchanged since the read). Of two
  concurrent deliveries exactly one write passes; the loser re-reads and answers
  ``False``. Each write sets a fresh ``write_token``, so when an SDK retry of a write that
  did land fails the condition, the re-read recognizes the token and answers ``True``.
  A single ``UpdateItem``, or a transaction when payload chunks are written or the
  chunks of a replaced payload deleted.
* ``save_schedule``: one ``PutItem`` conditioned on ``attribute_not_exists`` (insert)
  or ``version = :expected`` (compare-and-set); it replaces the whole item. Each write
  sets a fresh ``write_token``, so when an SDK retry of a write that did land fails the
  condition, a re-read recognizes the token and answers ``True``.
* Leases: a conditional ``UpdateItem`` (compare-and-set on owner and expiry).
  ``claim_due_runs`` queries the due index (skipping leased runs with a filter) and
  leases each candidate with a condition that re-checks ``status``, ``wake_at`` and the
  lease on the base item.
* Every transaction carries a ``ClientRequestToken``, so the SDK's automatic retry of
  a request whose response was lost is idempotent (it cannot turn our own committed
  append into a spurious conflict). ``TransactionConflict`` cancellations (another
  transaction touching the same items) are retried with jittered backoff.

Limits
------
* **100 items per transaction** (and 4 MB): one append may write at most 99 event items
  (an event whose data is chunked counts once per chunk; ``create_run`` also counts its
  idempotency and tag items). Splitting an append over several transactions would break
  its atomicity, so a larger append raises :class:`StorageError` and writes nothing.
  The engine appends a few events per step (typically 1-3), far below the limit.
* **400 KB per item**: event ``data`` larger than 16 KiB is zlib-compressed
  (``data_z``); if the compressed bytes exceed 350,000 they are split into chunk items
  that sort right after their event and are reassembled transparently by
  ``get_events`` (a 1 MB event round-trips). Run payloads (``input_payload``,
  ``result_payload``, ``context_payload``, ``error``) over 16 KiB are compressed too,
  but not chunked: the run item is updated in place under a condition, so a run
  whose payloads exceed about 350 KB *compressed* is rejected with
  :class:`StorageError` (keep large results in events or external blob storage).
* Hook payloads are stored like event data: plain up to 16 KiB, else compressed, and
  compressed bytes over 350,000 go to chunk items written in the same transaction as the
  hook (a 1 MB payload round-trips). Chunk keys carry the version of the write that made
  them, so a reader never mixes two payloads; the chunks of a replaced payload are
  deleted with it. The 4 MB transaction limit caps a payload at about 3.5 MB
  *compressed*. A hook's ``schema`` is compressed but must stay under 32 KiB
  compressed (it shares the hook item with the payload).
* Schedule ``data`` is stored like a run payload: plain up to 16 KiB, else compressed;
  a schedule whose data exceeds about 350 KB *compressed* is rejected.
* Key sizes: run ids, idempotency keys and tags become key values (partition keys up
  to 2048 bytes, sort keys up to 1024 bytes); so do token hashes, hook ids and
  schedule ids.

Consistency
-----------
Base-table reads (``get_run``, ``get_events``, the idempotency lookup and the re-check
of every index candidate) use ``ConsistentRead``: a caller reads its own writes. Global
secondary indexes are eventually consistent in AWS (usually well under a second):

* ``list_runs``/``list_stale_runs`` re-check each index candidate against the
  consistent base item, so a returned run always matches the filters and is current;
  a run created or changed in the last moment may be missing from a page.
* ``list_hooks`` without ``run_id`` re-checks each ``hooks_by_status`` candidate against
  the consistent hook item (a hook whose status just changed may be missing from a page);
  ``list_hooks(run_id=...)``, ``get_hook`` and ``update_hook`` read the base table only.
* ``list_due_runs`` and ``next_wake_time`` re-check candidates the same way;
  ``claim_due_runs`` leases with a condition on the base item, so a stale index entry
  is never claimed. A run that was just suspended is found by the next scheduler poll.

The tests run against moto (an emulator, whose indexes are immediately consistent),
not AWS.

Capacity and cost
-----------------
* On-demand billing by default. Writes are transactional, which DynamoDB bills at twice
  the normal rate: a step (run update + 1-3 events) costs roughly 2 WCU per KB-rounded
  item; a pure projection update or a lease operation is one normal write.
* ``get_events`` is a consistent ``Query`` (1 RCU per 4 KB read); replaying a long
  history is a few paged reads.
* ``list_runs`` reads index items (eventually consistent, 0.5 RCU per 4 KB) plus a
  consistent ``BatchGetItem`` of the returned runs (1 RCU per 4 KB per run). Filters not
  covered by the chosen index key (e.g. ``status`` together with ``workflow_name``) are
  a ``FilterExpression``: filtered-out index items are still read and billed. ``offset``
  reads and discards the skipped runs: page with ``cursor`` (keyset on ``created_sk``).
* ``runs_by_created``, ``runs_by_status`` and ``runs_due`` use low-cardinality partition
  keys, so each key takes on the order of 1,000 index writes per second (writes happen
  on run creation, status changes and timer changes only). A throttled index throttles
  the table; at several hundred run starts per second consider write sharding.
* A failed conditional write (a lost lease race) still consumes write capacity.
* ``request_cancellation`` is one normal write. ``save_hook`` is a transaction of two
  items (plus chunks); ``update_hook`` a consistent read plus one normal write (a
  transaction only with chunks). A hook write touches ``hooks_by_status`` only when the
  status changes (keys-only projection).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

# aioboto3/aiobotocore/botocore ship no type information (no py.typed, and this project
# does not depend on third-party stub packages); every client call is typed Any here.
import aioboto3  # type: ignore[import-untyped]
from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

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

Item = dict[str, Any]

DEFAULT_TABLE = "pyworkflow"
DEFAULT_REGION = "us-east-1"

# DynamoDB limits (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html)
MAX_TRANSACTION_ITEMS = 100
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024
MAX_BATCH_GET = 100
# Data above this many bytes is zlib-compressed; compressed data above CHUNK_BYTES is
# split into chunk items. Both stay well under the 400 KB item limit with the keys.
COMPRESS_OVER = 16 * 1024
CHUNK_BYTES = 350_000
# How long connect() waits for a new table (and its indexes) to become ACTIVE.
TABLE_WAIT_SECONDS = 600.0

# Index names (the table's GSIs) and the attributes that carry their keys.
INDEX_CREATED = "runs_by_created"
INDEX_STATUS = "runs_by_status"
INDEX_WORKFLOW = "runs_by_workflow"
INDEX_PARENT = "runs_by_parent"
INDEX_TAG = "runs_by_tag"
INDEX_DUE = "runs_due"
INDEX_HOOKS = "hooks_by_status"
# Indexes a later release added: connect() adds them to an existing table (create_table).
_ADDED_INDEXES = frozenset({INDEX_HOOKS})
# Compressed size limit of a hook's schema (it shares the hook item with the payload).
MAX_HOOK_SCHEMA_BYTES = 32 * 1024

_RUN_SK = "META"
_IDEM_SK = "IDEM"
_EVT = "EVT#"
_EVT_END = "EVT$"  # sorts after every "EVT#..." key
_TAG = "TAG#"
_ALL = "RUN"
_DUE = "DUE"
_SEQ_WIDTH = 20
_CHUNK_WIDTH = 5
_HOOK = "HOOK#"
_HOOK_SK = "HOOK"
_HOOKID = "HOOKID#"
_PART = "PART#"
_SCHEDULES_PK = "SCHEDULES"
_SCHEDULE = "SCHEDULE#"

_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

# -- conversions ----------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Shifts epoch microseconds of any datetime (year 1..9999) to 0..3.2e17: 18 digits.
_SORT_OFFSET = (_EPOCH - datetime(1, 1, 1, tzinfo=UTC)) // _MICROSECOND
_SORT_WIDTH = 18
_STATUSES: dict[str, RunStatus] = {s.value: s for s in RunStatus}
_TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)
_STALE_CANDIDATES = [
    s.value for s in RunStatus if s not in TERMINAL_STATUSES and s != RunStatus.SUSPENDED
]
# Transaction cancellation reasons worth retrying (nothing was written).
_RETRY_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)
_RETRY_CODES = frozenset({"TransactionConflictException", "TransactionInProgressException"})
_MAX_ATTEMPTS = 8

_DATETIME_FIELDS = frozenset(
    {
        "created_at",
        "updated_at",
        "started_at",
        "completed_at",
        "deadline_at",
        "wake_at",
        "cancel_requested_at",
        "lease_expires_at",
    }
)
_INT_FIELDS = frozenset({"recovery_attempts", "max_recovery_attempts", "nesting_depth"})
# Possibly large strings: stored as S, or zlib-compressed as B under "<name>_z".
_PAYLOAD_FIELDS = frozenset({"input_payload", "result_payload", "context_payload", "error"})
_STRING_FIELDS = frozenset(
    {
        "idempotency_key",
        "max_duration",
        "parent_run_id",
        "continued_from_run_id",
        "continued_to_run_id",
        "cancel_reason",
        "lease_owner",
    }
)
_REQUIRED_FIELDS = frozenset({"status", "updated_at", "recovery_attempts"})


def _micros(value: datetime) -> int:
    # Exact integer arithmetic; an aware datetime in any zone maps to the same instant.
    return (value - _EPOCH) // _MICROSECOND


def _from_micros(value: str) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value))


def _sort_key(micros: int) -> str:
    """Fixed-width digits whose string order is the numeric order of ``micros``."""
    return f"{micros + _SORT_OFFSET:0{_SORT_WIDTH}d}"


def _created_sk(created_at: datetime, run_id: str) -> str:
    return f"{_sort_key(_micros(created_at))}#{run_id}"


def _due_sk(wake_at: datetime, run_id: str) -> str:
    return f"{_sort_key(_micros(wake_at))}#{run_id}"


def _run_pk(run_id: str) -> str:
    return f"RUN#{run_id}"


def _run_key(run_id: str) -> Item:
    return {"PK": {"S": _run_pk(run_id)}, "SK": {"S": _RUN_SK}}


def _event_sk(sequence: int) -> str:
    return f"{_EVT}{sequence:0{_SEQ_WIDTH}d}"


def _json(value: Any) -> str:
    return compact_json(value)


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _blob_attrs(name: str, value: str | None) -> tuple[Item, list[str], list[bytes]]:
    """Attributes to set and to remove for a possibly large string, and its chunks.

    Plain (``name``) up to 16 KiB, else zlib-compressed (``<name>_z``) when that is
    smaller; compressed bytes over ``CHUNK_BYTES`` are returned as chunks (and the
    count as ``<name>_chunks``) for the caller to store as separate items.
    """
    plain, packed_name, count = name, f"{name}_z", f"{name}_chunks"
    if value is None:
        return {}, [plain, packed_name, count], []
    raw = value.encode()
    if len(raw) > COMPRESS_OVER:
        packed = zlib.compress(raw, 6)
        if len(packed) > CHUNK_BYTES:
            parts = [packed[i : i + CHUNK_BYTES] for i in range(0, len(packed), CHUNK_BYTES)]
            return {count: _n(len(parts))}, [plain, packed_name], parts
        if len(packed) < len(raw):
            return {packed_name: {"B": packed}}, [plain, count], []
    return {plain: _s(value)}, [packed_name, count], []


def _payload_attrs(name: str, value: str | None) -> tuple[Item, list[str]]:
    """Attributes to set and to remove for a run payload field (plain or compressed)."""
    sets, removes, parts = _blob_attrs(name, value)
    if parts:
        raw = len(value.encode()) if value is not None else 0
        packed = sum(len(p) for p in parts)
        raise StorageError(
            f"dynamodb: run field {name!r} is {raw} bytes ({packed} "
            f"compressed); a run item must stay under DynamoDB's 400 KB item limit. "
            "Keep large values in step results (events are chunked) or external storage."
        )
    # Run payloads are never chunked: there is no count attribute to remove.
    return sets, [r for r in removes if r != f"{name}_chunks"]


def _field_attrs(name: str, value: Any) -> tuple[Item, list[str]]:
    """Attributes to set and to remove for one WorkflowRun field value (None clears)."""
    if name in _PAYLOAD_FIELDS:
        return _payload_attrs(name, value)
    if value is None:
        if name in _REQUIRED_FIELDS:
            raise ValueError(f"run field {name!r} cannot be cleared")
        return {}, [name]
    if name in _DATETIME_FIELDS:
        return {name: _n(_micros(value))}, []
    if name in _INT_FIELDS:
        return {name: _n(int(value))}, []
    if name == "status":
        return {name: _s(RunStatus(value).value)}, []
    if name in _STRING_FIELDS:
        return {name: _s(str(value))}, []
    raise ValueError(f"run field {name!r} cannot be updated")  # pragma: no cover


def _due_attrs(run_id: str, status: Any, wake_at: datetime | None) -> tuple[Item, list[str]]:
    """The sparse ``runs_due`` keys: present only while suspended with a wake time."""
    if status is not None and RunStatus(status) == RunStatus.SUSPENDED and wake_at is not None:
        return {"gsi_due": _s(_DUE), "due_sk": _s(_due_sk(wake_at, run_id))}, []
    return {}, ["gsi_due", "due_sk"]


def _run_item(run: WorkflowRun) -> Item:
    item: Item = {
        "PK": _s(_run_pk(run.run_id)),
        "SK": _s(_RUN_SK),
        "run_id": _s(run.run_id),
        "workflow_name": _s(run.workflow_name),
        "tags": {"L": [_s(t) for t in run.tags]},
        "recover_on_worker_loss": {"BOOL": bool(run.recover_on_worker_loss)},
        "last_sequence": _n(run.last_sequence),
        "created_sk": _s(_created_sk(run.created_at, run.run_id)),
        "gsi_all": _s(_ALL),
        "gsi_wf": _s(f"W#{run.workflow_name}"),
    }
    for name in (
        *_DATETIME_FIELDS,
        *_INT_FIELDS,
        *_PAYLOAD_FIELDS,
        *_STRING_FIELDS,
        "status",
    ):
        sets, _ = _field_attrs(name, getattr(run, name))
        item.update(sets)
    if run.parent_run_id is not None:
        item["gsi_parent"] = _s(f"P#{run.parent_run_id}")
    due, _ = _due_attrs(run.run_id, run.status, run.wake_at)
    item.update(due)
    return item


def _tag_items(run: WorkflowRun) -> list[Item]:
    """One item per distinct tag (tags never change after creation)."""
    items = []
    for tag in dict.fromkeys(run.tags):
        item: Item = {
            "PK": _s(_run_pk(run.run_id)),
            "SK": _s(f"{_TAG}{tag}"),
            "gsi_tag": _s(f"T#{tag}"),
            "created_sk": _s(_created_sk(run.created_at, run.run_id)),
            "run_id": _s(run.run_id),
            "workflow_name": _s(run.workflow_name),
        }
        if run.parent_run_id is not None:
            item["parent_run_id"] = _s(run.parent_run_id)
        items.append(item)
    return items


def _opt_dt(item: Item, name: str) -> datetime | None:
    value = item.get(name)
    return None if value is None else _from_micros(value["N"])


def _opt_str(item: Item, name: str) -> str | None:
    value = item.get(name)
    return None if value is None else cast(str, value["S"])


def _payload(item: Item, name: str) -> str | None:
    packed = item.get(f"{name}_z")
    if packed is not None:
        return zlib.decompress(_bytes(packed["B"])).decode()
    return _opt_str(item, name)


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else bytes(value)


def _item_to_run(item: Item) -> WorkflowRun:
    return WorkflowRun(
        run_id=item["run_id"]["S"],
        workflow_name=item["workflow_name"]["S"],
        status=_STATUSES[item["status"]["S"]],
        created_at=_from_micros(item["created_at"]["N"]),
        updated_at=_from_micros(item["updated_at"]["N"]),
        started_at=_opt_dt(item, "started_at"),
        completed_at=_opt_dt(item, "completed_at"),
        input_payload=_payload(item, "input_payload"),
        result_payload=_payload(item, "result_payload"),
        error=_payload(item, "error"),
        idempotency_key=_opt_str(item, "idempotency_key"),
        max_duration=_opt_str(item, "max_duration"),
        deadline_at=_opt_dt(item, "deadline_at"),
        context_payload=_payload(item, "context_payload"),
        tags=[t["S"] for t in item["tags"]["L"]],
        recovery_attempts=int(item["recovery_attempts"]["N"]),
        max_recovery_attempts=int(item["max_recovery_attempts"]["N"]),
        recover_on_worker_loss=bool(item["recover_on_worker_loss"]["BOOL"]),
        parent_run_id=_opt_str(item, "parent_run_id"),
        nesting_depth=int(item["nesting_depth"]["N"]),
        continued_from_run_id=_opt_str(item, "continued_from_run_id"),
        continued_to_run_id=_opt_str(item, "continued_to_run_id"),
        wake_at=_opt_dt(item, "wake_at"),
        cancel_requested_at=_opt_dt(item, "cancel_requested_at"),
        cancel_reason=_opt_str(item, "cancel_reason"),
        lease_owner=_opt_str(item, "lease_owner"),
        lease_expires_at=_opt_dt(item, "lease_expires_at"),
        last_sequence=int(item["last_sequence"]["N"]),
    )


def _event_items(run_id: str, event: Event) -> list[Item]:
    """The event's item, followed by its data chunks when the data is too large."""
    sk = _event_sk(event.sequence)
    head: Item = {
        "PK": _s(_run_pk(run_id)),
        "SK": _s(sk),
        "sequence": _n(event.sequence),
        "event_id": _s(event.event_id),
        "type": _s(event.type.value),
        "timestamp": _n(_micros(event.timestamp)),
    }
    text = _json(event.data)
    raw = text.encode()
    if len(raw) <= COMPRESS_OVER:
        head["data"] = _s(text)
        return [head]
    packed = zlib.compress(raw, 6)
    if len(packed) <= CHUNK_BYTES:
        head["data_z"] = {"B": packed}
        return [head]
    parts = [packed[i : i + CHUNK_BYTES] for i in range(0, len(packed), CHUNK_BYTES)]
    head["chunks"] = _n(len(parts))
    chunks: list[Item] = [
        {"PK": _s(_run_pk(run_id)), "SK": _s(f"{sk}#{i:0{_CHUNK_WIDTH}d}"), "part": {"B": part}}
        for i, part in enumerate(parts)
    ]
    return [head, *chunks]


_HOOK_STATUSES: dict[str, HookStatus] = {s.value: s for s in HookStatus}


def _hook_pk(token_hash: str) -> str:
    return f"{_HOOK}{token_hash}"


def _hook_key(token_hash: str) -> Item:
    return {"PK": _s(_hook_pk(token_hash)), "SK": _s(_HOOK_SK)}


def _hook_id_key(run_id: str, hook_id: str) -> Item:
    """The item that makes ``hook_id`` unique within its run (it names the hook)."""
    return {"PK": _s(_run_pk(run_id)), "SK": _s(f"{_HOOKID}{hook_id}")}


def _hook_sk(created_at: datetime, token_hash: str) -> str:
    return f"{_sort_key(_micros(created_at))}#{token_hash}"


def _hook_gsi(status: HookStatus | str) -> str:
    return f"H#{HookStatus(status).value}"


def _part_sk(version: str, index: int) -> str:
    return f"{_PART}{version}#{index:0{_CHUNK_WIDTH}d}"


def _part_items(token_hash: str, version: str, parts: Sequence[bytes]) -> list[Item]:
    return [
        {"PK": _s(_hook_pk(token_hash)), "SK": _s(_part_sk(version, i)), "part": {"B": part}}
        for i, part in enumerate(parts)
    ]


def _old_part_keys(token_hash: str, head: Item) -> list[Item]:
    """Keys of the payload chunks ``head`` (a stored hook item) points at."""
    if "payload_chunks" not in head:
        return []
    version = head["payload_part"]["S"]
    return [
        {"PK": _s(_hook_pk(token_hash)), "SK": _s(_part_sk(version, i))}
        for i in range(int(head["payload_chunks"]["N"]))
    ]


def _hook_items(hook: HookRecord, version: str) -> tuple[Item, list[Item]]:
    """The hook's item and its payload chunk items (written under ``version``)."""
    status = HookStatus(hook.status)
    head: Item = {
        "PK": _s(_hook_pk(hook.token_hash)),
        "SK": _s(_HOOK_SK),
        "token_hash": _s(hook.token_hash),
        "run_id": _s(hook.run_id),
        "hook_id": _s(hook.hook_id),
        "name": _s(hook.name),
        "hook_status": _s(status.value),
        "created_at": _n(_micros(hook.created_at)),
        "gsi_hook": _s(_hook_gsi(status)),
        "hook_sk": _s(_hook_sk(hook.created_at, hook.token_hash)),
        "write_token": _s(version),
    }
    if hook.token:
        head["token"] = _s(hook.token)
    for name in ("expires_at", "received_at"):
        value = getattr(hook, name)
        if value is not None:
            head[name] = _n(_micros(value))
    schema, _, schema_parts = _blob_attrs("schema", hook.schema)
    if schema_parts or _item_bytes(schema) > MAX_HOOK_SCHEMA_BYTES:
        raise StorageError(
            f"dynamodb: the schema of hook {hook.hook_id!r} is over "
            f"{MAX_HOOK_SCHEMA_BYTES} bytes compressed; it must fit in the hook item"
        )
    head.update(schema)
    payload, _, parts = _blob_attrs("payload", hook.payload)
    head.update(payload)
    if parts:
        head["payload_part"] = _s(version)
    return head, _part_items(hook.token_hash, version, parts)


def _item_to_hook(item: Item, chunked_payload: bytes | None) -> HookRecord:
    payload = (
        zlib.decompress(chunked_payload).decode()
        if chunked_payload is not None
        else _payload(item, "payload")
    )
    return HookRecord(
        token_hash=item["token_hash"]["S"],
        run_id=item["run_id"]["S"],
        hook_id=item["hook_id"]["S"],
        name=item["name"]["S"],
        token=_opt_str(item, "token") or "",
        status=_HOOK_STATUSES[item["hook_status"]["S"]],
        created_at=_from_micros(item["created_at"]["N"]),
        expires_at=_opt_dt(item, "expires_at"),
        received_at=_opt_dt(item, "received_at"),
        payload=payload,
        schema=_payload(item, "schema"),
    )


def _hook_order(item: Item) -> tuple[int, str]:
    return int(item["created_at"]["N"]), item["token_hash"]["S"]


_SCHEDULE_STATUSES: dict[str, ScheduleStatus] = {s.value: s for s in ScheduleStatus}


def _schedule_key(schedule_id: str) -> Item:
    return {"PK": _s(_SCHEDULES_PK), "SK": _s(f"{_SCHEDULE}{schedule_id}")}


def _schedule_item(schedule: ScheduleRecord, version: int, write_token: str) -> Item:
    """The schedule's item, stored at ``version``."""
    item: Item = {
        **_schedule_key(schedule.schedule_id),
        "schedule_id": _s(schedule.schedule_id),
        "workflow_name": _s(schedule.workflow_name),
        "schedule_status": _s(ScheduleStatus(schedule.status).value),
        "version": _n(version),
        "created_at": _n(_micros(schedule.created_at)),
        "updated_at": _n(_micros(schedule.updated_at)),
        "write_token": _s(write_token),
    }
    if schedule.next_run_time is not None:
        item["next_run_time"] = _n(_micros(schedule.next_run_time))
    # Plain or compressed, like a run payload (no attribute at all for empty data).
    data, _ = _payload_attrs("data", schedule.data or None)
    item.update(data)
    return item


def _item_to_schedule(item: Item) -> ScheduleRecord:
    return ScheduleRecord(
        schedule_id=item["schedule_id"]["S"],
        workflow_name=item["workflow_name"]["S"],
        status=_SCHEDULE_STATUSES[item["schedule_status"]["S"]],
        next_run_time=_opt_dt(item, "next_run_time"),
        data=_payload(item, "data") or "",
        version=int(item["version"]["N"]),
        created_at=_from_micros(item["created_at"]["N"]),
        updated_at=_from_micros(item["updated_at"]["N"]),
    )


def _item_bytes(item: Item) -> int:
    """Approximate stored size of an item (names plus values), for limit checks."""
    total = 0
    for name, value in item.items():
        total += len(name)
        (kind, raw), *_ = value.items()
        if kind in ("S", "N"):
            total += len(raw.encode()) if kind == "S" else len(raw)
        elif kind == "B":
            total += len(raw)
        elif kind == "L":
            total += sum(len(v.get("S", "").encode()) + 3 for v in raw) + 3
        else:
            total += 1
    return total


class _EventReader:
    """Rebuilds events from their items (heads and chunks, in sort-key order)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.events: list[Event] = []
        self._head: Item | None = None
        self._parts: list[bytes] = []

    def feed(self, item: Item) -> None:
        if "part" in item:
            if self._head is None:
                raise StorageError(f"dynamodb: orphan event chunk {item['SK']['S']!r}")
            self._parts.append(_bytes(item["part"]["B"]))
            return
        self._finish()
        if "chunks" in item:
            self._head = item
        else:
            self.events.append(self._event(item, None))

    def done(self) -> list[Event]:
        self._finish()
        return self.events

    def _finish(self) -> None:
        head, parts = self._head, self._parts
        if head is None:
            return
        self._head, self._parts = None, []
        if len(parts) != int(head["chunks"]["N"]):
            raise StorageError(
                f"dynamodb: event {head['SK']['S']!r} of run {self.run_id!r} has "
                f"{len(parts)} of {head['chunks']['N']} data chunks"
            )
        self.events.append(self._event(head, zlib.decompress(b"".join(parts))))

    def _event(self, item: Item, raw: bytes | None) -> Event:
        if raw is None:
            if "data_z" in item:
                raw = zlib.decompress(_bytes(item["data_z"]["B"]))
            else:
                raw = item["data"]["S"].encode()
        return Event(
            run_id=self.run_id,
            type=Event.parse_type(item["type"]["S"]),
            data=json.loads(raw),
            sequence=int(item["sequence"]["N"]),
            timestamp=_from_micros(item["timestamp"]["N"]),
            event_id=item["event_id"]["S"],
        )


class _Expr:
    """Placeholders for one request's expressions (every name goes through ``#n``)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self._by_name: dict[str, str] = {}

    def name(self, attr: str) -> str:
        key = self._by_name.get(attr)
        if key is None:
            key = self._by_name[attr] = f"#n{len(self._by_name)}"
            self.names[key] = attr
        return key

    def value(self, value: Any) -> str:
        key = f":v{len(self.values)}"
        self.values[key] = value
        return key

    def params(self) -> Item:
        params: Item = {}
        if self.names:
            params["ExpressionAttributeNames"] = self.names
        if self.values:
            params["ExpressionAttributeValues"] = self.values
        return params


def _update_expression(expr: _Expr, sets: Item, removes: Iterable[str]) -> str:
    parts = []
    if sets:
        parts.append(
            "SET " + ", ".join(f"{expr.name(k)} = {expr.value(v)}" for k, v in sets.items())
        )
    removes = [r for r in dict.fromkeys(removes) if r not in sets]
    if removes:
        parts.append("REMOVE " + ", ".join(expr.name(r) for r in removes))
    return " ".join(parts)


def _lease_free_condition(
    expr: _Expr, owner: str, now: datetime, steal_from: str | None = None
) -> str:
    """:func:`pyworkflow.storage.base.lease_is_free` as a condition expression."""
    lease_owner, expires = expr.name("lease_owner"), expr.name("lease_expires_at")
    clauses = [
        f"attribute_not_exists({lease_owner})",
        f"{lease_owner} = {expr.value(_s(owner))}",
        f"attribute_not_exists({expires})",
        f"{expires} < {expr.value(_n(_micros(now)))}",
    ]
    if steal_from is not None:
        clauses.append(f"{lease_owner} = {expr.value(_s(steal_from))}")
    return "(" + " OR ".join(clauses) + ")"


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _reasons(exc: BaseException) -> list[str]:
    """Cancellation reason codes of a TransactionCanceledException, one per item."""
    response = getattr(exc, "response", None) or {}
    return [str(r.get("Code") or "None") for r in response.get("CancellationReasons") or ()]


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(min(0.5, 0.01 * 2**attempt) * (0.5 + random.random()))


class _Cancelled(Exception):
    """A transaction whose conditions failed (reason codes, one per item)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons

    def failed(self, index: int) -> bool:
        """Whether the condition of the ``index``-th transaction item failed."""
        return index < len(self.reasons) and self.reasons[index] == "ConditionalCheckFailed"


def _flag(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigurationError(f"DynamoDB URL option {name}={value!r} must be true or false")


class DynamoDBStorageBackend(StorageBackend):
    """Runs and events in one DynamoDB table, shared safely between processes.

    Args:
        table_name: the table (created on first use unless ``create_table=False``).
        region: the AWS region.
        endpoint_url: a non-AWS endpoint (DynamoDB Local, moto), or ``None``.
        create_table: create the table (on-demand billing) when it is missing.
        session: an ``aioboto3.Session`` to take credentials and configuration from
            (default: a new session using the standard AWS credential chain).

    The backend connects on first use. One object may be used from successive event
    loops, but not from two loops at the same time; call :meth:`close` before a loop
    ends, or aiohttp reports the abandoned HTTP session as unclosed.
    """

    capabilities = frozenset({"persistent", "cross_process"})

    def __init__(
        self,
        table_name: str = DEFAULT_TABLE,
        region: str = DEFAULT_REGION,
        endpoint_url: str | None = None,
        *,
        create_table: bool = True,
        session: Any = None,
    ) -> None:
        if not _TABLE_NAME.match(table_name):
            raise ConfigurationError(
                f"invalid DynamoDB table name {table_name!r}: 3-255 characters of "
                "A-Z, a-z, 0-9, '_', '-' and '.'"
            )
        self.table_name = table_name
        self.region = region
        self.endpoint_url = endpoint_url
        self.create_table = create_table
        self._session = session if session is not None else aioboto3.Session()
        self._client: Any = None
        self._client_cm: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._table_ready = False

    def __repr__(self) -> str:
        endpoint = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"{type(self).__name__}({self.table_name!r}, region={self.region!r}{endpoint})"

    @classmethod
    def from_url(cls, url: str) -> DynamoDBStorageBackend:
        """Build from ``dynamodb://[KEY:SECRET@]TABLE?region=..&endpoint_url=..&create_table=..``.

        Raises:
            ConfigurationError: not a ``dynamodb://`` URL, a path after the table name,
                an unknown option, or an invalid table name or flag.
        """
        parts = urlsplit(url)
        if parts.scheme.lower() != "dynamodb":
            raise ConfigurationError(f"not a DynamoDB URL: expected dynamodb://TABLE, got {url!r}")
        if parts.path.strip("/"):
            raise ConfigurationError(
                f"DynamoDB URL takes the table as its host, not a path: "
                f"use dynamodb://TABLE?region=..., got path {parts.path!r}"
            )
        params = parse_qs(parts.query, keep_blank_values=True)
        allowed = {"region", "endpoint_url", "create_table"}
        unknown = set(params) - allowed
        if unknown:
            raise ConfigurationError(
                f"unsupported option(s) {', '.join(sorted(unknown))} in DynamoDB URL; "
                f"supported: {', '.join(sorted(allowed))}"
            )
        options = {name: values[-1] for name, values in params.items()}
        userinfo, _, host = parts.netloc.rpartition("@")
        session = None
        if userinfo:
            key, sep, secret = userinfo.partition(":")
            if not sep or not key or not secret:
                raise ConfigurationError(
                    "DynamoDB URL credentials must be KEY:SECRET@ (both parts), or omitted "
                    "to use the standard AWS credential chain"
                )
            session = aioboto3.Session(
                aws_access_key_id=unquote(key), aws_secret_access_key=unquote(secret)
            )
        return cls(
            unquote(host) or DEFAULT_TABLE,
            options.get("region") or DEFAULT_REGION,
            options.get("endpoint_url") or None,
            create_table=_flag("create_table", options.get("create_table", "true")),
            session=session,
        )

    # -- connection management ----------------------------------------------------------

    async def _get_client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        if self._lock is None or self._loop is not loop:
            # A new loop: locks and the HTTP session of the old one cannot be reused.
            self._lock, self._loop = asyncio.Lock(), loop
            self._client = self._client_cm = None
        async with self._lock:
            if self._client is None:
                self._client = await self._open()
            return self._client

    async def _open(self) -> Any:
        cm = self._session.client(
            "dynamodb",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            config=AioConfig(retries={"mode": "standard", "max_attempts": 5}),
        )
        try:
            client = await cm.__aenter__()
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"dynamodb: cannot open a client: {exc}") from exc
        try:
            if not self._table_ready:
                await self._ensure_table(client)
                self._table_ready = True
        except BaseException:
            await cm.__aexit__(None, None, None)
            raise
        self._client_cm = cm
        return client

    async def connect(self) -> None:
        await self._get_client()

    async def close(self) -> None:
        cm, self._client, self._client_cm = self._client_cm, None, None
        # A client opened on another (finished) loop cannot be closed from this one.
        if cm is not None and self._loop is asyncio.get_running_loop():
            try:
                await cm.__aexit__(None, None, None)
            except (ClientError, BotoCoreError, OSError) as exc:
                raise StorageError(f"dynamodb: closing the client failed: {exc}") from exc

    async def _ensure_table(self, client: Any) -> None:
        """Create the table if allowed and missing; wait until it and its indexes are
        active; check that the indexes this backend queries exist."""
        try:
            description = await self._describe(client)
            if description is None:
                if not self.create_table:
                    raise StorageError(
                        f"dynamodb: table {self.table_name!r} does not exist in "
                        f"{self.region} and create_table is off; create it (see "
                        "pyworkflow.storage.dynamodb.table_definition) or enable create_table"
                    )
                try:
                    await client.create_table(**table_definition(self.table_name))
                except ClientError as exc:
                    if _error_code(exc) != "ResourceInUseException":  # created meanwhile
                        raise
                description = await self._wait_active(client)
            elif not _is_active(description):
                description = await self._wait_active(client)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(
                f"dynamodb: cannot prepare table {self.table_name!r}: {exc}"
            ) from exc
        keys = {k["AttributeName"]: k["KeyType"] for k in description.get("KeySchema", [])}
        if keys != {"PK": "HASH", "SK": "RANGE"}:
            raise StorageError(
                f"dynamodb: table {self.table_name!r} has key schema {keys}; "
                "pyworkflow needs PK (HASH, string) and SK (RANGE, string)"
            )
        missing = _missing_indexes(description)
        if missing and self.create_table and set(missing) <= _ADDED_INDEXES:
            # A table made by an earlier release: add the newer indexes in place.
            for name in missing:
                description = await self._add_index(client, name)
            missing = _missing_indexes(description)
        if missing:
            raise StorageError(
                f"dynamodb: table {self.table_name!r} lacks the global secondary "
                f"index(es) {', '.join(missing)}; add them as in "
                "pyworkflow.storage.dynamodb.table_definition (for an index a newer "
                "release added: client.update_table(**add_index_request(table, index)), "
                "or connect once with create_table enabled)"
            )

    async def _add_index(self, client: Any, name: str) -> Item:
        """Add index ``name`` to the existing table and wait until it is active (DynamoDB
        backfills it from the existing items). Another process adding it at the same
        time is fine."""
        try:
            try:
                await client.update_table(**add_index_request(self.table_name, name))
            except ClientError:
                description = await self._describe(client)
                if description is None or name not in _index_names(description):
                    raise
            return await self._wait_active(client)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(
                f"dynamodb: cannot add index {name!r} to table {self.table_name!r}: {exc}"
            ) from exc

    async def _describe(self, client: Any) -> Item | None:
        try:
            response = await client.describe_table(TableName=self.table_name)
        except ClientError as exc:
            if _error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        return cast(Item, response["Table"])

    async def _wait_active(self, client: Any) -> Item:
        deadline = asyncio.get_running_loop().time() + TABLE_WAIT_SECONDS
        delay = 0.05
        while True:
            description = await self._describe(client)
            if description is not None and _is_active(description):
                return description
            if asyncio.get_running_loop().time() > deadline:
                raise StorageError(
                    f"dynamodb: table {self.table_name!r} not active after "
                    f"{TABLE_WAIT_SECONDS:.0f} s"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    # -- request helpers ------------------------------------------------------------------

    def _error(self, action: str, exc: BaseException) -> StorageError:
        text = f"dynamodb ({self.table_name}): {action} failed: {exc}"
        if "size" in str(exc).lower():
            text += " (DynamoDB limits: 400 KB per item, 4 MB and 100 items per transaction)"
        return StorageError(text)

    async def _call(self, operation: str, expected: Iterable[str] = (), **params: Any) -> Item:
        """One client call; errors become StorageError except the ``expected`` codes,
        which are re-raised as ``ClientError`` for the caller to interpret."""
        client = await self._get_client()
        method = getattr(client, operation)
        for attempt in range(_MAX_ATTEMPTS):
            try:
                return cast(Item, await method(TableName=self.table_name, **params))
            except ClientError as exc:
                code = _error_code(exc)
                if code in expected:
                    raise
                if code in _RETRY_CODES and attempt < _MAX_ATTEMPTS - 1:
                    await _backoff(attempt)
                    continue
                raise self._error(operation, exc) from exc
            except BotoCoreError as exc:
                raise self._error(operation, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _transact(self, actions: list[Item], what: str) -> None:
        """Run ``actions`` as one transaction.

        Raises:
            _Cancelled: a condition failed (nothing was written).
            StorageError: over the transaction limits, or any other failure.
        """
        if len(actions) > MAX_TRANSACTION_ITEMS:
            raise StorageError(
                f"dynamodb: {what} needs {len(actions)} items in one transaction; DynamoDB "
                f"allows {MAX_TRANSACTION_ITEMS} (each event is one item, plus one per "
                "350 KB chunk of large data). Append fewer events at a time; nothing was written."
            )
        size = sum(_item_bytes(next(iter(a.values())).get("Item", {})) for a in actions)
        if size > MAX_TRANSACTION_BYTES:
            raise StorageError(
                f"dynamodb: {what} writes about {size} bytes in one transaction; DynamoDB "
                f"allows {MAX_TRANSACTION_BYTES}. Nothing was written."
            )
        for action in actions:
            next(iter(action.values()))["TableName"] = self.table_name
        client = await self._get_client()
        for attempt in range(_MAX_ATTEMPTS):
            try:
                await client.transact_write_items(
                    TransactItems=actions, ClientRequestToken=uuid.uuid4().hex
                )
                return
            except ClientError as exc:
                code = _error_code(exc)
                if code == "TransactionCanceledException":
                    reasons = _reasons(exc)
                    if "ConditionalCheckFailed" in reasons:
                        raise _Cancelled(reasons) from exc
                    if set(reasons) - {"None"} <= _RETRY_REASONS and attempt < _MAX_ATTEMPTS - 1:
                        await _backoff(attempt)
                        continue
                elif code in _RETRY_CODES and attempt < _MAX_ATTEMPTS - 1:
                    await _backoff(attempt)
                    continue
                raise self._error(what, exc) from exc
            except BotoCoreError as exc:
                raise self._error(what, exc) from exc

    async def _get_item(self, key: Item, projection: Sequence[str] = ()) -> Item | None:
        params: Item = {"Key": key, "ConsistentRead": True}
        if projection:
            expr = _Expr()
            params["ProjectionExpression"] = ", ".join(expr.name(p) for p in projection)
            params.update(expr.params())
        response = await self._call("get_item", **params)
        return cast(Item | None, response.get("Item"))

    async def _query(self, **params: Any) -> AsyncIterator[list[Item]]:
        """Pages of a ``Query`` (follows ``LastEvaluatedKey``)."""
        start: Item | None = None
        while True:
            if start is not None:
                params["ExclusiveStartKey"] = start
            response = await self._call("query", **params)
            yield cast(list[Item], response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start:
                return

    async def _batch_get_runs(
        self, run_ids: Sequence[str], projection: Sequence[str] = ()
    ) -> dict[str, Item]:
        """Run items by id, read consistently (ids that do not exist are left out)."""
        keys = [_run_key(r) for r in dict.fromkeys(run_ids)]
        return {item["PK"]["S"][4:]: item for item in await self._batch_get_keys(keys, projection)}

    async def _batch_get_hooks(self, token_hashes: Sequence[str]) -> dict[str, Item]:
        """Hook items by token hash, read consistently (missing ones are left out)."""
        keys = [_hook_key(h) for h in dict.fromkeys(token_hashes)]
        return {item["token_hash"]["S"]: item for item in await self._batch_get_keys(keys, ())}

    async def _batch_get_keys(self, keys: Sequence[Item], projection: Sequence[str]) -> list[Item]:
        chunks = [keys[i : i + MAX_BATCH_GET] for i in range(0, len(keys), MAX_BATCH_GET)]
        found: list[Item] = []
        for items in await asyncio.gather(*(self._batch_get(c, projection) for c in chunks)):
            found.extend(items)
        return found

    async def _batch_get(self, keys: Sequence[Item], projection: Sequence[str]) -> list[Item]:
        request: Item = {"Keys": list(keys), "ConsistentRead": True}
        if projection:
            expr = _Expr()
            request["ProjectionExpression"] = ", ".join(expr.name(p) for p in ("PK", *projection))
            request.update(expr.params())
        client = await self._get_client()
        items: list[Item] = []
        pending: Item = {self.table_name: request}
        for attempt in range(_MAX_ATTEMPTS * 2):
            try:
                response = await client.batch_get_item(RequestItems=pending)
            except (ClientError, BotoCoreError) as exc:
                raise self._error("batch_get_item", exc) from exc
            items.extend(response.get("Responses", {}).get(self.table_name, []))
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                return items
            await _backoff(attempt)
        raise StorageError(f"dynamodb ({self.table_name}): batch read kept being throttled")

    # -- runs -----------------------------------------------------------------------------

    async def create_run(self, run: WorkflowRun, events: Sequence[Event] = ()) -> WorkflowRun:
        run_item = _run_item(run)
        key = run.idempotency_key
        if key is None and not events and not run.tags:
            # A single item needs no transaction (half the write cost).
            try:
                await self._call(
                    "put_item",
                    expected=("ConditionalCheckFailedException",),
                    Item=run_item,
                    ConditionExpression="attribute_not_exists(PK)",
                )
            except ClientError:
                raise RunAlreadyExistsError(f"run {run.run_id!r} already exists") from None
            return run.copy()
        not_exists = "attribute_not_exists(PK)"
        actions: list[Item] = [{"Put": {"Item": run_item, "ConditionExpression": not_exists}}]
        if key is not None:
            idem = {"PK": _s(f"IDEM#{key}"), "SK": _s(_IDEM_SK), "run_id": _s(run.run_id)}
            actions.append({"Put": {"Item": idem, "ConditionExpression": not_exists}})
        actions.extend({"Put": {"Item": item}} for item in _tag_items(run))
        actions.extend(
            {"Put": {"Item": item, "ConditionExpression": not_exists}}
            for event in events
            for item in _event_items(run.run_id, event)
        )
        try:
            await self._transact(actions, f"create_run({run.run_id!r})")
        except _Cancelled as cancelled:
            # The idempotency key wins over the run id (as in the reference backend).
            if key is not None and cancelled.failed(1):
                existing = await self.get_run_by_idempotency_key(key)
                if existing is None:
                    raise StorageError(
                        f"dynamodb: idempotency key {key!r} is taken but its run is missing"
                    ) from None
                return existing
            if cancelled.failed(0):
                raise RunAlreadyExistsError(f"run {run.run_id!r} already exists") from None
            raise StorageError(
                f"dynamodb: create_run({run.run_id!r}) found events already stored ({cancelled})"
            ) from None
        return run.copy()

    async def get_run(self, run_id: str) -> WorkflowRun | None:
        item = await self._get_item(_run_key(run_id))
        return None if item is None else _item_to_run(item)

    async def get_run_by_idempotency_key(self, key: str) -> WorkflowRun | None:
        idem = await self._get_item({"PK": _s(f"IDEM#{key}"), "SK": _s(_IDEM_SK)})
        return None if idem is None else await self.get_run(idem["run_id"]["S"])

    async def query_runs(self, query: RunQuery) -> list[WorkflowRun]:
        wanted = query.offset + query.limit
        if query.limit <= 0:
            return []
        expr = _Expr()
        filters: list[str] = []
        # The most selective filter picks the index; the others become a FilterExpression
        # on attributes that index projects (and are re-checked in Python below).
        if query.parent_run_id is not None:
            index, attr, value = INDEX_PARENT, "gsi_parent", f"P#{query.parent_run_id}"
        elif query.tag is not None:
            index, attr, value = INDEX_TAG, "gsi_tag", f"T#{query.tag}"
        elif query.workflow_name is not None:
            index, attr, value = INDEX_WORKFLOW, "gsi_wf", f"W#{query.workflow_name}"
        elif query.status is not None:
            index, attr, value = INDEX_STATUS, "status", RunStatus(query.status).value
        else:
            index, attr, value = INDEX_CREATED, "gsi_all", _ALL
        condition = f"{expr.name(attr)} = {expr.value(_s(value))}"
        if query.status is not None and index not in (INDEX_STATUS, INDEX_TAG):
            status = expr.value(_s(RunStatus(query.status).value))
            filters.append(f"{expr.name('status')} = {status}")
        if query.workflow_name is not None and index != INDEX_WORKFLOW:
            filters.append(f"{expr.name('workflow_name')} = {expr.value(_s(query.workflow_name))}")
        if query.tag is not None and index != INDEX_TAG:
            filters.append(f"contains({expr.name('tags')}, {expr.value(_s(query.tag))})")

        # Key range on created_sk: lower bound inclusive, upper bounds exclusive.
        lower = None if query.created_after is None else _sort_key(_micros(query.created_after))
        uppers = []
        if query.created_before is not None:
            uppers.append(_sort_key(_micros(query.created_before)))
        after = parse_cursor(query.cursor) if query.cursor else None
        if after is not None:
            uppers.append(f"{_sort_key(after[0])}#{after[1]}")
        upper = min(uppers) if uppers else None
        created = "created_sk"  # a plain name (not reserved); no placeholder needed
        if lower is not None and upper is not None:
            if lower >= upper:
                return []
            lo, hi = expr.value(_s(lower)), expr.value(_s(upper))
            condition += f" AND {created} BETWEEN {lo} AND {hi}"  # hi itself dropped below
        elif upper is not None:
            condition += f" AND {created} < {expr.value(_s(upper))}"
        elif lower is not None:
            condition += f" AND {created} >= {expr.value(_s(lower))}"

        params: Item = {
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ScanIndexForward": False,
            "Limit": min(1000, max(25, wanted)),
            **expr.params(),
        }
        if filters:
            params["FilterExpression"] = " AND ".join(filters)
        matched: list[WorkflowRun] = []
        async for page in self._query(**params):
            ids = [i["run_id"]["S"] for i in page if i["created_sk"]["S"] != upper]
            items = await self._batch_get_runs(ids)
            for run_id in ids:
                item = items.get(run_id)
                if item is None:
                    continue
                run = _item_to_run(item)
                # Re-check against the consistent item: index entries may lag behind.
                if query.matches(run) and (
                    after is None or (_micros(run.created_at), run_id) < after
                ):
                    matched.append(run)
            if len(matched) >= wanted:
                break
        return matched[query.offset : wanted]

    # -- events ---------------------------------------------------------------------------

    async def append_events(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_last_sequence: int,
        update: RunUpdate | None = None,
    ) -> None:
        changes = dict(update.changes) if update is not None else {}
        unknown = set(changes) - set(UPDATABLE_RUN_FIELDS)
        if unknown:
            raise ValueError(f"RunUpdate cannot change {sorted(unknown)}")
        sets: Item = {
            "last_sequence": _n(events[-1].sequence if events else expected_last_sequence)
        }
        removes: list[str] = []
        for name, value in changes.items():
            field_sets, field_removes = _field_attrs(name, value)
            sets.update(field_sets)
            removes.extend(field_removes)
        event_actions: list[Item] = [
            {"Put": {"Item": item, "ConditionExpression": "attribute_not_exists(PK)"}}
            for event in events
            for item in _event_items(run_id, event)
        ]
        # The due index needs status and wake_at together; when the update names only
        # one of them (and does not end the suspension) the other is read first, and the
        # write is conditioned on it being unchanged.
        touches_due = "status" in changes or "wake_at" in changes
        ends_due = "status" in changes and RunStatus(changes["status"]) != RunStatus.SUSPENDED
        must_read = (
            touches_due and not ends_due and not ("status" in changes and "wake_at" in changes)
        )
        for attempt in range(_MAX_ATTEMPTS):
            expr = _Expr()
            condition = f"{expr.name('last_sequence')} = {expr.value(_n(expected_last_sequence))}"
            due_sets: Item = {}
            due_removes: list[str] = []
            if must_read:
                current = await self._get_item(
                    _run_key(run_id), ("status", "wake_at", "last_sequence")
                )
                self._check_sequence(run_id, current, expected_last_sequence)
                assert current is not None
                status = changes.get("status", current["status"]["S"])
                wake = changes["wake_at"] if "wake_at" in changes else _opt_dt(current, "wake_at")
                due_sets, due_removes = _due_attrs(run_id, status, wake)
                if "status" in changes:
                    stored_wake = current.get("wake_at")
                    wake_name = expr.name("wake_at")
                    condition += (
                        f" AND attribute_not_exists({wake_name})"
                        if stored_wake is None
                        else f" AND {wake_name} = {expr.value(stored_wake)}"
                    )
                else:
                    condition += f" AND {expr.name('status')} = {expr.value(current['status'])}"
            elif touches_due:
                due_sets, due_removes = _due_attrs(
                    run_id, changes.get("status"), changes.get("wake_at")
                )
            update_params: Item = {
                "Key": _run_key(run_id),
                "UpdateExpression": _update_expression(
                    expr, {**sets, **due_sets}, [*removes, *due_removes]
                ),
                "ConditionExpression": condition,
                **expr.params(),
            }
            try:
                if event_actions:
                    await self._transact(
                        [{"Update": update_params}, *event_actions],
                        f"append_events({run_id!r})",
                    )
                else:
                    await self._call(
                        "update_item",
                        expected=("ConditionalCheckFailedException",),
                        **update_params,
                    )
                return
            except (_Cancelled, ClientError) as exc:
                if isinstance(exc, _Cancelled) and not exc.failed(0):
                    raise SequenceConflictError(
                        f"run {run_id!r}: an event after sequence {expected_last_sequence} "
                        "is already stored"
                    ) from None
            current = await self._get_item(_run_key(run_id), ("last_sequence",))
            self._check_sequence(run_id, current, expected_last_sequence)
            if not must_read:  # pragma: no cover - the fence was the only condition
                raise SequenceConflictError(
                    f"run {run_id!r}: conditional append rejected at sequence "
                    f"{expected_last_sequence}"
                )
            await _backoff(attempt)  # status/wake_at changed under us: read again
        raise StorageError(f"dynamodb: append_events({run_id!r}) kept racing concurrent updates")

    @staticmethod
    def _check_sequence(run_id: str, current: Item | None, expected: int) -> None:
        if current is None:
            raise WorkflowNotFoundError(f"run {run_id!r} not found")
        found = int(current["last_sequence"]["N"])
        if found != expected:
            raise SequenceConflictError(
                f"run {run_id!r}: expected last sequence {expected}, found {found}"
            )

    async def get_events(self, run_id: str, *, after_sequence: int = 0) -> list[Event]:
        expr = _Expr()
        condition = (
            f"{expr.name('PK')} = {expr.value(_s(_run_pk(run_id)))} AND {expr.name('SK')} "
            f"BETWEEN {expr.value(_s(_event_sk(max(after_sequence, 0) + 1)))} "
            f"AND {expr.value(_s(_EVT_END))}"
        )
        reader = _EventReader(run_id)
        async for page in self._query(
            KeyConditionExpression=condition, ConsistentRead=True, **expr.params()
        ):
            for item in page:
                reader.feed(item)
        return reader.done()

    # -- timers and leases ----------------------------------------------------------------

    def _due_query(self, now: datetime | None, extra_filter: Callable[[_Expr], str] | None) -> Item:
        expr = _Expr()
        condition = f"{expr.name('gsi_due')} = {expr.value(_s(_DUE))}"
        if now is not None:
            # Every due_sk of a wake_at <= now sorts below the digits of now + 1 µs.
            upper = _sort_key(_micros(now) + 1)
            condition += f" AND {expr.name('due_sk')} < {expr.value(_s(upper))}"
        params: Item = {"IndexName": INDEX_DUE, "KeyConditionExpression": condition}
        if extra_filter is not None:
            params["FilterExpression"] = extra_filter(expr)
        params.update(expr.params())
        return params

    async def _verified_due(self, ids: list[str], now: datetime | None) -> list[tuple[int, str]]:
        """``(wake_at micros, run_id)`` of the ids that really are due (consistent read)."""
        items = await self._batch_get_runs(ids, ("status", "wake_at"))
        due = []
        for run_id in ids:
            item = items.get(run_id)
            if item is None or item.get("status", {}).get("S") != RunStatus.SUSPENDED.value:
                continue
            wake = item.get("wake_at")
            if wake is None or (now is not None and int(wake["N"]) > _micros(now)):
                continue
            due.append((int(wake["N"]), run_id))
        return sorted(due)

    async def list_due_runs(self, now: datetime, limit: int = 100) -> list[str]:
        if limit <= 0:
            return []
        found: list[str] = []
        params = self._due_query(now, None)
        params["Limit"] = min(1000, max(limit, 25))
        async for page in self._query(**params):
            ids = [i["run_id"]["S"] for i in page]
            found.extend(run_id for _, run_id in await self._verified_due(ids, now))
            if len(found) >= limit:
                break
        return found[:limit]

    async def claim_due_runs(
        self, now: datetime, owner: str, expires_at: datetime, limit: int = 100
    ) -> list[str]:
        """Query the due index, skipping runs whose lease is held (a filter on the
        projected lease attributes), then lease candidates in ``wake_at`` order with a
        conditional update that re-checks status, wake time and lease on the run."""
        if limit <= 0:
            return []
        params = self._due_query(now, lambda expr: _lease_free_condition(expr, owner, now))
        params["Limit"] = min(1000, max(limit * 2, 25))
        claimed: list[str] = []
        async for page in self._query(**params):
            candidates = [i["run_id"]["S"] for i in page]
            while candidates and len(claimed) < limit:
                batch, candidates = (
                    candidates[: limit - len(claimed)],
                    candidates[limit - len(claimed) :],
                )
                results = await asyncio.gather(
                    *(self._lease(r, owner, expires_at, now, None, due_at=now) for r in batch)
                )
                claimed.extend(r for r, ok in zip(batch, results, strict=True) if ok)
            if len(claimed) >= limit:
                break
        return claimed

    async def next_wake_time(self) -> datetime | None:
        params = self._due_query(None, None)
        params["Limit"] = 25
        async for page in self._query(**params):
            due = await self._verified_due([i["run_id"]["S"] for i in page], None)
            if due:
                return _EPOCH + timedelta(microseconds=due[0][0])
        return None

    async def list_stale_runs(self, now: datetime, limit: int = 100) -> list[WorkflowRun]:
        if limit <= 0:
            return []
        stale: list[WorkflowRun] = []
        cutoff = _micros(now)
        for status in _STALE_CANDIDATES:
            expr = _Expr()
            params: Item = {
                "IndexName": INDEX_STATUS,
                "KeyConditionExpression": f"{expr.name('status')} = {expr.value(_s(status))}",
                "Limit": min(1000, max(limit, 25)),
                **expr.params(),
            }
            async for page in self._query(**params):
                ids = [i["run_id"]["S"] for i in page]
                items = await self._batch_get_runs(ids)
                for run_id in ids:
                    item = items.get(run_id)
                    if item is None or item["status"]["S"] != status:
                        continue  # the index entry was stale
                    expires = item.get("lease_expires_at")
                    if expires is None or int(expires["N"]) < cutoff:
                        stale.append(_item_to_run(item))
                if len(stale) >= limit:
                    return stale[:limit]
        return stale

    async def _lease(
        self,
        run_id: str,
        owner: str,
        expires_at: datetime,
        now: datetime,
        steal_from: str | None,
        *,
        due_at: datetime | None = None,
    ) -> bool:
        expr = _Expr()
        terminal = ", ".join(expr.value(_s(s)) for s in _TERMINAL)
        status = expr.name("status")
        conditions = [
            f"attribute_exists({expr.name('PK')})",
            f"NOT ({status} IN ({terminal}))",
            _lease_free_condition(expr, owner, now, steal_from),
        ]
        if due_at is not None:  # a claim: the run must still be due on the base item
            conditions.append(f"{status} = {expr.value(_s(RunStatus.SUSPENDED.value))}")
            conditions.append(f"{expr.name('wake_at')} <= {expr.value(_n(_micros(due_at)))}")
        sets = {"lease_owner": _s(owner), "lease_expires_at": _n(_micros(expires_at))}
        try:
            await self._call(
                "update_item",
                expected=("ConditionalCheckFailedException",),
                Key=_run_key(run_id),
                UpdateExpression=_update_expression(expr, sets, ()),
                ConditionExpression=" AND ".join(conditions),
                **expr.params(),
            )
        except ClientError:
            return False
        return True

    async def acquire_lease(
        self,
        run_id: str,
        owner: str,
        expires_at: datetime,
        now: datetime,
        *,
        steal_from: str | None = None,
    ) -> bool:
        return await self._lease(run_id, owner, expires_at, now, steal_from)

    async def _update_if_owner(
        self, run_id: str, owner: str, sets: Item, removes: list[str]
    ) -> None:
        expr = _Expr()
        # A failed condition means: not (or no longer) the holder, or no such run.
        with contextlib.suppress(ClientError):
            await self._call(
                "update_item",
                expected=("ConditionalCheckFailedException",),
                Key=_run_key(run_id),
                UpdateExpression=_update_expression(expr, sets, removes),
                ConditionExpression=f"{expr.name('lease_owner')} = {expr.value(_s(owner))}",
                **expr.params(),
            )

    async def renew_leases(self, run_ids: Sequence[str], owner: str, expires_at: datetime) -> None:
        ids = list(dict.fromkeys(run_ids))
        sets = {"lease_expires_at": _n(_micros(expires_at))}
        for start in range(0, len(ids), 25):  # bounded concurrency
            await asyncio.gather(
                *(self._update_if_owner(r, owner, sets, []) for r in ids[start : start + 25])
            )

    async def release_lease(self, run_id: str, owner: str) -> None:
        await self._update_if_owner(run_id, owner, {}, ["lease_owner", "lease_expires_at"])

    # -- signals from outside a run: cancellation and hooks ---------------------------------

    async def request_cancellation(self, run_id: str, reason: str | None, now: datetime) -> bool:
        """A conditional ``UpdateItem`` of the run's cancel fields (never of
        ``last_sequence``, so the run's writer is not fenced out). It writes only while
        no request is recorded; a failed condition is re-read to tell "already asked"
        (``True``) from a terminal or unknown run (``False``)."""
        sets: Item = {"cancel_requested_at": _n(_micros(now))}
        removes: list[str] = []
        if reason is None:
            removes.append("cancel_reason")
        else:
            sets["cancel_reason"] = _s(reason)
        for attempt in range(_MAX_ATTEMPTS):
            expr = _Expr()
            terminal = ", ".join(expr.value(_s(s)) for s in _TERMINAL)
            condition = (
                f"attribute_exists({expr.name('PK')}) "
                f"AND NOT ({expr.name('status')} IN ({terminal})) "
                f"AND attribute_not_exists({expr.name('cancel_requested_at')})"
            )
            with contextlib.suppress(ClientError):
                await self._call(
                    "update_item",
                    expected=("ConditionalCheckFailedException",),
                    Key=_run_key(run_id),
                    UpdateExpression=_update_expression(expr, sets, removes),
                    ConditionExpression=condition,
                    **expr.params(),
                )
                return True
            current = await self._get_item(_run_key(run_id), ("status", "cancel_requested_at"))
            if current is None or current["status"]["S"] in _TERMINAL:
                return False
            if "cancel_requested_at" in current:
                return True  # asked before (the first time and reason stay)
            await _backoff(attempt)  # the run's writer cleared a request meanwhile
        raise StorageError(f"dynamodb: request_cancellation({run_id!r}) kept racing updates")

    async def save_hook(self, hook: HookRecord) -> HookRecord:
        """One transaction: the hook item and its ``RUN#<run_id>``/``HOOKID#<hook_id>``
        item, both ``attribute_not_exists``, plus payload chunks. A failed condition is
        re-read: the run's stored hook with that ``hook_id`` is returned; a token hash
        held by another run's hook is replaced (as the reference backend does)."""
        version = uuid.uuid4().hex
        head, parts = _hook_items(hook, version)
        pointer: Item = {
            **_hook_id_key(hook.run_id, hook.hook_id),
            "token_hash": _s(hook.token_hash),
        }
        stored_pointer: Item | None = None
        old: Item | None = None
        for attempt in range(_MAX_ATTEMPTS):
            expr = _Expr()
            actions: list[Item] = []
            # The hook item: new, or (replacing) exactly the one read below.
            if old is None:
                head_condition = f"attribute_not_exists({expr.name('PK')})"
            else:
                token = expr.value(old["write_token"])
                head_condition = f"{expr.name('write_token')} = {token}"
            actions.append(
                {"Put": {"Item": head, "ConditionExpression": head_condition, **expr.params()}}
            )
            expr = _Expr()
            if stored_pointer is None:
                pointer_condition = f"attribute_not_exists({expr.name('PK')})"
            else:  # it names a hook that no longer has this run and hook_id
                stale = expr.value(stored_pointer["token_hash"])
                pointer_condition = f"{expr.name('token_hash')} = {stale}"
            actions.append(
                {
                    "Put": {
                        "Item": pointer,
                        "ConditionExpression": pointer_condition,
                        **expr.params(),
                    }
                }
            )
            actions.extend({"Put": {"Item": item}} for item in parts)
            if old is not None:
                old_id = (old["run_id"]["S"], old["hook_id"]["S"])
                if old_id != (hook.run_id, hook.hook_id):
                    expr = _Expr()
                    mine = expr.value(_s(hook.token_hash))
                    actions.append(
                        {
                            "Delete": {
                                "Key": _hook_id_key(*old_id),
                                "ConditionExpression": f"{expr.name('token_hash')} = {mine}",
                                **expr.params(),
                            }
                        }
                    )
                actions.extend({"Delete": {"Key": k}} for k in _old_part_keys(hook.token_hash, old))
            try:
                await self._transact(actions, f"save_hook({hook.hook_id!r})")
                return hook.copy()
            except _Cancelled:
                pass
            stored_pointer = await self._get_item(_hook_id_key(hook.run_id, hook.hook_id))
            if stored_pointer is not None:
                existing = await self.get_hook(stored_pointer["token_hash"]["S"])
                if existing is not None and (existing.run_id, existing.hook_id) == (
                    hook.run_id,
                    hook.hook_id,
                ):
                    return existing  # the run saved this hook before (a replay)
            old = await self._get_item(_hook_key(hook.token_hash))
            if old is not None and (old["run_id"]["S"], old["hook_id"]["S"]) == (
                hook.run_id,
                hook.hook_id,
            ):
                loaded = await self._load_hook(old)
                if loaded is not None:
                    return loaded
            if attempt:
                await _backoff(attempt)
        raise StorageError(f"dynamodb: save_hook({hook.hook_id!r}) kept racing updates")

    async def get_hook(self, token_hash: str) -> HookRecord | None:
        item = await self._get_item(_hook_key(token_hash))
        return None if item is None else await self._load_hook(item)

    async def _load_hook(self, item: Item) -> HookRecord | None:
        """The hook of ``item``, with its chunked payload read when it has one (re-reading
        the item if a concurrent update replaced the chunks meanwhile)."""
        token_hash = item["token_hash"]["S"]
        for attempt in range(_MAX_ATTEMPTS):
            keys = _old_part_keys(token_hash, item)
            if not keys:
                return _item_to_hook(item, None)
            expr = _Expr()
            condition = (
                f"{expr.name('PK')} = {expr.value(keys[0]['PK'])} AND {expr.name('SK')} "
                f"BETWEEN {expr.value(keys[0]['SK'])} AND {expr.value(keys[-1]['SK'])}"
            )
            parts: list[bytes] = []
            async for page in self._query(
                KeyConditionExpression=condition, ConsistentRead=True, **expr.params()
            ):
                parts.extend(_bytes(i["part"]["B"]) for i in page)
            if len(parts) == len(keys):
                return _item_to_hook(item, b"".join(parts))
            fresh = await self._get_item(_hook_key(token_hash))
            if fresh is None:
                return None
            item = fresh
            await _backoff(attempt)
        raise StorageError("dynamodb: the payload chunks of a hook kept changing while read")

    async def list_hooks(
        self,
        *,
        run_id: str | None = None,
        status: HookStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[HookRecord]:
        """By run: the run's ``HOOKID#`` items (one consistent ``Query`` of its partition)
        and a ``BatchGetItem`` of their hooks. Otherwise the ``hooks_by_status`` index, one
        partition per wanted status, newest first; candidates are re-checked against the
        consistent hook items and the statuses merged in ``(created_at, token_hash)``
        order."""
        if limit <= 0:
            return []
        offset = max(offset, 0)
        wanted = offset + limit
        want_status = None if status is None else HookStatus(status).value
        if run_id is not None:
            heads = [
                h
                for h in await self._run_hooks(run_id)
                if want_status is None or h["hook_status"]["S"] == want_status
            ]
        else:
            statuses = [want_status] if want_status else [s.value for s in HookStatus]
            found = await asyncio.gather(*(self._hooks_in(s, wanted) for s in statuses))
            heads = [h for group in found for h in group]
        heads.sort(key=_hook_order, reverse=True)
        hooks = await asyncio.gather(*(self._load_hook(h) for h in heads[offset:wanted]))
        return [h for h in hooks if h is not None]

    async def _run_hooks(self, run_id: str) -> list[Item]:
        expr = _Expr()
        condition = (
            f"{expr.name('PK')} = {expr.value(_s(_run_pk(run_id)))} "
            f"AND begins_with({expr.name('SK')}, {expr.value(_s(_HOOKID))})"
        )
        hashes: list[str] = []
        async for page in self._query(
            KeyConditionExpression=condition, ConsistentRead=True, **expr.params()
        ):
            hashes.extend(i["token_hash"]["S"] for i in page)
        heads = await self._batch_get_hooks(hashes)
        return [h for h in heads.values() if h["run_id"]["S"] == run_id]

    async def _hooks_in(self, status: str, wanted: int) -> list[Item]:
        """The newest ``wanted`` hooks with ``status`` (index candidates re-checked)."""
        expr = _Expr()
        partition = expr.value(_s(_hook_gsi(status)))
        params: Item = {
            "IndexName": INDEX_HOOKS,
            "KeyConditionExpression": f"{expr.name('gsi_hook')} = {partition}",
            "ScanIndexForward": False,
            "Limit": min(1000, max(25, wanted)),
            **expr.params(),
        }
        matched: list[Item] = []
        async for page in self._query(**params):
            hashes = [i["PK"]["S"][len(_HOOK) :] for i in page]
            heads = await self._batch_get_hooks(hashes)
            for token_hash in hashes:
                head = heads.get(token_hash)
                if head is not None and head["hook_status"]["S"] == status:
                    matched.append(head)
            if len(matched) >= wanted:
                break
        return matched

    async def update_hook(
        self,
        token_hash: str,
        *,
        expected: HookStatus,
        status: HookStatus,
        payload: str | None = None,
        received_at: datetime | None = None,
    ) -> bool:
        """Read the hook, then write it under ``hook_status = :expected AND write_token =
        :read`` (the item is unchanged since the read). One ``UpdateItem``, or a
        transaction when payload chunks are written or replaced ones deleted. A lost
        race re-reads: another status answers ``False``; our own write token (an SDK
        retry of a write that did land) answers ``True``."""
        expected_value, status_value = HookStatus(expected).value, HookStatus(status).value
        version = uuid.uuid4().hex
        sets: Item = {
            "hook_status": _s(status_value),
            "gsi_hook": _s(_hook_gsi(status_value)),
            "write_token": _s(version),
        }
        removes: list[str] = []
        parts: list[bytes] = []
        if received_at is not None:
            sets["received_at"] = _n(_micros(received_at))
        if payload is not None:
            payload_sets, payload_removes, parts = _blob_attrs("payload", payload)
            sets.update(payload_sets)
            removes.extend(payload_removes)
            if parts:
                sets["payload_part"] = _s(version)
            else:
                removes.append("payload_part")
        key = _hook_key(token_hash)
        for attempt in range(_MAX_ATTEMPTS):
            head = await self._get_item(key)
            if head is None:
                return False
            if head["write_token"]["S"] == version:
                return True
            if head["hook_status"]["S"] != expected_value:
                return False
            if attempt:
                await _backoff(attempt)  # expected -> expected updates raced ours
            expr = _Expr()
            condition = (
                f"{expr.name('hook_status')} = {expr.value(_s(expected_value))} "
                f"AND {expr.name('write_token')} = {expr.value(head['write_token'])}"
            )
            update: Item = {
                "Key": key,
                "UpdateExpression": _update_expression(expr, sets, removes),
                "ConditionExpression": condition,
                **expr.params(),
            }
            stale = _old_part_keys(token_hash, head) if payload is not None else []
            try:
                if parts or stale:
                    await self._transact(
                        [
                            {"Update": update},
                            *(
                                {"Put": {"Item": i}}
                                for i in _part_items(token_hash, version, parts)
                            ),
                            *({"Delete": {"Key": k}} for k in stale),
                        ],
                        f"update_hook({token_hash[:12]!r})",
                    )
                else:
                    await self._call(
                        "update_item", expected=("ConditionalCheckFailedException",), **update
                    )
                return True
            except (_Cancelled, ClientError):
                continue
        raise StorageError("dynamodb: update_hook kept racing concurrent updates")

    # -- schedules ------------------------------------------------------------------------

    async def save_schedule(
        self, schedule: ScheduleRecord, *, expected_version: int | None
    ) -> bool:
        """One ``PutItem`` under ``attribute_not_exists`` (insert) or ``version =
        :expected`` (compare-and-set). A failed condition re-reads the write token: our
        own (an SDK retry of a put that did land) answers ``True``, any other ``False``."""
        version = 1 if expected_version is None else expected_version + 1
        token = uuid.uuid4().hex
        item = _schedule_item(schedule, version, token)
        expr = _Expr()
        if expected_version is None:
            condition = f"attribute_not_exists({expr.name('PK')})"
        else:
            condition = f"{expr.name('version')} = {expr.value(_n(expected_version))}"
        try:
            await self._call(
                "put_item",
                expected=("ConditionalCheckFailedException",),
                Item=item,
                ConditionExpression=condition,
                **expr.params(),
            )
        except ClientError:
            stored = await self._get_item(_schedule_key(schedule.schedule_id), ("write_token",))
            if stored is None or stored.get("write_token") != _s(token):
                return False
        schedule.version = version
        return True

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        item = await self._get_item(_schedule_key(schedule_id))
        return None if item is None else _item_to_schedule(item)

    def _schedules_query(self, expr: _Expr, filters: Sequence[str]) -> Item:
        """A consistent ``Query`` of the schedules partition, in ``schedule_id`` order."""
        condition = (
            f"{expr.name('PK')} = {expr.value(_s(_SCHEDULES_PK))} "
            f"AND begins_with({expr.name('SK')}, {expr.value(_s(_SCHEDULE))})"
        )
        params: Item = {"KeyConditionExpression": condition, "ConsistentRead": True}
        if filters:
            params["FilterExpression"] = " AND ".join(filters)
        params.update(expr.params())
        return params

    async def list_schedules(
        self,
        *,
        workflow_name: str | None = None,
        status: ScheduleStatus | None = None,
        limit: int = 1000,
    ) -> list[ScheduleRecord]:
        if limit <= 0:
            return []
        expr = _Expr()
        filters = []
        if workflow_name is not None:
            filters.append(f"{expr.name('workflow_name')} = {expr.value(_s(workflow_name))}")
        if status is not None:
            value = expr.value(_s(ScheduleStatus(status).value))
            filters.append(f"{expr.name('schedule_status')} = {value}")
        params = self._schedules_query(expr, filters)
        params["Limit"] = min(1000, max(limit, 25))
        found: list[ScheduleRecord] = []
        async for page in self._query(**params):
            found.extend(_item_to_schedule(i) for i in page)
            if len(found) >= limit:
                break
        return found[:limit]

    async def list_due_schedules(self, now: datetime, limit: int = 100) -> list[ScheduleRecord]:
        """No index serves this: schedules are few, so the whole schedules partition is
        read (one consistent, filtered ``Query``) and the due ones ordered here."""
        if limit <= 0:
            return []
        expr = _Expr()
        filters = [
            f"{expr.name('schedule_status')} = {expr.value(_s(ScheduleStatus.ACTIVE.value))}",
            f"{expr.name('next_run_time')} <= {expr.value(_n(_micros(now)))}",
        ]
        due: list[ScheduleRecord] = []
        async for page in self._query(**self._schedules_query(expr, filters)):
            due.extend(_item_to_schedule(i) for i in page)
        due.sort(key=lambda s: (s.next_run_time or now, s.schedule_id))
        return due[:limit]

    async def delete_schedule(self, schedule_id: str) -> bool:
        expr = _Expr()
        try:
            await self._call(
                "delete_item",
                expected=("ConditionalCheckFailedException",),
                Key=_schedule_key(schedule_id),
                ConditionExpression=f"attribute_exists({expr.name('PK')})",
                **expr.params(),
            )
        except ClientError:
            return False
        return True


def _index_names(description: Item) -> set[str]:
    return {i["IndexName"] for i in description.get("GlobalSecondaryIndexes", [])}


def _missing_indexes(description: Item) -> list[str]:
    return sorted({g["IndexName"] for g in _GSIS} - _index_names(description))


def _is_active(description: Item) -> bool:
    return description.get("TableStatus") == "ACTIVE" and all(
        i.get("IndexStatus", "ACTIVE") == "ACTIVE"
        for i in description.get("GlobalSecondaryIndexes", [])
    )


def _gsi(name: str, hash_key: str, range_key: str, include: Sequence[str]) -> Item:
    projection: Item = (
        {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(include)}
        if include
        else {"ProjectionType": "KEYS_ONLY"}
    )
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": hash_key, "KeyType": "HASH"},
            {"AttributeName": range_key, "KeyType": "RANGE"},
        ],
        "Projection": projection,
    }


_LISTED = ("run_id", "status", "workflow_name", "parent_run_id", "tags")
_GSIS: list[Item] = [
    _gsi(INDEX_CREATED, "gsi_all", "created_sk", _LISTED),
    _gsi(INDEX_STATUS, "status", "created_sk", [a for a in _LISTED if a != "status"]),
    _gsi(INDEX_WORKFLOW, "gsi_wf", "created_sk", _LISTED),
    _gsi(INDEX_PARENT, "gsi_parent", "created_sk", _LISTED),
    _gsi(INDEX_TAG, "gsi_tag", "created_sk", ("run_id", "workflow_name", "parent_run_id")),
    _gsi(INDEX_DUE, "gsi_due", "due_sk", ("run_id", "lease_owner", "lease_expires_at")),
    _gsi(INDEX_HOOKS, "gsi_hook", "hook_sk", ()),
]


def table_definition(table_name: str) -> Item:
    """The ``CreateTable`` request this backend issues (on-demand billing).

    To provision capacity instead, pass it with ``BillingMode="PROVISIONED"`` and a
    ``ProvisionedThroughput`` on the table and on each index, then use
    ``create_table=False``.
    """
    return {
        "TableName": table_name,
        "AttributeDefinitions": _attribute_definitions(_GSIS),
        "KeySchema": [
            {"AttributeName": "PK", "KeyType": "HASH"},
            {"AttributeName": "SK", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [dict(g) for g in _GSIS],
        "BillingMode": "PAY_PER_REQUEST",
    }


def add_index_request(table_name: str, index_name: str) -> Item:
    """The ``UpdateTable`` request that adds one of this backend's indexes to an existing
    table (e.g. ``hooks_by_status``, which tables created before hooks lack).

    ``connect()`` issues it itself when ``create_table`` is on. For a table with
    provisioned capacity add a ``ProvisionedThroughput`` to the ``Create`` entry.
    """
    (gsi,) = [g for g in _GSIS if g["IndexName"] == index_name]
    return {
        "TableName": table_name,
        "AttributeDefinitions": _attribute_definitions([gsi]),
        "GlobalSecondaryIndexUpdates": [{"Create": dict(gsi)}],
    }


def _attribute_definitions(indexes: Sequence[Item]) -> list[Item]:
    names = ["PK", "SK"]
    for gsi in indexes:
        names.extend(k["AttributeName"] for k in gsi["KeySchema"])
    return [{"AttributeName": a, "AttributeType": "S"} for a in dict.fromkeys(names)]


__all__ = ["DynamoDBStorageBackend", "add_index_request", "table_definition"]
