"""``@workflow``, ``@step``, the class form ``Step`` and the registry, as a user sees them."""

from __future__ import annotations

import re
from typing import Any

import pytest

from pyworkflow import (
    RetryableError,
    Step,
    get_step,
    get_workflow,
    get_workflow_events,
    get_workflow_run,
    list_steps,
    list_workflows,
    start,
    step,
    workflow,
)
from pyworkflow.core.exceptions import DefinitionError
from pyworkflow.core.retry import retry_delay_seconds
from pyworkflow.storage.memory import InMemoryStorageBackend

calls: dict[str, int] = {}


def _count(name: str) -> None:
    calls[name] = calls.get(name, 0) + 1


# -- bare and called decorator forms ------------------------------------------------------


@step
async def dec_bare_step(x: int) -> int:
    _count("dec_bare_step")
    return x + 1


@step()
async def dec_called_step(x: int) -> int:
    _count("dec_called_step")
    return x * 10


@workflow
async def dec_bare_workflow(x: int) -> int:
    return await dec_bare_step(x)


@workflow()
async def dec_called_workflow(x: int) -> int:
    return await dec_called_step(x)


async def _completed_run(fn: Any, *args: Any) -> tuple[Any, list[Any]]:
    storage = InMemoryStorageBackend()
    run_id = await start(fn, *args, storage=storage)
    run = await get_workflow_run(run_id, storage=storage)
    assert run is not None
    events = await get_workflow_events(run_id, storage=storage)
    return run, events


async def test_bare_workflow_and_bare_step_decorators() -> None:
    run, events = await _completed_run(dec_bare_workflow, 1)
    assert run.status == "completed"
    assert run.result == 2
    assert run.workflow_name == "dec_bare_workflow"
    step_events = [e for e in events if e.type.value.startswith("step.")]
    assert [e.type.value for e in step_events] == ["step.started", "step.completed"]
    assert step_events[0].data["step_name"] == "dec_bare_step"


async def test_called_workflow_and_called_step_decorators() -> None:
    run, events = await _completed_run(dec_called_workflow, 4)
    assert run.status == "completed"
    assert run.result == 40
    assert run.workflow_name == "dec_called_workflow"
    assert any(
        e.type == "step.completed" and e.data["step_name"] == "dec_called_step" for e in events
    )


async def test_decorated_functions_keep_their_name_and_docstring() -> None:
    @step(name="dec_documented_step")
    async def documented(x: int) -> int:
        """Add one."""
        return x + 1

    assert documented.__name__ == "documented"
    assert documented.__doc__ == "Add one."


# -- options ------------------------------------------------------------------------------


@step(name="dec_custom_name", max_retries=5, retry_delay="fixed", timeout="30s")
async def dec_with_options() -> str:
    return "ok"


@workflow(name="dec_custom_workflow", max_duration="1h", tags=["billing", "eu"])
async def dec_custom_workflow() -> str:
    return await dec_with_options()


async def test_step_options_are_kept_on_the_definition() -> None:
    definition = get_step("dec_custom_name")
    assert definition is not None
    assert definition.max_retries == 5
    assert definition.retry_delay == "fixed"
    assert definition.timeout == 30.0
    assert get_step("dec_with_options") is None  # registered under its explicit name


async def test_workflow_options_are_kept_and_used() -> None:
    definition = get_workflow("dec_custom_workflow")
    assert definition is not None
    assert definition.max_duration == "1h"
    assert definition.tags == ("billing", "eu")
    run, events = await _completed_run(dec_custom_workflow)
    assert run.result == "ok"
    assert run.workflow_name == "dec_custom_workflow"
    assert run.max_duration == "1h"
    assert [e.data["step_name"] for e in events if e.type == "step.started"] == ["dec_custom_name"]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("exponential", [1.0, 2.0, 4.0, 8.0]),
        ("fixed", [60.0, 60.0, 60.0, 60.0]),
        ("5s", [5.0, 5.0, 5.0, 5.0]),
        (3, [3.0, 3.0, 3.0, 3.0]),
        (0.5, [0.5, 0.5, 0.5, 0.5]),
        ([1, 2], [1.0, 2.0, 2.0, 2.0]),
    ],
)
def test_every_retry_delay_form_is_accepted_and_honoured(
    policy: Any, expected: list[float]
) -> None:
    definition_name = f"dec_retry_form_{type(policy).__name__}_{policy}"

    @step(name=definition_name, retry_delay=policy)
    async def some_step() -> None:
        return None

    registered = get_step(definition_name)
    assert registered is not None
    assert registered.retry_delay == policy
    assert [retry_delay_seconds(policy, attempt) for attempt in (1, 2, 3, 4)] == expected


