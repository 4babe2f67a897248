"""DynamoDB storage: runs, event logs, hooks, signal inboxes and flow-control gates in one
DynamoDB table (single-table design).

Extra: ``pip install 'pyworkflow-engine[dynamodb]'`` (installs ``aioboto3``).

URL (see :func:`pyworkflow.storage.config.storage_from_url`)::

    dynamodb://TABLE?region=us-east-1
    dynamodb://TABLE?region=eu-west-1&create_table=false
    dynamodb://KEY:SECRET@TABLE?region=us-east-1&endpoint_url=http://127.0.0.1:8000

``TABLE`` defaults to ``pyworkflow`` (``dynamodb://``). Credentials come from the standard
AWS chain (environment, profile, IAM role) unless the URL carries ``KEY:SECRET@``, which
is meant for local emulators (DynamoDB Local, moto); ``endpoint_url`` points at one.
``create_table`` (default ``true``) creates the table with on-demand billing when it is
missing, and adds the ``hooks_by_status`` and ``runs_cancel_requested`` indexes to a table
created by a release before them (an ``UpdateTable``; connect waits until the index is
active). With ``false`` the
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
    signal              RUN#<run_id>      SIGNAL#<sequence, 20 dig.>  sequence, name, signal_id,
                                                                      sent_at, payload |
                                                                      payload_z | payload_chunks
    signal chunk        RUN#<run_id>      SIGNAL#<sequence>#<n>       part (binary)
    run's signal id     RUN#<run_id>      SIGNALID#<signal_id>        sequence
    migration done      MIGRATIONS        cancel_index                (none)
    schedule            SCHEDULES         SCHEDULE#<schedule_id>      one per ScheduleRecord
                                                                      field (status as
                                                                      schedule_status),
                                                                      data | data_z,
                                                                      write_token
    worker              WORKERS           WORKER#<worker_id>          worker_id, last_beat,
                                                                      data | data_z
    flow-control gate   GATE#<key>        GATE                        gate_key, version,
                                                                      updated_at, data | data_z,
                                                                      write_token

A run's events share its partition and sort by sequence, so ``get_events`` is one
(paged) ``Query``; so is its signal inbox (``list_signals``: the ``SIGNAL#`` key range,
numbered by the run item's ``inbox_seq`` counter; see
:mod:`~pyworkflow.storage.dynamodb.signals`). Run indexes (global secondary indexes),
all but ``runs_due`` sorted by ``created_sk`` = ``<created_at as 18 zero-padded
digits>#<run_id>`` (so key order is exactly ``(created_at, run_id)``, the order of
``list_runs``)::

    index               partition key                          used for
    runs_by_created     gsi_all = "RUN" (every run)            list_runs without key filters
    runs_by_status      status                                 status=, stale-run recovery
    runs_by_workflow    gsi_wf = "W#<workflow_name>"           workflow_name=
    runs_by_parent      gsi_parent = "P#<parent_run_id>"       parent_run_id= (sparse)
    runs_by_tag         gsi_tag = "T#<tag>" (tag items)        tag=
    runs_due            gsi_due = "DUE", sort due_sk =         list_due_runs, claim_due_runs,
                        "<wake_at digits>#<run_id>"            next_wake_time (sparse)
    runs_cancel_requested  gsi_cancel = "CANCEL"               status=<unfinished> with
                                                               cancel_requested=True (sparse)

``runs_due`` is sparse: a run carries ``gsi_due``/``due_sk`` only while it is
``suspended`` with a ``wake_at``, so the index holds exactly the sleeping runs.
``runs_cancel_requested`` is sparse too: ``gsi_cancel`` is there while the run is asked
to cancel and not finished (see :mod:`~pyworkflow.storage.dynamodb.cancel_index`); the
query reads it with a ``FilterExpression`` on ``status``, a filtered scan of the open
requests. Other uses of ``cancel_requested`` only re-check the runs another index gives.
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

The worker registry needs no index either (see
:mod:`~pyworkflow.storage.dynamodb.workers`): one ``WORKERS`` partition sorted by
``worker_id``, read by one consistent ``Query`` that never touches a run item; a table
created before the registry serves it unchanged.

Flow-control gates need no index (nothing lists them; see
:mod:`~pyworkflow.storage.dynamodb.gates`): each is one item in a partition of its own,
read and written by key, so a busy gate does not throttle the others. A gate item
carries no index key attribute, so it is in no index and no run listing sees it.

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
  :class:`RunNotFoundError` from :class:`SequenceConflictError`. A pure projection
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
* ``send_signal``: a consistent read of the run item and the ``SIGNALID#`` item, then one
  transaction: an ``Update`` of the run item setting ``inbox_seq = n`` under ``inbox_seq
  = n - 1`` and the run's status as read (suspended: it also sets ``wake_at`` and the
  ``runs_due`` keys), plus ``Put`` of the signal, its chunks and its ``SIGNALID#`` item
  (``attribute_not_exists``). A cancelled transaction is re-read and retried: sequences
  follow commit order without gaps, and a repeated ``signal_id`` answers the stored
  signal. ``list_signals`` keeps only the gapless prefix of what its ``Query`` sees (a
  ``Query`` may see a later send's transaction before an earlier one's).
* ``save_schedule``: one ``PutItem`` conditioned on ``attribute_not_exists`` (insert)
  or ``version = :expected`` (compare-and-set); it replaces the whole item. Each write
  sets a fresh ``write_token``, so when an SDK retry of a write that did land fails the
  condition, a re-read recognizes the token and answers ``True``.
* ``save_gate``: the same conditional ``PutItem`` as ``save_schedule`` (insert under
  ``attribute_not_exists``, else ``version = :expected``), with the same ``write_token``
  re-read: of concurrent saves from one version, across processes, exactly one wins.
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
* Signal payloads are stored like event data (plain, compressed, or chunk items
  written in the send's transaction), so the 4 MB transaction limit caps one at about
  3.5 MB *compressed*.
* Schedule ``data`` is stored like a run payload: plain up to 16 KiB, else compressed;
  a schedule whose data exceeds about 350 KB *compressed* is rejected. So is a gate's
  ``data``.
* Key sizes: run ids, idempotency keys and tags become key values (partition keys up
  to 2048 bytes, sort keys up to 1024 bytes); so do token hashes, hook ids,
  schedule ids and signal ids. A gate key (at most 255 characters, so at most 1,020
  bytes) is a partition key.

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
  a ``FilterExpression``: filtered-out index items are still read and billed (each page
  reads up to four times as many as the last). ``offset`` reads and discards the skipped
  runs: page with ``cursor`` (keyset on ``created_sk``).
* ``run_id_prefix`` has no index (none orders runs by id): a ``FilterExpression``
  ``begins_with(run_id, P)`` on the index the other filters choose. Alone, a selective
  prefix reads all of ``runs_by_created``: per 100,000 runs about 20 MB of index items,
  some 2,500 read units and 20 sequential requests.
* ``runs_by_created``, ``runs_by_status`` and ``runs_due`` use low-cardinality partition
  keys, so each key takes on the order of 1,000 index writes per second (writes happen
  on run creation, status changes and timer changes only). A throttled index throttles
  the table; at several hundred run starts per second consider write sharding.
* A failed conditional write (a lost lease race) still consumes write capacity.
* ``get_gate`` is one consistent ``GetItem``; ``save_gate`` one conditional ``PutItem``
  (a lost race costs a write plus a small consistent read of the write token).
* ``send_signal`` is a consistent ``BatchGetItem`` (two small items) plus a transaction
  of three items (plus chunks); concurrent senders to one run serialize on its
  ``inbox_seq``, each lost race costing a re-read and another transaction. The run item
  gains only ``inbox_seq`` (and, when it wakes the run, its ``runs_due`` entry).
* ``request_cancellation`` is one normal write, plus its ``runs_cancel_requested``
  index entry (rewritten on the run's status changes until it finishes). ``save_hook``
  is a transaction of two items (plus chunks); ``update_hook`` a consistent read plus
  one normal write (a transaction only with chunks). A hook write touches
  ``hooks_by_status`` only when the status changes (keys-only projection).

Modules
-------
``backend`` (the class), ``url`` (URL parsing and redaction), ``client`` (connection,
table setup, request helpers with retries), ``table`` (indexes, ``CreateTable``),
``keys`` (key layout, index names), ``codec`` (attribute values, compression),
``expressions`` (placeholders, conditions), ``run_items``/``runs`` (runs and events),
``cancel_index`` (the cancellation-request index and its one-time backfill),
``leases`` (timers, leases, stale runs), ``hook_items``/``hooks`` (cancellation and
hooks), ``signals`` (signal inboxes), ``schedules``, ``gates`` (flow-control gates),
``workers`` (the worker registry), ``retention`` (deleting finished runs with all their items).
"""

# Every public name of the former single module stays importable from the package.
from pyworkflow.storage.dynamodb.backend import DynamoDBStorageBackend
from pyworkflow.storage.dynamodb.client import (
    MAX_BATCH_GET,
    MAX_TRANSACTION_BYTES,
    MAX_TRANSACTION_ITEMS,
)
from pyworkflow.storage.dynamodb.codec import CHUNK_BYTES, COMPRESS_OVER
from pyworkflow.storage.dynamodb.hook_items import MAX_HOOK_SCHEMA_BYTES
from pyworkflow.storage.dynamodb.keys import (
    INDEX_CANCEL,
    INDEX_CREATED,
    INDEX_DUE,
    INDEX_HOOKS,
    INDEX_PARENT,
    INDEX_STATUS,
    INDEX_TAG,
    INDEX_WORKFLOW,
)
from pyworkflow.storage.dynamodb.table import (
    DEFAULT_REGION,
    DEFAULT_TABLE,
    TABLE_WAIT_SECONDS,
    add_index_request,
    table_definition,
)

__all__ = ["DynamoDBStorageBackend", "add_index_request", "table_definition"]
