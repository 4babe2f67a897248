"""Messages from the broker are validated and decoded as JSON only: whoever can write to
the broker cannot make a worker unpickle anything (no broker needed: the task functions
are called directly, as a worker would)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import pyworkflow
from pyworkflow import SerializationError, workflow
from pyworkflow.celery import worker
from pyworkflow.celery.messages import TransientArguments, read_message, transient_arguments
from pyworkflow.celery.tasks import run_step, run_transient, run_workflow

ran: list[Any] = []


@workflow(name="cm_transient", durable=False)
async def note(value: Any) -> None:
    ran.append(value)


class CreatesFile:
    """Unpickling this creates a file (a stand-in for any code an attacker would run)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def _payload(*args: Any) -> str:
    return json.dumps({"args": list(args), "kwargs": {}})


@pytest.fixture(autouse=True)
def _fresh_worker_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A worker process state (event loop) of this test's own, closed afterwards."""
    ran.clear()
    monkeypatch.setattr(worker, "_process", None)
    yield
    if worker._process is not None:
        worker._process.close()


def test_a_transient_message_carrying_a_pickle_is_refused_and_runs_nothing(
    tmp_path: Path,
) -> None:
    pyworkflow.configure(allow_pickle=True)  # the setting does not apply to the broker
    marker = tmp_path / "pwned"
    pickled = base64.b64encode(cloudpickle.dumps(CreatesFile(str(marker)))).decode("ascii")
    payload = _payload({"__pw__": "pickle", "v": pickled})
    with pytest.raises(SerializationError, match="refused pyworkflow.run_transient message"):
        run_transient(workflow_name="cm_transient", run_id="run_x", payload=payload)
    assert not marker.exists()
    assert ran == []


def test_a_well_formed_transient_message_runs() -> None:
    run_transient(workflow_name="cm_transient", run_id="run_ok", payload=_payload({"a": [1]}))
    assert ran == [{"a": [1]}]


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[1, 2]",
        json.dumps({"args": {"a": 1}, "kwargs": {}}),
        json.dumps({"args": [], "kwargs": []}),
        json.dumps({"args": [], "kwargs": {}, "code": "x"}),
        json.dumps({"args": [], "kwargs": {"__pw__": "tuple", "v": [1]}}),
    ],
    ids=["not-json", "not-object", "args-dict", "kwargs-list", "extra-key", "kwargs-tagged"],
)
def test_malformed_transient_payloads_are_refused(payload: str) -> None:
    with pytest.raises(SerializationError, match="refused pyworkflow.run_transient message"):
        run_transient(workflow_name="cm_transient", run_id="run_x", payload=payload)
    assert ran == []


def test_message_fields_must_have_their_types() -> None:
    with pytest.raises(SerializationError, match="run_id"):
        run_transient(workflow_name="cm_transient", run_id=7, payload=_payload())  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="refused pyworkflow.run_workflow message"):
        run_workflow(run_id={"__pw__": "pickle", "v": ""})  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="force"):
        run_workflow(run_id="run_x", force="yes")  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="round_owner"):
        run_step(run_id="run_x", op_id="step:a#1", round_owner=None)  # type: ignore[arg-type]


def test_refusals_name_fields_not_values() -> None:
    with pytest.raises(SerializationError) as info:
        read_message(TransientArguments, "t", {"args": "secret-value", "kwargs": {}})
    assert "args" in str(info.value) and "secret-value" not in str(info.value)


def test_transient_arguments_keep_their_json_tags() -> None:
    payload = json.dumps({"args": [{"__pw__": "tuple", "v": [1, 2]}], "kwargs": {"k": "v"}})
    assert transient_arguments("t", payload) == (((1, 2),), {"k": "v"})


@pytest.mark.parametrize(
    "fields",
    [
        {"reply_to": "pyworkflow.workflows"},  # a forged query must not publish into a queue
        {"reply_to": "pyworkflow.reply.XYZ"},
        {"name": "../etc"},
        {"args": "not a list"},
        {"run_id": ""},
    ],
)
def test_forged_query_messages_are_refused(fields: dict[str, Any]) -> None:
    from pyworkflow.celery.messages import QueryMessage

    good = {
        "run_id": "run_1",
        "name": "items",
        "args": [],
        "reply_to": "pyworkflow.reply." + "a" * 32,
    }
    read_message(QueryMessage, "pyworkflow.query_run", good)  # the well-formed one passes
    with pytest.raises(SerializationError, match="refused pyworkflow.query_run message"):
        read_message(QueryMessage, "pyworkflow.query_run", {**good, **fields})