def test_exponential_retry_delay_is_capped() -> None:
    assert retry_delay_seconds("exponential", 20) == 300.0


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"retry_delay": "soon"}, "retry_delay"),
        ({"retry_delay": "5 parsecs"}, "retry_delay"),
        ({"retry_delay": []}, "retry_delay"),
        ({"max_retries": -1}, "max_retries"),
        ({"timeout": "never"}, "never"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_invalid_step_options_raise_value_error_naming_the_problem(
    options: dict[str, Any], word: str
) -> None:
    with pytest.raises(ValueError, match=word):

        @step(name="dec_never_registered_step", **options)
        async def broken() -> None:
            return None

    assert get_step("dec_never_registered_step") is None


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"tags": ["a", "b", "c", "d"]}, "tags"),
        ({"tags": "just-a-string"}, "tags"),
        ({"max_duration": "forever"}, "max_duration"),
        ({"max_duration": "-5s"}, "max_duration"),
        ({"max_duration": 0}, "max_duration"),
    ],
)
def test_invalid_workflow_options_raise_value_error_naming_the_problem(
    options: dict[str, Any], word: str
) -> None:
    with pytest.raises(ValueError, match=word):

        @workflow(name="dec_never_registered_wf", **options)
        async def broken() -> None:
            return None

    assert get_workflow("dec_never_registered_wf") is None


async def test_start_with_too_many_tags_raises_value_error() -> None:
    with pytest.raises(ValueError, match="tags"):
        await start(
            dec_bare_workflow, 1, storage=InMemoryStorageBackend(), tags=["a", "b", "c", "d"]
        )


def test_non_async_functions_are_rejected_with_type_error() -> None:
    with pytest.raises(TypeError, match="async"):

        @workflow(name="dec_sync_wf")
        def sync_wf() -> None:
            return None

    with pytest.raises(TypeError, match="async"):

        @workflow
        def sync_wf_bare() -> None:
            return None

    with pytest.raises(TypeError, match="async"):

        @step(name="dec_sync_step")
        def sync_step() -> None:
            return None

    with pytest.raises(TypeError, match="async"):

        @step
        def sync_step_bare() -> None:
            return None

    with pytest.raises(TypeError, match="async"):

        class SyncExecute(Step):
            name = "dec_sync_execute"

            def execute(self) -> None:  # type: ignore[override]
                return None

    assert get_workflow("dec_sync_wf") is None
    assert get_step("dec_sync_step") is None
    assert get_step("dec_sync_execute") is None


def test_reregistering_a_workflow_name_with_another_function_raises() -> None:
    @workflow(name="dec_duplicate_wf")
    async def first() -> int:
        return 1

    with pytest.raises(ValueError, match="dec_duplicate_wf"):

        @workflow(name="dec_duplicate_wf")
        async def second() -> int:
            return 2

    definition = get_workflow("dec_duplicate_wf")
    assert definition is not None
    assert definition.func.__qualname__.endswith("first")


def test_reregistering_a_step_name_with_another_function_raises() -> None:
    @step(name="dec_duplicate_step")
    async def first() -> int:
        return 1

    with pytest.raises(ValueError, match="dec_duplicate_step"):

        @step(name="dec_duplicate_step")
        async def second() -> int:
            return 2


def test_the_same_function_registered_again_replaces_itself() -> None:
    # What happens when a module is imported twice (reload): same module + qualname.
    defined = []
    for _ in range(2):

        @workflow(name="dec_reloaded_wf")
        async def reloaded() -> int:
            return 1

        defined.append(reloaded)
    definition = get_workflow("dec_reloaded_wf")
    assert definition is not None
    assert definition is defined[1].__workflow__  # type: ignore[attr-defined]


# -- the class form -----------------------------------------------------------------------


class ChargeCard(Step):
    name = "dec_charge_card"
    max_retries = 2
    retry_delay = 0
    timeout = "5s"

    async def execute(self, amount: int, currency: str = "EUR") -> dict[str, Any]:
        _count("dec_charge_card")
        if calls["dec_charge_card"] == 1:
            raise RetryableError("card network busy")
        return {"charged": amount, "currency": currency}


