"""Runs and their event logs: creation (with idempotency keys and tags), reads, listing
through the run indexes, and fenced appends."""

from __future__ import annotations

from collections.abc import Sequence

from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from pyworkflow.core.exceptions import (
    RunAlreadyExistsError,
    RunNotFoundError,
    SequenceConflictError,
    StorageError,
)
from pyworkflow.storage.base import RunQuery, parse_cursor
from pyworkflow.storage.dynamodb.cancel_index import CancelIndex
from pyworkflow.storage.dynamodb.client import _MAX_ATTEMPTS, _backoff, _Cancelled
from pyworkflow.storage.dynamodb.codec import Item, _micros, _n, _opt_dt, _s, _sort_key
from pyworkflow.storage.dynamodb.expressions import _Expr, _update_expression
from pyworkflow.storage.dynamodb.keys import (
    _ALL,
    _CANCEL,
    _EVT_END,
    _IDEM_SK,
    INDEX_CANCEL,
    INDEX_CREATED,
    INDEX_PARENT,
    INDEX_STATUS,
    INDEX_TAG,
    INDEX_WORKFLOW,
    _event_sk,
    _run_key,
    _run_pk,
)
from pyworkflow.storage.dynamodb.run_items import (
    _cancel_attrs,
    _due_attrs,
    _event_items,
    _EventReader,
    _field_attrs,
    _item_to_run,
    _run_item,
    _tag_items,
)
from pyworkflow.storage.payloads import check_changes, check_run
from pyworkflow.storage.schemas import (
    UPDATABLE_RUN_FIELDS,
    Event,
    RunStatus,
    RunUpdate,
    WorkflowRun,
)


class RunStore(CancelIndex):
    """Runs, idempotency keys, tags and events (see the package docstring's atomicity
    notes for ``create_run`` and ``append_events``)."""

    async def create_run(self, run: WorkflowRun, events: Sequence[Event] = ()) -> WorkflowRun:
        limit = self.payload_limit
        check_run(run, limit)
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
            for item in _event_items(run.run_id, event, limit)
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
        if query.limit <= 0 or not _is_text(query.run_id_prefix):
            return []
        expr = _Expr()
        filters: list[str] = []
        # The most selective filter picks the index; the others become a FilterExpression
        # on attributes that index projects (and are re-checked in Python below). The
        # cancel_requested filter has no projected attribute: outside the sparse
        # runs_cancel_requested index (unfinished runs asked to cancel) only the
        # re-check applies it.
        if query.parent_run_id is not None:
            index, attr, value = INDEX_PARENT, "gsi_parent", f"P#{query.parent_run_id}"
        elif self._open_cancel_query(query):
            await self._ensure_cancel_index()
            index, attr, value = INDEX_CANCEL, "gsi_cancel", _CANCEL
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
        if query.run_id_prefix:
            # No index orders runs by id: the prefix filters the chosen index's items.
            prefix = expr.value(_s(query.run_id_prefix))
            filters.append(f"begins_with({expr.name('run_id')}, {prefix})")

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
        async for page in self._query(grow=bool(filters), **params):
            ids = [i["run_id"]["S"] for i in page if i["created_sk"]["S"] != upper]
            # Read only the runs the page still needs: a grown page may hold many more.
            while ids and len(matched) < wanted:
                chunk, ids = ids[: wanted - len(matched)], ids[wanted - len(matched) :]
                matched += await self._rechecked(chunk, query, after)
            if len(matched) >= wanted:
                break
        return matched[query.offset : wanted]

    async def _rechecked(
        self, run_ids: Sequence[str], query: RunQuery, after: tuple[int, str] | None
    ) -> list[WorkflowRun]:
        """The runs of ``run_ids`` (in that order) that match ``query`` when read
        consistently: index entries may lag behind their run."""
        items = await self._batch_get_runs(run_ids)
        runs = []
        for run_id in run_ids:
            item = items.get(run_id)
            if item is None:
                continue
            run = _item_to_run(item)
            if query.matches(run) and (after is None or (_micros(run.created_at), run_id) < after):
                runs.append(run)
        return runs

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
        limit = self.payload_limit
        check_changes(run_id, changes, limit)
        sets: Item = {
            "last_sequence": _n(events[-1].sequence if events else expected_last_sequence)
        }
        removes: list[str] = []
        for name, value in changes.items():
            field_sets, field_removes = _field_attrs(name, value)
            sets.update(field_sets)
            removes.extend(field_removes)
        cancel_sets, cancel_removes = _cancel_attrs(changes)
        sets.update(cancel_sets)
        removes.extend(cancel_removes)
        event_actions: list[Item] = [
            {"Put": {"Item": item, "ConditionExpression": "attribute_not_exists(PK)"}}
            for event in events
            for item in _event_items(run_id, event, limit)
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
            raise RunNotFoundError(f"run {run_id!r} not found")
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


def _is_text(value: str | None) -> bool:
    """Whether ``value`` is storable text (no lone surrogate): a prefix that is not
    matches no stored id, and DynamoDB would reject the request."""
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True
