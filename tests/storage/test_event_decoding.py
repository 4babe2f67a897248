"""The one decoding rule of stored events (``Event.from_stored``) and the file backend's
damaged logs (cut short, a line out of place)."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pyworkflow.core.exceptions import HistoryCorruptedError
from pyworkflow.storage.file import FileStorageBackend
from pyworkflow.storage.schemas import Event, EventType
from pyworkflow.testing.conformance import create

ISO = datetime.fromisoformat
TS = "2024-05-01T12:00:00+00:00"


def stored(**overrides: Any) -> Event:
    row: dict[str, Any] = {
        "sequence": 3,
        "event_id": "e3",
        "type_text": "step.completed",
        "timestamp": TS,
        "data": '{"n": 3}',
    }
    row.update(overrides)
    return Event.from_stored("r1", to_datetime=ISO, **row)


def reason_of(**overrides: Any) -> HistoryCorruptedError:
    with pytest.raises(HistoryCorruptedError) as info:
        stored(**overrides)
    return info.value


def test_a_good_row_decodes() -> None:
    event = stored()
    assert (event.run_id, event.sequence, event.event_id) == ("r1", 3, "e3")
    assert (event.type, event.data) == (EventType.STEP_COMPLETED, {"n": 3})
    assert event.timestamp == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert stored(data=b'{"n": 3}').data == stored(data={"n": 3}).data == {"n": 3}


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"data": '{"secret": "hunter2"'}, "event data is not valid JSON"),
        ({"data": b"\xff"}, "event data is not valid JSON"),
        ({"data": "[1, 2]"}, "event data is a JSON array, not an object"),
        ({"data": "null"}, "event data is a JSON null, not an object"),
        ({"data": None}, "event data is missing"),
        ({"data": 7}, "event data is a JSON number, not an object"),
        ({"type_text": "step.exploded"}, "unknown event type 'step.exploded'"),
        ({"type_text": None}, "event type is missing"),
        ({"type_text": ["step.completed"]}, "unknown event type ['step.completed']"),
        ({"timestamp": "yesterday"}, "invalid timestamp 'yesterday'"),
        ({"timestamp": None}, "timestamp is missing"),
    ],
)
def test_a_bad_field_is_named_at_the_rows_sequence(overrides: dict[str, Any], reason: str) -> None:
    error = reason_of(**overrides)
    assert (error.run_id, error.sequence) == ("r1", 3)
    assert error.reason.startswith(reason)
    assert "hunter2" not in str(error)  # data (workflow payloads) never reaches the message
    assert pickle.loads(pickle.dumps(error)).sequence == 3


@pytest.mark.parametrize("sequence", [0, -1, "3", None, True, 2.5])
def test_a_bad_sequence_is_named_by_position_when_known(sequence: Any) -> None:
    assert reason_of(sequence=sequence).reason.startswith("stored sequence")
    assert reason_of(sequence=sequence).sequence is None
    with pytest.raises(HistoryCorruptedError) as info:
        Event.from_stored("r1", sequence, "e", "step.completed", TS, "{}", ISO, position=4)
    assert info.value.sequence == 4


def test_a_row_out_of_place_is_named_at_its_place() -> None:
    with pytest.raises(HistoryCorruptedError) as info:
        Event.from_stored("r1", 7, "e", "step.completed", TS, "{}", ISO, position=4)
    assert info.value.sequence == 4
    assert info.value.reason == "the event stored there has sequence 7"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ('{"sequence": 2, "type": ', "stored event is not valid JSON"),
        ("[2]", "stored event is a JSON array, not an object"),
        (None, "stored event is missing"),
    ],
)
def test_a_bad_record_is_named_at_its_position(record: Any, reason: str) -> None:
    with pytest.raises(HistoryCorruptedError) as info:
        Event.from_stored_record("r1", record, 2, ISO)
    assert info.value.sequence == 2
    assert info.value.reason.startswith(reason)


def test_a_record_decodes_like_a_row() -> None:
    record = stored().to_dict()
    assert Event.from_stored_record("r1", json.dumps(record), 3, ISO) == stored()
    assert Event.from_stored_record("r1", record, 3, ISO) == stored()


# -- the file backend's log -------------------------------------------------------------


@pytest.fixture
async def file_backend(tmp_path: Path) -> FileStorageBackend:
    backend = FileStorageBackend(tmp_path)
    await create(backend, "r1", events=3)
    return backend


async def corrupted(backend: FileStorageBackend, after: int = 0) -> HistoryCorruptedError:
    with pytest.raises(HistoryCorruptedError) as info:
        await backend.get_events("r1", after_sequence=after)
    assert info.value.run_id == "r1"
    return info.value


def cut(backend: FileStorageBackend, keep: int) -> None:
    """Truncate the run's log file to ``keep`` bytes fewer than it has."""
    path = backend._events_path("r1")
    path.write_bytes(path.read_bytes()[:-keep])


async def test_a_log_cut_mid_line_names_the_cut_event(file_backend: FileStorageBackend) -> None:
    cut(file_backend, 10)  # inside the last line (sequence 3)
    assert (await corrupted(file_backend)).sequence == 3
    assert (await corrupted(file_backend, after=2)).sequence == 3
    assert [e.sequence for e in await file_backend.get_events("r1", after_sequence=3)] == []


async def test_a_log_cut_at_a_line_end_names_the_lost_event(
    file_backend: FileStorageBackend,
) -> None:
    path = file_backend._events_path("r1")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2]))  # the last event is gone
    error = await corrupted(file_backend, after=1)
    assert error.sequence == 3 and "cut short" in error.reason
    file_backend._events_path("r1").unlink()
    assert (await corrupted(file_backend)).sequence == 1


async def test_uncommitted_bytes_past_the_log_are_ignored(file_backend: FileStorageBackend) -> None:
    # A crash between writing events and committing the run record leaves a tail that
    # readers never see (and the next append overwrites).
    path = file_backend._events_path("r1")
    path.write_bytes(path.read_bytes() + b'{"sequence": 4, "type": "step.comp')
    assert [e.sequence for e in await file_backend.get_events("r1")] == [1, 2, 3]


async def test_a_line_out_of_place_is_named(file_backend: FileStorageBackend) -> None:
    path = file_backend._events_path("r1")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[2] + lines[1])  # same length: still committed
    error = await corrupted(file_backend)
    assert (error.sequence, error.reason) == (2, "the event stored there has sequence 3")
