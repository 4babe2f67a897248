"""Conformance tests for undecodable stored events: a backend's ``get_events`` raises
:class:`~pyworkflow.core.exceptions.HistoryCorruptedError` naming the run and the
sequence, so the engine can park the run instead of retrying it forever.

Used like :class:`~pyworkflow.testing.conformance.StorageConformance`, plus an optional
``corrupt_event`` fixture: an async callable ``corrupt(run_id, sequence, how)`` that
damages one stored event in place, with the backend's own client:

* ``how="json"``: the event's data (or the whole stored event, where data is embedded
  in it) is no longer valid JSON;
* ``how="type"``: the event's type is ``"step.exploded"``, a type this version does not
  know (as if written by a newer version mid-deploy).

Without that fixture (or when it is ``None``) the tests are skipped.
:func:`damaged_field` and :func:`damaged_record` give the damaged values.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pyworkflow.core.exceptions import HistoryCorruptedError, StorageError
from pyworkflow.storage.base import StorageBackend
from pyworkflow.testing.conformance import append, create, fetch, optional_fixture

Corrupt = Callable[[str, int, str], Awaitable[Any]]
UNKNOWN_TYPE = "step.exploded"
NOT_JSON = '{"result": '  # cut short: not valid JSON


def damaged_field(how: str) -> tuple[str, str]:
    """``(field, new text)`` that damages an event stored as separate fields (a row's
    ``data`` or ``type`` column)."""
    if how == "json":
        return "data", NOT_JSON
    if how == "type":
        return "type", UNKNOWN_TYPE
    raise ValueError(f"unknown damage {how!r}: use 'json' or 'type'")


def damage_sql(table: str, how: str, placeholder: str = "?") -> tuple[str, str]:
    """``(statement, new value)`` damaging one event row of ``table``; the statement's
    parameters are the new value, the run id and the sequence. ``placeholder`` is the
    driver's parameter mark (``"?"``, ``"%s"``, or ``"${n}"`` for numbered ones)."""
    column, value = damaged_field(how)  # a fixed column name, never caller text
    a, b, c = (placeholder.format(n=n) for n in (1, 2, 3))
    return f"UPDATE {table} SET {column} = {a} WHERE run_id = {b} AND sequence = {c}", value


def damaged_record(record: str | bytes, how: str, type_key: str = "type") -> str:
    """An event stored as one JSON record (a JSON line, a list item) damaged ``how``:
    cut in half (not JSON), or with ``type_key`` set to an unknown type."""
    text = record.decode() if isinstance(record, bytes) else record
    field, value = damaged_field(how)
    if field == "data":
        return text[: len(text) // 2]
    parsed = json.loads(text)
    parsed[type_key] = value
    return json.dumps(parsed)


def corrupt_or_skip(request: pytest.FixtureRequest) -> Corrupt:
    """The ``corrupt_event`` fixture's callable; skips the test without one."""
    corrupt: Corrupt | None = optional_fixture(request, "corrupt_event")
    if corrupt is None:
        pytest.skip("no corrupt_event fixture: cannot damage a stored event")
    return corrupt


async def sequences(storage: StorageBackend, run_id: str, after: int = 0) -> list[int]:
    return [e.sequence for e in await storage.get_events(run_id, after_sequence=after)]


async def corrupted_at(
    storage: StorageBackend, run_id: str, after: int = 0
) -> HistoryCorruptedError:
    """The error ``get_events`` raises, which must be a typed, picklable storage error."""
    with pytest.raises(HistoryCorruptedError) as info:
        await storage.get_events(run_id, after_sequence=after)
    assert isinstance(info.value, StorageError)
    return info.value


class CorruptionConformance:
    """What ``get_events`` does with a stored event it cannot decode."""

    @pytest.mark.parametrize("how", ["json", "type"])
    async def test_undecodable_event_raises_history_corrupted(
        self, storage: StorageBackend, request: pytest.FixtureRequest, how: str
    ) -> None:
        corrupt = corrupt_or_skip(request)
        await create(storage, "r1", events=1)
        await append(storage, "r1", 1, count=4)
        await create(storage, "r2", events=3)

        await corrupt("r1", 3, how)

        for after in (0, 2):  # any read that includes the damaged event
            error = await corrupted_at(storage, "r1", after)
            assert (error.run_id, error.sequence) == ("r1", 3)
            assert "r1" in str(error) and error.reason
            if how == "type":
                assert UNKNOWN_TYPE in error.reason
        # Reads past the damage, other runs and the projection are unaffected.
        assert await sequences(storage, "r1", after=3) == [4, 5]
        assert await sequences(storage, "r1", after=5) == []
        assert await sequences(storage, "r2") == [1, 2, 3]
        assert (await fetch(storage, "r1")).last_sequence == 5

    async def test_damage_to_the_first_and_last_events_is_named(
        self, storage: StorageBackend, request: pytest.FixtureRequest
    ) -> None:
        corrupt = corrupt_or_skip(request)
        await create(storage, "r1", events=3)

        await corrupt("r1", 3, "json")
        assert (await corrupted_at(storage, "r1", 2)).sequence == 3
        await corrupt("r1", 1, "type")
        assert (await corrupted_at(storage, "r1")).sequence == 1
        assert (await corrupted_at(storage, "r1", 1)).sequence == 3  # the first bad one read
