"""Runs and their event logs: create, read, query and append (the fenced write).

Complexity (n = runs under the prefix, k = results):

* ``get_run``, ``get_run_by_idempotency_key``: O(1) (plus the size of the run record).
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
* ``list_runs(run_id_prefix=...)``: the script counts the c ids with the prefix in
  ``idx:id`` (every id, in id order; ``ZLEXCOUNT``, O(log n)) and takes the cheaper of
  two plans. Few matches (c * c <= (offset + limit) * n): read those ids and their
  members (one ``HGET`` each), check the other filters, sort, O(log n + c log c).
  Many: walk the chosen set newest first comparing each member's id with the prefix (a
  byte compare, no command), reading about (offset + limit) * n / c entries. Either way
  at most about sqrt((offset + limit) * n) entries: 2,300 for 100,000 runs and a page
  of 51, where a walk of every run takes Redis about 250 ms.
* ``list_runs(cancel_requested=True)`` reads ``idx:cancel`` (or ``idx:cancel:<status>``
  with a status: the suspended runs asked to cancel, crash recovery's query), which hold
  only runs asked to cancel: O(log n + offset + k) plus one ``HMGET`` per entry read
  (the script checks the run's hash, see :meth:`RunStore._filter_sets`).
  ``cancel_requested=False`` has no set of its own: it walks the other filters' sets
  and checks each run's hash, O(log n + m) as above.

Runs stored before ``idx:cancel`` and ``idx:id`` existed (by an older release) are
indexed by :meth:`RunStore.connect` (and before the first query that needs them), which
walks every run once per prefix, then marks the prefix done in ``{p}:meta``. A run an
older release still running alongside creates, or a request it makes, *after* that walk
reaches the sets when a current release next writes the run (every write re-derives its
index entries); until then a prefix search may miss that run, and only that older
release's recovery, which scans all suspended runs, sees the request.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence

from pyworkflow.core.exceptions import (
    RunAlreadyExistsError,
    RunNotFoundError,
    SequenceConflictError,
    StorageError,
)
from pyworkflow.storage.base import RunQuery, parse_cursor
from pyworkflow.storage.payloads import check_changes, check_run
from pyworkflow.storage.redis.codec import (
    RUNS,
    decode_events,
    encode_event,
    micros,
    run_from_hash,
    text,
)
from pyworkflow.storage.redis.connection import RedisConnection
from pyworkflow.storage.redis.keys import member, time_bound
from pyworkflow.storage.schemas import (
    UPDATABLE_RUN_FIELDS,
    Event,
    RunStatus,
    RunUpdate,
    WorkflowRun,
)


def _check_sequences(events: Sequence[Event], first: int) -> None:
    # The log relies on "sequence n lives at list index n - 1" (get_events reads by index).
    for offset, event in enumerate(events):
        if event.sequence != first + offset:
            raise ValueError(
                f"events must carry consecutive sequences starting at {first}; "
                f"got {[e.sequence for e in events]}"
            )


#: Runs read per script call while indexing the runs of a prefix an older release wrote.
BACKFILL_BATCH = 500
#: The ``{p}:meta`` field set once every run asked to cancel is in ``idx:cancel``.
CANCEL_INDEX_FIELD = "cancel_index"
#: The ``{p}:meta`` field set once every run is in ``idx:id``.
ID_INDEX_FIELD = "id_index"


class RunStore(RedisConnection):
    """The runs and events part of :class:`RedisStorageBackend`."""

    _backfilled = False

    async def create_run(self, run: WorkflowRun, events: Sequence[Event] = ()) -> WorkflowRun:
        _check_sequences(events, 1)
        if run.last_sequence != len(events):
            raise ValueError(
                f"run {run.run_id!r}: last_sequence {run.last_sequence} does not match "
                f"its {len(events)} initial event(s)"
            )
        return await self._create(run, events, secrets.token_hex(8))

    async def _create(self, run: WorkflowRun, events: Sequence[Event], token: str) -> WorkflowRun:
        run_id, limit = run.run_id, self.payload_limit
        check_run(run, limit)
        encoded = [encode_event(run_id, e, limit) for e in events]  # checked before writing
        pairs = RUNS.pairs(run)
        pairs += ("_m", member(micros(run.created_at), run_id))
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
            *encoded,
        ]
        client, scripts = self._client()
        with self._errors():
            reply = await scripts.create(
                keys=[self._key("run", run_id), self._key("events", run_id), *index_keys],
                args=args,
            )
        outcome = text(reply[0])
        if outcome in ("ok", "replayed"):
            return run.copy()
        if outcome == "dup":
            existing = run_from_hash(reply[1])
            if existing is None:  # pragma: no cover - an index pointing nowhere
                raise StorageError(f"idempotency key {key!r} points to a missing run")
            return existing
        raise RunAlreadyExistsError(f"run {run_id!r} already exists")

    async def get_run(self, run_id: str) -> WorkflowRun | None:
        client, _ = self._client()
        with self._errors():
            raw = await client.hgetall(self._key("run", run_id))
        return run_from_hash(raw)

    async def get_run_by_idempotency_key(self, key: str) -> WorkflowRun | None:
        _, scripts = self._client()
        with self._errors():
            raw = await scripts.by_key(keys=[self._key("idem", key)], args=[self._base])
        return run_from_hash(raw)

    async def query_runs(self, query: RunQuery) -> list[WorkflowRun]:
        if query.limit <= 0:
            return []
        keys, checks = self._filter_sets(query)
        if query.cancel_requested or query.run_id_prefix:
            await self._backfill()
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
            upper.append(time_bound(query.created_before))
        if query.cursor is not None:
            upper.append(member(*parse_cursor(query.cursor)))
        max_bound = "(" + min(upper) if upper else "+"
        if query.created_after is not None:
            min_bound = "[" + time_bound(query.created_after)
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
                    *checks,
                    # A lone surrogate survives as bytes no stored (UTF-8) id starts with.
                    (query.run_id_prefix or "").encode("utf-8", "surrogatepass"),
                ],
            )
        return [run for run in map(run_from_hash, json.loads(rows)) if run is not None]

    def _filter_sets(self, query: RunQuery) -> tuple[list[str], tuple[str, str]]:
        """The status/cancellation index sets to walk, and the ``(status, asked)`` checks
        the script makes on each candidate's hash (``""``: none).

        ``cancel_requested=True`` reads ``idx:cancel[:<status>]``, which holds just those
        runs; the hash check skips an entry a release without these sets left behind
        (it changed the run's status without moving it). ``False`` walks the other sets
        and skips runs whose hash has a request: a filtered walk, not an index read.
        """
        status = None if query.status is None else RunStatus(query.status).value
        if query.cancel_requested:
            key = (
                self._key("idx", "cancel") if status is None else self._key("idx", "cancel", status)
            )
            return [key], (status or "", "1")
        keys = [] if status is None else [self._key("idx", "status", status)]
        return keys, ("", "" if query.cancel_requested is None else "0")

    async def connect(self) -> None:
        """Check the server (see :class:`RedisConnection`), then build the indexes a
        release before them did not keep, for the runs it stored (once per prefix)."""
        await super().connect()
        await self._backfill()

    async def _backfill(self) -> None:
        """Put the runs stored before ``idx:cancel`` and ``idx:id`` existed into them:
        walk every run once, ``BACKFILL_BATCH`` per script call, then mark the prefix
        done (in ``{p}:meta``). Idempotent; concurrent processes may both walk."""
        if self._backfilled:
            return
        client, scripts = self._client()
        meta, fields = self._key("meta"), (CANCEL_INDEX_FIELD, ID_INDEX_FIELD)
        with self._errors():
            if None in await client.hmget(meta, fields):
                bound = "+"
                while bound:
                    last = await scripts.backfill(
                        keys=[self._key("idx", "all")],
                        args=[self._base, bound, BACKFILL_BATCH],
                    )
                    bound = "(" + text(last) if text(last) else ""
                await client.hset(meta, mapping=dict.fromkeys(fields, "1"))
        self._backfilled = True

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
        limit = self.payload_limit
        if update is not None:
            check_changes(run_id, update.changes, limit)
        encoded = [encode_event(run_id, e, limit) for e in events]  # checked before writing
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
                    sets += (name, RUNS.encode(name, value))
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
            *encoded,
        ]
        _, scripts = self._client()
        with self._errors():
            reply = await scripts.append(
                keys=[self._key("run", run_id), self._key("events", run_id)], args=args
            )
        outcome = text(reply[0])
        if outcome in ("ok", "replayed"):  # replayed: a retry of this write that had landed
            return
        if outcome == "missing":
            raise RunNotFoundError(f"run {run_id!r} not found")
        raise SequenceConflictError(
            f"run {run_id!r}: expected last sequence {expected}, found {text(reply[1])}"
        )

    async def get_events(self, run_id: str, *, after_sequence: int = 0) -> list[Event]:
        client, scripts = self._client()
        key, first = self._key("events", run_id), max(after_sequence, 0)
        with self._errors():
            raw = await scripts.events(keys=[key], args=[first])
        try:
            items = json.loads(raw)
        except ValueError:
            # A damaged item broke the joined array: read the items one by one, so the
            # error names the damaged one.
            with self._errors():
                items = await client.lrange(key, first, -1)
        return decode_events(run_id, items, first)
