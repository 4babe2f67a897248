"""PyWorkflow: durable, event-sourced workflows written as plain ``async`` functions.

Quick start::

    from pyworkflow import workflow, step, sleep, start

    @step()
    async def greet(name: str) -> str:
        return f"hello {name}"

    @workflow()
    async def hello(name: str) -> str:
        text = await greet(name)
        await sleep("5s")          # durable: the run suspends, no worker is held
        return text

    run_id = await start(hello, "ada")   # embedded default: local runtime + SQLite
"""

from pyworkflow.api import (
    ResumeResult,
    cancel_workflow,
    get_workflow_chain,
    get_workflow_events,
    get_workflow_run,
    get_workflow_run_by_idempotency_key,
    list_hooks,
    resume,
    resume_hook,
    start,
    wait_for_run,
)
from pyworkflow.context import (
    StepInfo,
    WorkflowContext,
    current_context,
    current_step_info,
    get_context,
    has_context,
)
from pyworkflow.context.step_context import (
    StepContext,
    get_step_context,
    has_step_context,
    set_step_context,
)
from pyworkflow.core.config import (
    PyWorkflowConfig,
    configure,
    configure_from_yaml,
    discover_workflows,
    get_config,
    get_storage,
    reset_config,
)
from pyworkflow.core.exceptions import (
    CancellationError,
    ChildWorkflowError,
    ChildWorkflowFailedError,
    ConfigurationError,
    DefinitionError,
    EventLimitExceededError,
    FatalError,
    HookAlreadyReceivedError,
    HookExpiredError,
    HookNotFoundError,
    InvalidTokenError,
    MaxNestingDepthError,
    NonDeterminismError,
    NotFoundError,
    PyWorkflowError,
    RetryableError,
    RunAlreadyExistsError,
    RunNotFoundError,
    ScheduleNotFoundError,
    SequenceConflictError,
    SerializationError,
    StepFailedError,
    StepNotFoundError,
    StepTimeoutError,
    StorageError,
    WorkflowAlreadyRunningError,
    WorkflowError,
    WorkflowNotFoundError,
    WorkflowTimeoutError,
)
from pyworkflow.core.registry import get_step, get_workflow, list_steps, list_workflows
from pyworkflow.core.step import Step, step
from pyworkflow.core.workflow import workflow
from pyworkflow.observability import configure_logging, get_logger
from pyworkflow.primitives import (
    ChildWorkflowHandle,
    TypedHook,
    continue_as_new,
    define_hook,
    hook,
    shield,
    sleep,
    start_child_workflow,
)
from pyworkflow.runtime import Runtime, get_runtime, register_runtime
from pyworkflow.runtime.local import LocalRuntime
from pyworkflow.scheduler import Schedule, ScheduleEntry
from pyworkflow.schedules import (
    CalendarSpec,
    LocalScheduler,
    OverlapPolicy,
    ScheduleSpec,
    activate_scheduled_workflows,
    backfill_schedule,
    create_schedule,
    delete_schedule,
    get_schedule,
    list_schedules,
    pause_schedule,
    resume_schedule,
    scheduled_workflow,
    trigger_schedule,
    update_schedule,
)
from pyworkflow.storage.schemas import (
    Event,
    EventType,
    HookRecord,
    HookStatus,
    RunStatus,
    ScheduleStatus,
    StepStatus,
    WorkflowRun,
)

__version__ = "0.1.0"

__all__ = [
    "CalendarSpec",
    "CancellationError",
    "ChildWorkflowError",
    "ChildWorkflowFailedError",
    "ChildWorkflowHandle",
    "ConfigurationError",
    "DefinitionError",
    "Event",
    "EventLimitExceededError",
    "EventType",
    "FatalError",
    "HookAlreadyReceivedError",
    "HookExpiredError",
    "HookNotFoundError",
    "HookRecord",
    "HookStatus",
    "InvalidTokenError",
    "LocalRuntime",
    "LocalScheduler",
    "MaxNestingDepthError",
    "NonDeterminismError",
    "NotFoundError",
    "OverlapPolicy",
    "PyWorkflowConfig",
    "PyWorkflowError",
    "ResumeResult",
    "RetryableError",
    "RunAlreadyExistsError",
    "RunNotFoundError",
    "RunStatus",
    "Runtime",
    "Schedule",
    "ScheduleEntry",
    "ScheduleNotFoundError",
    "ScheduleSpec",
    "ScheduleStatus",
    "SequenceConflictError",
    "SerializationError",
    "Step",
    "StepContext",
    "StepFailedError",
    "StepInfo",
    "StepNotFoundError",
    "StepStatus",
    "StepTimeoutError",
    "StorageError",
    "TypedHook",
    "WorkflowAlreadyRunningError",
    "WorkflowContext",
    "WorkflowError",
    "WorkflowNotFoundError",
    "WorkflowRun",
    "WorkflowTimeoutError",
    "activate_scheduled_workflows",
    "backfill_schedule",
    "cancel_workflow",
    "configure",
    "configure_from_yaml",
    "configure_logging",
    "continue_as_new",
    "create_schedule",
    "current_context",
    "current_step_info",
    "define_hook",
    "delete_schedule",
    "discover_workflows",
    "get_config",
    "get_context",
    "get_logger",
    "get_runtime",
    "get_schedule",
    "get_step",
    "get_step_context",
    "get_storage",
    "get_workflow",
    "get_workflow_chain",
    "get_workflow_events",
    "get_workflow_run",
    "get_workflow_run_by_idempotency_key",
    "has_context",
    "has_step_context",
    "hook",
    "list_hooks",
    "list_schedules",
    "list_steps",
    "list_workflows",
    "pause_schedule",
    "register_runtime",
    "reset_config",
    "resume",
    "resume_hook",
    "resume_schedule",
    "scheduled_workflow",
    "set_step_context",
    "shield",
    "sleep",
    "start",
    "start_child_workflow",
    "step",
    "trigger_schedule",
    "update_schedule",
    "wait_for_run",
    "workflow",
]
