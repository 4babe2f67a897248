"""The public surface of ``pyworkflow``: ``__all__`` matches the documented list exactly,
every public error belongs to the ``WorkflowError`` tree and survives pickle."""

from __future__ import annotations

import ast
import inspect
import pickle
import re
from pathlib import Path

import pytest

import pyworkflow
from pyworkflow.core import exceptions

ROOT = Path(__file__).resolve().parents[2]

# Written out on purpose: adding or removing a public name must be a visible decision
# (update this set, docs/api.md and, for an error, docs/errors.md together).
EXPECTED_PUBLIC_NAMES = {
    # defining workflows, steps and hooks
    "workflow",
    "step",
    "Step",
    "scheduled_workflow",
    "define_hook",
    "TypedHook",
    "define_signal",
    "get_workflow",
    "list_workflows",
    "get_step",
    "list_steps",
    # starting, inspecting and controlling runs
    "start",
    "start_by_name",
    "resume",
    "wait_for_run",
    "get_workflow_run",
    "get_workflow_run_by_idempotency_key",
    "get_workflow_events",
    "send_signal",
    "set_query_handler",
    "query_workflow",
    "QueryNotFoundError",
    "QueryFailedError",
    "wait_for_signal",
    "SignalRecord",
    "RunEndedError",
    "SignalTimeoutError",
    "get_workflow_chain",
    "cancel_workflow",
    "retry_workflow",
    "resume_hook",
    "PurgeResult",
    "resume_run_hook",
    "ResumeResult",
    "list_hooks",
    "get_hook",
    # inside a workflow or a step
    "sleep",
    "hook",
    "patched",
    "shield",
    "continue_as_new",
    "start_child_workflow",
    "ChildWorkflowHandle",
    "current_context",
    "current_step_info",
    "get_context",
    "has_context",
    "WorkflowContext",
    "StepInfo",
    "StepContext",
    "set_step_context",
    "get_step_context",
    "has_step_context",
    # schedules
    "create_schedule",
    "get_schedule",
    "list_schedules",
    "update_schedule",
    "pause_schedule",
    "purge_runs",
    "resume_schedule",
    "delete_schedule",
    "trigger_schedule",
    "backfill_schedule",
    "activate_scheduled_workflows",
    "LocalScheduler",
    "Schedule",
    "ScheduleEntry",
    "ScheduleSpec",
    "CalendarSpec",
    "OverlapPolicy",
    "ScheduleStatus",
    # configuration, runtimes and logging
    "configure",
    "configure_from_yaml",
    "get_config",
    "reset_config",
    "PyWorkflowConfig",
    "get_storage",
    "discover_workflows",
    "Runtime",
    "LocalRuntime",
    "get_runtime",
    "register_runtime",
    "configure_logging",
    "forward_to_logging",
    "set_log_level",
    "get_logger",
    # records and statuses
    "WorkflowRun",
    "RunStatus",
    "Event",
    "EventType",
    "StepStatus",
    "HookRecord",
    "HookStatus",
    # errors
    "WorkflowError",
    "PyWorkflowError",
    "FatalError",
    "RetryableError",
    "CancellationError",
    "NotFoundError",
    "WorkflowNotFoundError",
    "RunNotFoundError",
    "StepNotFoundError",
    "HookNotFoundError",
    "ScheduleNotFoundError",
    "DefinitionError",
    "WorkflowAlreadyRunningError",
    "RunAlreadyExistsError",
    "HookExpiredError",
    "HistoryCorruptedError",
    "HookAlreadyReceivedError",
    "InvalidTokenError",
    "HookPayloadError",
    "ChildWorkflowError",
    "ChildWorkflowFailedError",
    "MaxNestingDepthError",
    "ConfigurationError",
    "SerializationError",
    "PayloadTooLargeError",
    "EventLimitExceededError",
    "NonDeterminismError",
    "WorkflowTimeoutError",
    "StepTimeoutError",
    "StepFailedError",
    "StorageError",
    "StorageUnavailableError",
    "SequenceConflictError",
}

# Control flow, not errors: BaseException subclasses a user must never catch.
INTERNAL_SIGNALS = {"ContinueAsNewSignal", "SuspensionSignal"}


