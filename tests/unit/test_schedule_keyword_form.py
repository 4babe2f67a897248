"""``create_schedule(workflow_name=..., spec=..., args=..., kwargs=...)`` next to the
positional form: same schedule, arguments that cannot clash with options, a name this
process need not have imported, and clear errors for mixed forms."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import pyworkflow
from pyworkflow import create_schedule, get_schedule, trigger_schedule, workflow
from pyworkflow.scheduler.declared import forget_declared
from pyworkflow.storage.base import StorageBackend


@workflow()
async def digest(team: str, schedule_id: str = "-", storage: str = "-") -> str:
    return f"{team}/{schedule_id}/{storage}"


@pytest.fixture(autouse=True)
def _no_declarations_left() -> Iterator[None]:
    yield
    forget_declared()


@pytest.fixture
def storage() -> StorageBackend:
    pyworkflow.configure(storage="memory://")
    return pyworkflow.get_storage()


async def _result_of_trigger(storage: StorageBackend, schedule_id: str) -> object:
    run_id = await trigger_schedule(schedule_id)
    for _ in range(200):
        run = await storage.get_run(run_id)
        if run is not None and run.status.is_terminal:
            return run.result
        await asyncio.sleep(0.01)
    raise AssertionError("the triggered run did not finish")


async def test_keyword_form_passes_arguments_only_through_args_and_kwargs(storage) -> None:
    schedule = await create_schedule(
        workflow_name="digest",
        spec="1h",
        overlap_policy="allow_all",
        schedule_id="kw",
        catchup_window="10m",
        args=("core",),
        kwargs={"schedule_id": "inner", "storage": "s3"},  # the workflow's, not options
    )
    assert schedule.schedule_id == "kw" and schedule.workflow_name == "digest"
    assert schedule.overlap_policy.value == "allow_all" and schedule.catchup_window == 600
    assert schedule.decoded_args() == (["core"], {"schedule_id": "inner", "storage": "s3"})
    assert await _result_of_trigger(storage, "kw") == "core/inner/s3"


async def test_positional_form_is_unchanged(storage) -> None:
    await create_schedule(digest, "1h", "ops", schedule_id="pos", storage="memory://")
    await create_schedule("digest", {"interval": "2h"}, team="web", schedule_id="byname")
    # Without workflow_name=, args=/kwargs= are the workflow's keyword arguments as before.
    legacy = await create_schedule(digest, "1h", schedule_id="legacy", team="t", args=1)
    assert legacy.decoded_args() == ([], {"team": "t", "args": 1})
    assert await _result_of_trigger(storage, "pos") == "ops/-/-"
    named = await get_schedule("byname")
    assert named is not None and named.decoded_args() == ([], {"team": "web"})


async def test_keyword_form_accepts_a_workflow_this_process_has_not_imported(storage) -> None:
    schedule = await create_schedule(workflow_name="lives_on_workers", spec="0 9 * * *")
    stored = await get_schedule(schedule.schedule_id)
    assert stored is not None and stored.workflow_name == "lives_on_workers"
    assert stored.decoded_args() == ([], {})


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: create_schedule(workflow_name="digest", spec="1h", team="x"), "team"),
        (lambda: create_schedule(None, "1h", "x", workflow_name="digest"), "args="),
        (lambda: create_schedule(workflow_name="digest"), "spec"),
        (lambda: create_schedule(spec="1h"), "workflow"),
        (lambda: create_schedule(workflow_name="digest", spec="1h", args="ab"), "tuple"),
        (lambda: create_schedule(workflow_name="digest", spec="1h", kwargs=[1]), "dict"),
    ],
)
async def test_mixed_or_incomplete_keyword_forms_are_refused(storage, call, message) -> None:
    with pytest.raises(TypeError, match=message):
        await call()
    assert await pyworkflow.list_schedules() == []  # nothing stored
