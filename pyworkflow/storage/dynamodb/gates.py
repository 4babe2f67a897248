"""Flow-control gates: one item per gate, in a partition of its own (``GATE#<key>``),
written with a compare-and-set on ``version`` exactly as a schedule is (both by
:meth:`~pyworkflow.storage.dynamodb.client.TableClient._put_versioned`).

Why a partition per gate rather than one shared ``GATES`` partition like the schedules:

* gates are written on every slot taken or released and every rate-limited start, so a
  busy gate is a hot item; its own partition keeps one busy limit from throttling the
  others (one partition takes on the order of 1,000 writes per second);
* a key is any text of up to 255 characters, up to 1,020 bytes of UTF-8, which with a
  prefix does not fit the 1,024-byte limit of a sort key but fits the 2,048 bytes of a
  partition key.

Nothing lists gates, so no index is needed; a gate item carries no index key attribute,
so it is in no index (run listings never see it), and a table created by an earlier
release serves gates unchanged.
"""

from __future__ import annotations

from pyworkflow.storage.dynamodb.client import TableClient
from pyworkflow.storage.dynamodb.codec import (
    Item,
    _from_micros,
    _micros,
    _n,
    _payload,
    _payload_attrs,
    _s,
)
from pyworkflow.storage.dynamodb.keys import _gate_key
from pyworkflow.storage.payloads import check_gate
from pyworkflow.storage.schemas import GateRecord


def _gate_item(gate: GateRecord, version: int, write_token: str) -> Item:
    """The gate's item, stored at ``version``."""
    item: Item = {
        **_gate_key(gate.key),
        "gate_key": _s(gate.key),
        "version": _n(version),
        "updated_at": _n(_micros(gate.updated_at)),
        "write_token": _s(write_token),
    }
    # Plain or compressed, like a schedule's data (a long queue of waiting runs); no
    # attribute at all for empty data.
    data, _ = _payload_attrs("data", gate.data or None)
    item.update(data)
    return item


def _item_to_gate(item: Item) -> GateRecord:
    return GateRecord(
        key=item["gate_key"]["S"],
        data=_payload(item, "data") or "",
        version=int(item["version"]["N"]),
        updated_at=_from_micros(item["updated_at"]["N"]),
    )


class GateStore(TableClient):
    """Flow-control gate records."""

    async def get_gate(self, key: str) -> GateRecord | None:
        item = await self._get_item(_gate_key(key))
        return None if item is None else _item_to_gate(item)

    async def save_gate(self, gate: GateRecord, *, expected_version: int | None) -> bool:
        """One conditional ``PutItem``, as a schedule is saved (see
        :meth:`TableClient._put_versioned`): of concurrent saves from one version, across
        processes, exactly one wins."""
        check_gate(gate, self.payload_limit)
        return await self._put_versioned(gate, expected_version, _gate_item)
