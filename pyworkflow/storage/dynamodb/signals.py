"""Runs' signal inboxes: signal items in the run's partition, numbered by the run item's
``inbox_seq`` counter, and the wake-up of a suspended run.

Items (all in ``RUN#<run_id>``, none carries an index key attribute)::

    SIGNAL#<sequence, 20 digits>            sequence, name, signal_id, sent_at,
                                            payload | payload_z | payload_chunks
    SIGNAL#<sequence>#<n, 5 digits>         part (binary): payload chunk
    SIGNALID#<signal_id>                    sequence (makes the id unique per run)

``send_signal`` reads the run item and the ``SIGNALID#`` item (one consistent
``BatchGetItem``), then writes one transaction: an ``Update`` of the run item setting
``inbox_seq = n`` under ``inbox_seq = n - 1`` (so sequences are given in commit order,
without gaps) plus the ``Put`` of the signal, its chunks and its ``SIGNALID#`` item
(``attribute_not_exists``). A cancelled transaction (a concurrent sender took ``n``, or
stored the same ``signal_id``) is re-read and retried.

The wake-up rides on the same ``Update``: read suspended, it sets ``wake_at`` and the
``runs_due`` keys under ``status = suspended`` (and ``wake_at`` unset or later); read
otherwise, it requires the run still not suspended (nor terminal), so a suspension
that commits later reads the inbox after the signal is visible. ``last_sequence``,
``status`` and ``updated_at`` are never written.
"""

from __future__ import annotations

import zlib
from datetime import datetime

from pyworkflow.core.exceptions import StorageError
from pyworkflow.storage.dynamodb.client import TableClient, _backoff, _Cancelled
from pyworkflow.storage.dynamodb.codec import (
    Item,
    _blob_attrs,
    _bytes,
    _from_micros,
    _micros,
    _n,
    _payload,
    _s,
)
from pyworkflow.storage.dynamodb.expressions import _Expr, _update_expression
from pyworkflow.storage.dynamodb.keys import (
    _CHUNK_WIDTH,
    _RUN_SK,
    _SIGNAL_END,
    _run_key,
    _run_pk,
    _signal_id_key,
    _signal_sk,
)
from pyworkflow.storage.dynamodb.run_items import _TERMINAL, _due_attrs
from pyworkflow.storage.payloads import check_signal
from pyworkflow.storage.schemas import RunStatus, SignalRecord

#: Transactions one ``send_signal`` tries before giving up (each lost one means another
#: sender's signal was stored, or the run changed status).
SEND_ATTEMPTS = 50
_SUSPENDED = RunStatus.SUSPENDED.value
_NOT_EXISTS = "attribute_not_exists(PK)"


def _signal_items(
    run_id: str, sequence: int, name: str, payload: str, signal_id: str, sent_at: datetime
) -> list[Item]:
    """The signal's item, followed by its payload chunks when the payload is too large."""
    pk, sk = _s(_run_pk(run_id)), _signal_sk(sequence)
    sets, _, parts = _blob_attrs("payload", payload)
    head: Item = {
        "PK": pk,
        "SK": _s(sk),
        "sequence": _n(sequence),
        "name": _s(name),
        "signal_id": _s(signal_id),
        "sent_at": _n(_micros(sent_at)),
        **sets,
    }
    chunks: list[Item] = [
        {"PK": pk, "SK": _s(f"{sk}#{i:0{_CHUNK_WIDTH}d}"), "part": {"B": part}}
        for i, part in enumerate(parts)
    ]
    return [head, *chunks]


class _InboxReader:
    """Rebuilds signals from their items (heads and chunks, in sort-key order).

    Keeps only the gapless run of sequences from ``after + 1``, each with all its chunks:
    a ``Query`` is no snapshot, so it may see a later signal's transaction and not yet an
    earlier one's; a reader that took the later one would skip the earlier for good.
    """

    def __init__(self, run_id: str, after: int, limit: int) -> None:
        self.run_id = run_id
        self.limit = limit
        self.signals: list[SignalRecord] = []
        self.stopped = False
        self._next = after + 1
        self._head: Item | None = None
        self._parts: list[bytes] = []

    def feed(self, item: Item) -> None:
        if self.stopped:
            return
        if "part" in item:
            head = self._head
            if head is None or not item["SK"]["S"].startswith(head["SK"]["S"] + "#"):
                self.stopped = True  # a chunk of a signal not (yet) seen
            else:
                self._parts.append(_bytes(item["part"]["B"]))
            return
        self._finish()
        if self.stopped:
            return
        if int(item["sequence"]["N"]) != self._next:
            self.stopped = True
            return
        self._next += 1
        if "payload_chunks" in item:
            self._head = item
        else:
            self._add(item, None)

    def done(self) -> list[SignalRecord]:
        self._finish()
        return self.signals

    def _finish(self) -> None:
        head, parts = self._head, self._parts
        if head is None:
            return
        self._head, self._parts = None, []
        if len(parts) != int(head["payload_chunks"]["N"]):
            self.stopped = True  # not every chunk visible yet
        else:
            self._add(head, b"".join(parts))

    def _add(self, item: Item, packed: bytes | None) -> None:
        try:
            if packed is not None:
                payload: str | None = zlib.decompress(packed).decode()
            else:
                payload = _payload(item, "payload")
            if payload is None:
                raise KeyError("payload")
            signal = SignalRecord(
                run_id=self.run_id,
                sequence=int(item["sequence"]["N"]),
                name=item["name"]["S"],
                payload=payload,
                signal_id=item["signal_id"]["S"],
                sent_at=_from_micros(item["sent_at"]["N"]),
            )
        except (KeyError, TypeError, ValueError, zlib.error) as exc:
            raise StorageError(
                f"dynamodb: signal {item['SK']['S']} of run {self.run_id!r} is damaged ({exc!r})"
            ) from None
        self.signals.append(signal)
        if len(self.signals) >= self.limit:
            self.stopped = True


