"""A run's history as a file (``pyworkflow runs export RUN_ID > history.json``): the run
record and its whole event log, in a versioned JSON document that a test suite keeps as
a golden history and replays against the code (:func:`pyworkflow.testing.assert_replays`).

A history file comes from outside the process: it is validated (shape with Pydantic,
then every event and the run record as storage would read them) before anything uses it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pyworkflow.core.exceptions import SerializationError
from pyworkflow.storage.schemas import Event, WorkflowRun

FORMAT = "pyworkflow.history"
VERSION = 1


class _EventRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sequence: int = Field(ge=1)
    type: str = Field(min_length=1, max_length=100)
    timestamp: str
    data: dict[str, Any] = Field(default_factory=dict)
    event_id: str | None = None


class _HistoryDocument(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: Literal["pyworkflow.history"]
    version: Literal[1]
    run: dict[str, Any]
    events: list[_EventRecord]


def dump_history(run: WorkflowRun, events: Sequence[Event]) -> str:
    """The history file of ``run`` (pretty JSON text, stable key order)."""
    document = {
        "format": FORMAT,
        "version": VERSION,
        "run": run.to_dict(),
        "events": [{k: v for k, v in event.to_dict().items() if k != "run_id"} for event in events],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def load_history(source: str | Path | dict[str, Any]) -> tuple[WorkflowRun, list[Event]]:
    """The run and events of a history file (a path, JSON text, or the parsed document).

    Raises:
        SerializationError: the document is not a pyworkflow history file (the message
            says what is wrong and where).
    """
    where = "history"
    try:
        if isinstance(source, dict):
            raw: Any = source
        elif isinstance(source, Path) or not str(source).lstrip().startswith("{"):
            where = str(source)
            raw = json.loads(Path(source).read_text(encoding="utf-8"))
        else:
            raw = json.loads(source)
        document = _HistoryDocument.model_validate(raw)
    except (OSError, ValueError) as exc:
        detail = _first_error(exc) if isinstance(exc, ValidationError) else str(exc)
        raise SerializationError(f"{where} is not a pyworkflow history file: {detail}") from exc
    try:
        run = WorkflowRun.from_dict(document.run)
        events = [
            Event.from_dict({**record.model_dump(), "run_id": run.run_id})
            for record in document.events
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise SerializationError(f"{where}: a record cannot be read: {exc}") from exc
    expected = list(range(1, len(events) + 1))
    if [e.sequence for e in events] != expected:
        raise SerializationError(f"{where}: event sequences must run 1..{len(events)} in order")
    return run, events


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "document"
    return f"{location}: {first['msg']}"
