"""Name -> definition maps for workflows and steps.

Resuming a run in a new process finds its code by the workflow *name* stored in the run,
so names must be unique. Registering a name again with a different function raises
:class:`DefinitionError`; the same function re-imported (same module and qualified name)
replaces the old entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyworkflow.core.exceptions import DefinitionError, StepNotFoundError, WorkflowNotFoundError

if TYPE_CHECKING:
    from pyworkflow.core.step import StepDefinition
    from pyworkflow.core.workflow import WorkflowDefinition

_workflows: dict[str, WorkflowDefinition] = {}
_steps: dict[str, StepDefinition] = {}


def _origin(fn: Any) -> tuple[str, str]:
    return (getattr(fn, "__module__", ""), getattr(fn, "__qualname__", repr(fn)))


def register_workflow(definition: WorkflowDefinition) -> None:
    existing = _workflows.get(definition.name)
    if existing is not None and _origin(existing.func) != _origin(definition.func):
        raise DefinitionError(
            f"workflow name {definition.name!r} is already registered by "
            f"{'.'.join(_origin(existing.func))}; pass a different name=..."
        )
    _workflows[definition.name] = definition


def register_step(definition: StepDefinition) -> None:
    existing = _steps.get(definition.name)
    if existing is not None and _origin(existing.func) != _origin(definition.func):
        raise DefinitionError(
            f"step name {definition.name!r} is already registered by "
            f"{'.'.join(_origin(existing.func))}; pass a different name=..."
        )
    _steps[definition.name] = definition


def get_workflow(name: str) -> WorkflowDefinition | None:
    """The registered workflow called ``name``, or ``None``."""
    return _workflows.get(name)


def find_workflow(name: str) -> WorkflowDefinition | None:
    """The workflow called ``name`` if this process has its code: registered already, or
    once the configured workflow modules are imported; else ``None`` (an operator's
    process often does not have it, and leaves the run to a process that does).

    Raises:
        ConfigurationError: a configured workflow module cannot be imported.
    """
    definition = _workflows.get(name)
    if definition is None:
        # A process resuming stored runs may not have imported their code yet: import
        # the configured workflow modules once, then look again.
        from pyworkflow.core.config import discover_workflows

        discover_workflows()
        definition = _workflows.get(name)
    return definition


def require_workflow(name: str) -> WorkflowDefinition:
    """Like :func:`find_workflow` but raises :class:`WorkflowNotFoundError` with a hint."""
    definition = find_workflow(name)
    if definition is None:
        raise WorkflowNotFoundError(
            f"no workflow named {name!r} is registered in this process; import the module "
            "that defines it (configure(modules=[...]) or the 'module' key of "
            "pyworkflow.config.yaml)"
        )
    return definition


def list_workflows() -> dict[str, WorkflowDefinition]:
    """All registered workflows by name."""
    return dict(_workflows)


def get_step(name: str) -> StepDefinition | None:
    """The registered step called ``name``, or ``None``."""
    return _steps.get(name)


def require_step(name: str) -> StepDefinition:
    """Like :func:`get_step` but imports the configured workflow modules first if needed.

    Raises:
        StepNotFoundError: no step of that name is registered in this process.
    """
    definition = _steps.get(name)
    if definition is None:
        from pyworkflow.core.config import discover_workflows

        discover_workflows()
        definition = _steps.get(name)
    if definition is None:
        raise StepNotFoundError(
            f"step {name!r} is not registered in this process; add the module defining it "
            "to the 'modules' option so workers import it"
        )
    return definition


def list_steps() -> dict[str, StepDefinition]:
    """All registered steps by name."""
    return dict(_steps)