class SignalStore(TableClient):
    """Signal inboxes (``send_signal``, ``list_signals``)."""

    async def send_signal(
        self, run_id: str, name: str, payload: str, *, signal_id: str, now: datetime
    ) -> SignalRecord | None:
        check_signal(run_id, name, payload, self.payload_limit)
        sent_at = _from_micros(str(_micros(now)))
        for attempt in range(SEND_ATTEMPTS):
            run, marker = await self._inbox_state(run_id, signal_id)
            if run is None or run["status"]["S"] in _TERMINAL:
                return None
            if marker is not None:
                return await self._stored_signal(run_id, int(marker["sequence"]["N"]))
            sequence = int(run["inbox_seq"]["N"]) + 1 if "inbox_seq" in run else 1
            marker_item: Item = {**_signal_id_key(run_id, signal_id), "sequence": _n(sequence)}
            items = _signal_items(run_id, sequence, name, payload, signal_id, sent_at)
            actions: list[Item] = [
                {"Update": self._inbox_update(run_id, run, sequence, now)},
                *(
                    {"Put": {"Item": item, "ConditionExpression": _NOT_EXISTS}}
                    for item in (*items, marker_item)
                ),
            ]
            try:
                await self._transact(actions, f"send_signal({run_id!r})")
            except _Cancelled:
                if attempt:  # the first loss is a race, not contention: re-read at once
                    await _backoff(min(attempt, 4))
                continue
            return SignalRecord(run_id, sequence, name, payload, signal_id, sent_at)
        raise StorageError(f"dynamodb: send_signal({run_id!r}) kept racing concurrent senders")

    async def _inbox_state(self, run_id: str, signal_id: str) -> tuple[Item | None, Item | None]:
        """The run item (the attributes a send needs) and the signal id's item, if any."""
        keys = [_run_key(run_id), _signal_id_key(run_id, signal_id)]
        found = await self._batch_get_keys(
            keys, ("SK", "status", "wake_at", "inbox_seq", "sequence")
        )
        run = next((i for i in found if i["SK"]["S"] == _RUN_SK), None)
        marker = next((i for i in found if i["SK"]["S"] != _RUN_SK), None)
        return run, marker

    @staticmethod
    def _inbox_update(run_id: str, run: Item, sequence: int, now: datetime) -> Item:
        """The run item's part of a send: the counter, fenced on its previous value, and
        the wake-up of a suspended run (see the module docstring)."""
        expr = _Expr()
        counter, status = expr.name("inbox_seq"), expr.name("status")
        conditions = [
            f"attribute_exists({expr.name('PK')})",
            f"attribute_not_exists({counter})"
            if sequence == 1
            else f"{counter} = {expr.value(_n(sequence - 1))}",
        ]
        sets: Item = {"inbox_seq": _n(sequence)}
        if run["status"]["S"] == _SUSPENDED:
            conditions.append(f"{status} = {expr.value(_s(_SUSPENDED))}")
            wake, at = expr.name("wake_at"), expr.value(_n(_micros(now)))
            if "wake_at" not in run or int(run["wake_at"]["N"]) > _micros(now):
                # Indexed exactly as the run's own suspension with this wake_at would be.
                due, _ = _due_attrs(run_id, RunStatus.SUSPENDED, now)
                sets.update({"wake_at": _n(_micros(now)), **due})
                conditions.append(f"(attribute_not_exists({wake}) OR {wake} > {at})")
            else:
                conditions.append(f"{wake} <= {at}")  # already due: leave it
        else:
            closed = ", ".join(expr.value(_s(s)) for s in (*_TERMINAL, _SUSPENDED))
            conditions.append(f"NOT ({status} IN ({closed}))")
        return {
            "Key": _run_key(run_id),
            "ConditionExpression": " AND ".join(conditions),
            "UpdateExpression": _update_expression(expr, sets, ()),
            **expr.params(),
        }

    async def _stored_signal(self, run_id: str, sequence: int) -> SignalRecord:
        # The id item and the signal were written by one finished transaction.
        found = await self._read_inbox(run_id, sequence - 1, 1, last=sequence)
        if not found:
            raise StorageError(
                f"dynamodb: run {run_id!r} lists signal {sequence} by id but lacks its item"
            )
        return found[0]

    async def list_signals(
        self, run_id: str, *, after_sequence: int = 0, limit: int = 1000
    ) -> list[SignalRecord]:
        if limit <= 0:
            return []
        return await self._read_inbox(run_id, max(after_sequence, 0), limit)

    async def _read_inbox(
        self, run_id: str, after: int, limit: int, *, last: int | None = None
    ) -> list[SignalRecord]:
        """Signals after ``after`` (up to ``last``): one consistent ``Query`` of the
        ``SIGNAL#`` key range, paged until ``limit`` signals are complete."""
        upper = _SIGNAL_END if last is None else f"{_signal_sk(last)}$"  # "$" > "#<chunk>"
        expr = _Expr()
        condition = (
            f"{expr.name('PK')} = {expr.value(_s(_run_pk(run_id)))} AND {expr.name('SK')} "
            f"BETWEEN {expr.value(_s(_signal_sk(after + 1)))} AND {expr.value(_s(upper))}"
        )
        reader = _InboxReader(run_id, after, limit)
        async for page in self._query(
            KeyConditionExpression=condition,
            ConsistentRead=True,
            Limit=min(1000, max(limit, 25)),
            **expr.params(),
        ):
            for item in page:
                reader.feed(item)
            if reader.stopped:
                break
        return reader.done()


__all__ = ["SEND_ATTEMPTS", "SignalStore"]