def _documented_names(page: str) -> set[str]:
    """Names in the first column of every table on ``docs/<page>`` (``| `name` |`` or
    ``| `Name(args)` |``)."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    return set(re.findall(r"^\| `([A-Za-z_][A-Za-z0-9_]*)[`(]", text, flags=re.MULTILINE))


def _public_exceptions() -> dict[str, type[BaseException]]:
    found = {}
    for name in pyworkflow.__all__:
        value = getattr(pyworkflow, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            found[name] = value
    return found


def _tree_classes() -> list[type[BaseException]]:
    """Every exception class defined in ``pyworkflow.core.exceptions`` but the signals."""
    return [
        value
        for name, value in vars(exceptions).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == exceptions.__name__
        and name not in INTERNAL_SIGNALS
    ]


# -- __all__ and its documentation ---------------------------------------------------------


def test_all_is_exactly_the_expected_public_surface() -> None:
    assert set(pyworkflow.__all__) == EXPECTED_PUBLIC_NAMES
    assert len(pyworkflow.__all__) == len(EXPECTED_PUBLIC_NAMES)  # no duplicates


def test_all_is_sorted_and_every_name_exists() -> None:
    assert list(pyworkflow.__all__) == sorted(pyworkflow.__all__)
    missing = [name for name in pyworkflow.__all__ if not hasattr(pyworkflow, name)]
    assert missing == []


def test_docs_api_page_lists_exactly_the_public_surface() -> None:
    documented = _documented_names("api.md")
    assert documented - set(pyworkflow.__all__) == set(), "documented but not exported"
    assert set(pyworkflow.__all__) - documented == set(), "exported but not documented"


def test_every_public_error_has_a_row_in_the_errors_page() -> None:
    documented = _documented_names("errors.md")
    # PyWorkflowError is the same class as WorkflowError (documented in that row).
    undocumented = [n for n in _public_exceptions() if n not in documented | {"PyWorkflowError"}]
    assert undocumented == []
    assert pyworkflow.PyWorkflowError is pyworkflow.WorkflowError


def test_every_class_of_the_error_tree_is_exported() -> None:
    exported = set(_public_exceptions().values())
    assert [cls.__name__ for cls in _tree_classes() if cls not in exported] == []


# -- the error tree ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(_public_exceptions()))
def test_every_public_exception_derives_from_workflow_error(name: str) -> None:
    assert issubclass(getattr(pyworkflow, name), pyworkflow.WorkflowError)


@pytest.mark.parametrize("cls", _tree_classes(), ids=lambda cls: cls.__name__)
def test_every_non_internal_exception_class_derives_from_workflow_error(
    cls: type[BaseException],
) -> None:
    assert issubclass(cls, exceptions.WorkflowError)


def test_internal_signals_stay_outside_exception() -> None:
    for name in INTERNAL_SIGNALS:
        signal = getattr(exceptions, name)
        assert issubclass(signal, BaseException)
        assert not issubclass(signal, Exception)
        assert name not in pyworkflow.__all__


def test_not_found_family() -> None:
    p = pyworkflow
    assert issubclass(p.NotFoundError, p.WorkflowError)
    assert issubclass(p.NotFoundError, LookupError)
    assert issubclass(p.WorkflowNotFoundError, p.NotFoundError)
    assert issubclass(p.RunNotFoundError, p.WorkflowNotFoundError)
    assert issubclass(p.StepNotFoundError, p.WorkflowNotFoundError)
    assert issubclass(p.HookNotFoundError, p.NotFoundError)
    assert issubclass(p.ScheduleNotFoundError, p.NotFoundError)
    # Distinct leaves: an unknown run is not an unknown step, nor the other way round.
    assert not issubclass(p.RunNotFoundError, p.StepNotFoundError)
    assert not issubclass(p.StepNotFoundError, p.RunNotFoundError)
    assert not issubclass(p.HookNotFoundError, p.WorkflowNotFoundError)
    assert not issubclass(p.ScheduleNotFoundError, p.WorkflowNotFoundError)


def test_schedule_not_found_is_a_lookup_error_with_one_identity() -> None:
    from pyworkflow import schedules

    assert issubclass(pyworkflow.ScheduleNotFoundError, LookupError)
    assert schedules.ScheduleNotFoundError is pyworkflow.ScheduleNotFoundError
    assert exceptions.ScheduleNotFoundError is pyworkflow.ScheduleNotFoundError


def test_definition_and_configuration_errors_are_value_errors() -> None:
    assert issubclass(pyworkflow.DefinitionError, ValueError)
    assert issubclass(pyworkflow.DefinitionError, pyworkflow.WorkflowError)
    assert issubclass(pyworkflow.ConfigurationError, ValueError)


def test_exception_docstring_tree_names_every_class() -> None:
    doc = exceptions.__doc__ or ""
    assert [cls.__name__ for cls in _tree_classes() if cls.__name__ not in doc] == []


# -- pickle --------------------------------------------------------------------------------


def _sample(cls: type[BaseException]) -> BaseException:
    if cls is exceptions.NonDeterminismError:
        return cls("run_1", 2, "step:a#1", "step:b#1", sequence=7)
    if cls is exceptions.RetryableError:
        return cls("later", retry_after="5s", code="x")
    if cls is exceptions.CancellationError:
        return cls("stop", reason="user asked")
    if cls is exceptions.StepFailedError:
        return cls("boom", error_type="mod.Boom")
    if cls is exceptions.HistoryCorruptedError:
        return cls("run_1", 4, "unknown event type 'step.exploded'")
    return cls(f"{cls.__name__} message")


@pytest.mark.parametrize("cls", _tree_classes(), ids=lambda cls: cls.__name__)
def test_every_error_survives_a_pickle_round_trip(cls: type[BaseException]) -> None:
    original = _sample(cls)
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is cls
    assert str(copy) == str(original)
    assert copy.__dict__ == original.__dict__


def test_new_errors_keep_metadata_through_pickle() -> None:
    for cls in (
        pyworkflow.NotFoundError,
        pyworkflow.RunNotFoundError,
        pyworkflow.StepNotFoundError,
        pyworkflow.ScheduleNotFoundError,
        pyworkflow.DefinitionError,
    ):
        original = cls("gone", run_id="r1")
        copy = pickle.loads(pickle.dumps(original))
        assert (type(copy), copy.message, copy.metadata) == (cls, "gone", {"run_id": "r1"})
        family = ValueError if cls is pyworkflow.DefinitionError else LookupError
        assert isinstance(copy, family)


# -- the private ContextVar stays private ----------------------------------------------------


def test_only_context_base_imports_the_private_context_var() -> None:
    offenders = []
    for path in sorted((ROOT / "pyworkflow").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and any(a.name == "_current" for a in node.names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
