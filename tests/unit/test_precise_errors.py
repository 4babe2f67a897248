"""The precise not-found and definition errors: who raises which, what stays as before
for callers catching the old classes, and how the runtimes tell "this run is gone"
from "this code is not here"."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any

import pytest
from loguru import logger
from pydantic import BaseModel

from pyworkflow import (
    DefinitionError,
    NotFoundError,
    RunNotFoundError,
    ScheduleNotFoundError,
    Step,
    StepNotFoundError,
    WorkflowNotFoundError,
    cancel_workflow,
    define_hook,
    get_runtime,
    get_workflow_chain,
    get_workflow_events,
    get_workflow_run,
    resume,
    scheduled_workflow,
    start,
    step,
    trigger_schedule,
    wait_for_run,
    workflow,
)
from pyworkflow.core.registry import require_step, require_workflow
from pyworkflow.core.workflow import definition_of
from pyworkflow.engine.runs import RunRequest
from pyworkflow.observability import set_log_level
from pyworkflow.runtime import local as local_runtime
from pyworkflow.scheduler.declared import forget_declared
from pyworkflow.storage.memory import InMemoryStorageBackend

# -- not found -----------------------------------------------------------------------------


def test_require_step_raises_step_not_found_naming_the_step() -> None:
    with pytest.raises(StepNotFoundError, match="'pe_no_such_step'") as info:
        require_step("pe_no_such_step")
    assert isinstance(info.value, WorkflowNotFoundError)  # old handlers still catch it
    assert not isinstance(info.value, RunNotFoundError)


def test_require_workflow_raises_the_plain_workflow_not_found() -> None:
    with pytest.raises(WorkflowNotFoundError, match="pe_no_such_workflow") as info:
        require_workflow("pe_no_such_workflow")
    assert type(info.value) is WorkflowNotFoundError


async def test_start_by_unknown_name_raises_workflow_not_found() -> None:
    with pytest.raises(WorkflowNotFoundError) as info:
        await start("pe_never_registered", storage=InMemoryStorageBackend())
    assert type(info.value) is WorkflowNotFoundError


async def test_unknown_run_ids_keep_their_public_conventions() -> None:
    storage = InMemoryStorageBackend()
    # Readers return None / [] as before.
    assert await get_workflow_run("pe_missing", storage=storage) is None
    assert await get_workflow_events("pe_missing", storage=storage) == []
    # Operations on a run raise, now precisely, and still a WorkflowNotFoundError.
    for call in (
        resume("pe_missing", storage=storage),
        wait_for_run("pe_missing", storage=storage, timeout=5),
        cancel_workflow("pe_missing", storage=storage),
        get_workflow_chain("pe_missing", storage=storage),
    ):
        with pytest.raises(RunNotFoundError, match="pe_missing") as info:
            await call
        assert isinstance(info.value, WorkflowNotFoundError)
        assert isinstance(info.value, LookupError)


async def test_unknown_schedule_raises_schedule_not_found() -> None:
    with pytest.raises(ScheduleNotFoundError) as info:
        await trigger_schedule("pe_no_schedule", storage=InMemoryStorageBackend())
    assert isinstance(info.value, NotFoundError)
    assert isinstance(info.value, LookupError)


# -- the runtimes: a vanished run versus code not deployed here ------------------------------


def _raising(exc: Exception) -> Any:
    async def fake_resume_run(*args: Any, **kwargs: Any) -> None:
        raise exc

    return fake_resume_run


async def _logs_about(run_id: str, work: Awaitable[Any]) -> tuple[Any, list[tuple[str, str]]]:
    """Await ``work`` (it must not raise); return its result and the (level, message) of
    every log record mentioning ``run_id``."""
    records: list[Any] = []
    set_log_level("DEBUG")
    sink = logger.add(lambda message: records.append(message.record), level="DEBUG")
    try:
        result = await work
    finally:
        logger.remove(sink)
        set_log_level("WARNING")
    return result, [(r["level"].name, r["message"]) for r in records if run_id in r["message"]]


# (error, local runtime's log level, Celery worker's log level, words of both messages)
_CASES = [
    (RunNotFoundError("run not found"), "WARNING", "WARNING", "no longer exists"),
    (WorkflowNotFoundError("no workflow named 'w'"), "DEBUG", "ERROR", "here"),
    (StepNotFoundError("step 's' is not registered"), "DEBUG", "ERROR", "here"),
]


@pytest.mark.parametrize(("exc", "level", "celery_level", "words"), _CASES)
async def test_local_runtime_logs_a_vanished_run_apart_from_missing_code(
    monkeypatch: pytest.MonkeyPatch, exc: Exception, level: str, celery_level: str, words: str
) -> None:
    monkeypatch.setattr(local_runtime, "resume_run", _raising(exc))
    service = get_runtime("local").service(InMemoryStorageBackend())  # type: ignore[attr-defined]
    _, logs = await _logs_about("r1", service._resume("r1", recovery=False, steal_from=None))
    assert [(lvl, words in msg) for lvl, msg in logs] == [(level, True)]


async def test_a_run_deleted_while_its_step_runs_is_logged_as_gone() -> None:
    """Not a stubbed error: the backend itself raises RunNotFoundError when the step's
    completion is appended, and the local runtime reports the run gone, not its code."""
    storage = InMemoryStorageBackend()

    @step(name="pe_deleting_step")
    async def delete_own_run(run_id: str) -> str:
        del storage._runs[run_id]  # deleted by someone else mid-execution
        return "done"

    @workflow(name="pe_deleted_mid_run")
    async def deleted_mid_run(run_id: str) -> str:
        return await delete_own_run(run_id)

    runtime = get_runtime("local")
    definition = definition_of(deleted_mid_run)
    request = RunRequest(definition, ("pe_gone",), {}, run_id="pe_gone")

    async def run_detached() -> None:
        await runtime.start_detached(request, storage)  # type: ignore[attr-defined]
        service = runtime.service(storage)  # type: ignore[attr-defined]
        while service.tasks:
            await asyncio.gather(*service.tasks)

    try:
        _, logs = await _logs_about("pe_gone", run_detached())
    finally:
        await runtime.shutdown()
    gone = [lvl for lvl, msg in logs if "no longer exists" in msg]
    assert gone == ["WARNING"]
    assert not any("not resuming" in msg or "regist" in msg for _, msg in logs)
    assert not [msg for lvl, msg in logs if lvl == "ERROR"]  # nothing "failed": it is gone
    assert await storage.get_run("pe_gone") is None


class _FakeWorkerProcess:
    owner = "test-owner"

    def __init__(self) -> None:
        self._storage = InMemoryStorageBackend()

    async def storage(self) -> InMemoryStorageBackend:
        return self._storage

    def holding(self, run_id: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


@pytest.mark.parametrize(("exc", "level", "celery_level", "words"), _CASES)
async def test_celery_worker_logs_a_vanished_run_apart_from_missing_code(
    monkeypatch: pytest.MonkeyPatch, exc: Exception, level: str, celery_level: str, words: str
) -> None:
    from pyworkflow.celery import worker

    monkeypatch.setattr(worker, "resume_run", _raising(exc))
    monkeypatch.setattr(worker, "current", _FakeWorkerProcess)
    work = worker.execute_workflow("r2", steal_from=None, recovery=False, force=False)
    outcome, logs = await _logs_about("r2", work)
    assert outcome is None
    assert [(lvl, words in msg) for lvl, msg in logs] == [(celery_level, True)]


# -- definition errors ----------------------------------------------------------------------


def test_registry_conflicts_raise_definition_error() -> None:
    @workflow(name="pe_dup_wf")
    async def first_wf() -> None: ...

    with pytest.raises(DefinitionError, match="pe_dup_wf"):

        @workflow(name="pe_dup_wf")
        async def second_wf() -> None: ...

    @step(name="pe_dup_step")
    async def first_step() -> None: ...

    with pytest.raises(DefinitionError, match="pe_dup_step"):

        class Clash(Step):
            name = "pe_dup_step"

            async def execute(self) -> None: ...


@pytest.mark.parametrize(
    "options",
    [{"max_retries": -1}, {"retry_delay": "soon"}, {"timeout": "never"}, {"timeout": 0}],
)
def test_bad_step_options_raise_definition_error(options: dict[str, Any]) -> None:
    with pytest.raises(DefinitionError, match="pe_bad_step"):

        @step(name="pe_bad_step", **options)
        async def broken() -> None: ...


@pytest.mark.parametrize(
    "options",
    [{"tags": ["a", "b", "c", "d"]}, {"max_duration": "forever"}, {"max_recovery_attempts": -1}],
)
def test_bad_workflow_options_raise_definition_error(options: dict[str, Any]) -> None:
    with pytest.raises(DefinitionError, match="pe_bad_wf"):

        @workflow(name="pe_bad_wf", **options)
        async def broken() -> None: ...


def test_type_errors_stay_type_errors() -> None:
    with pytest.raises(TypeError) as info:

        @step(name="pe_sync_step")
        def sync_step() -> None: ...

    assert not isinstance(info.value, DefinitionError)
    with pytest.raises(TypeError):

        @step(name="pe_odd_timeout", timeout=[1])  # type: ignore[arg-type]
        async def odd() -> None: ...

    with pytest.raises(TypeError):
        define_hook("pe_hook", dict)  # type: ignore[type-var]


async def test_start_with_bad_tags_is_a_plain_value_error_not_a_definition_error() -> None:
    @workflow(name="pe_tagged")
    async def tagged() -> None: ...

    with pytest.raises(ValueError, match="tags") as info:
        await start(tagged, storage=InMemoryStorageBackend(), tags=["a", "b", "c", "d"])
    assert not isinstance(info.value, DefinitionError)


def test_retyping_a_hook_raises_definition_error() -> None:
    class First(BaseModel):
        a: int

    class Second(BaseModel):
        b: int

    define_hook("pe_typed_hook", First)
    with pytest.raises(DefinitionError, match="pe_typed_hook"):
        define_hook("pe_typed_hook", Second)


@pytest.mark.parametrize(
    "options",
    [{"cron": "every day"}, {"cron": "* * * * *", "overlap_policy": "sometimes"}],
)
def test_bad_scheduled_workflow_raises_definition_error(options: dict[str, Any]) -> None:
    try:
        with pytest.raises(DefinitionError, match="scheduled_workflow"):

            @scheduled_workflow(**options)
            async def broken() -> None: ...
    finally:
        forget_declared()