class DefaultNamedStep(Step):
    async def execute(self, x: int) -> int:
        return x * 3


@workflow(name="dec_class_step_wf")
async def class_step_wf(amount: int) -> dict[str, Any]:
    receipt = await ChargeCard()(amount, currency="USD")
    tripled = await DefaultNamedStep()(amount)
    return {**receipt, "tripled": tripled}


async def test_class_based_step_runs_inside_workflow_with_its_options() -> None:
    calls.pop("dec_charge_card", None)
    definition = get_step("dec_charge_card")
    assert definition is not None
    assert definition.max_retries == 2
    assert definition.timeout == 5.0
    assert get_step("DefaultNamedStep") is not None  # class name when no name is set

    run, events = await _completed_run(class_step_wf, 7)
    assert run.status == "completed"
    assert run.result == {"charged": 7, "currency": "USD", "tripled": 21}
    assert calls["dec_charge_card"] == 2  # retried once, as its class attributes say

    charge_events = [e for e in events if e.data.get("step_name") == "dec_charge_card"]
    assert [e.type.value for e in charge_events] == [
        "step.started",
        "step.failed",
        "step.retrying",
        "step.started",
        "step.completed",
    ]
    assert {e.data["step_id"] for e in charge_events} == {"step:dec_charge_card#1"}
    assert any(
        e.type == "step.completed" and e.data["step_id"] == "step:DefaultNamedStep#1"
        for e in events
    )


async def test_class_based_step_outside_workflow_just_runs() -> None:
    assert await DefaultNamedStep()(2) == 6


# -- steps outside workflows and the registry ---------------------------------------------


async def test_step_called_outside_any_workflow_just_runs() -> None:
    calls.pop("dec_bare_step", None)
    assert await dec_bare_step(41) == 42
    assert calls["dec_bare_step"] == 1


async def test_workflow_called_directly_just_runs_its_body() -> None:
    assert await dec_called_workflow(2) == 20


def test_registry_lookups() -> None:
    wf = get_workflow("dec_bare_workflow")
    assert wf is not None
    assert wf.name == "dec_bare_workflow"
    assert get_workflow("dec_no_such_workflow") is None

    workflows = list_workflows()
    assert {"dec_bare_workflow", "dec_called_workflow", "dec_custom_workflow"} <= set(workflows)
    assert workflows["dec_called_workflow"].name == "dec_called_workflow"

    st = get_step("dec_bare_step")
    assert st is not None
    assert st.name == "dec_bare_step"
    assert st.max_retries == 3  # default
    assert st.retry_delay == "exponential"  # default
    assert get_step("dec_no_such_step") is None

    steps = list_steps()
    assert {"dec_bare_step", "dec_called_step", "dec_custom_name", "dec_charge_card"} <= set(steps)

    # The returned mappings are copies: changing them does not change the registry.
    workflows.clear()
    steps.clear()
    assert "dec_bare_workflow" in list_workflows()
    assert "dec_bare_step" in list_steps()


# -- queue= (routing under the Celery runtime) ------------------------------------------------


def test_queue_options_are_kept_on_the_definitions() -> None:
    @step(queue="gpu.a100", name="routing_embed")
    async def embed() -> None: ...

    class Render(Step):
        name = "routing_render"
        queue = "render:4k"

        async def execute(self) -> None: ...

    @workflow(queue="billing-eu", name="routing_invoice")
    async def invoice() -> None: ...

    assert embed.__step__.queue == "gpu.a100"  # type: ignore[attr-defined]
    assert Render.__step__.queue == "render:4k"
    assert invoice.__workflow__.queue == "billing-eu"  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", ["", "gpu/1", "has space", ".hidden", "x" * 201, 7])
def test_bad_queue_names_fail_at_decoration_naming_the_value(bad: Any) -> None:
    expected = re.escape(f"step 'routing_bad': invalid queue name {bad!r}")
    with pytest.raises(DefinitionError, match=expected):

        @step(name="routing_bad", queue=bad)
        async def bad_step() -> None: ...

    with pytest.raises(DefinitionError, match="workflow 'routing_bad': invalid queue name"):

        @workflow(name="routing_bad", queue=bad)
        async def bad_flow() -> None: ...


def test_queue_and_force_local_contradict() -> None:
    with pytest.raises(DefinitionError, match="queue='gpu' and force_local=True contradict"):

        @step(name="routing_local", queue="gpu", force_local=True)
        async def local() -> None: ...
