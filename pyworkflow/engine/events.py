"""Event types, the ``Event`` record, and the data each event type carries.

Data fields (all JSON-native; ``result``/``args`` are encoded by
:mod:`pyworkflow.serialization`, ``error`` by ``encode_error``)::

    workflow.started      workflow_name, args, kwargs, tags
    workflow.resumed      (none)
    workflow.suspended    reason, wake_at (ISO-8601 or null)
    workflow.interrupted  reason, recovery_attempt
    workflow.completed    result
    workflow.failed       error, error_type
    step.started          step_id, step_name, attempt
    step.completed        step_id, step_name, attempt, result
    step.failed           step_id, step_name, attempt, error, will_retry, fatal
    step.retrying         step_id, step_name, attempt (the next one), retry_at, delay_seconds
    sleep.started         sleep_id, name, fire_at, duration_seconds
    sleep.completed       sleep_id
    step_context.set      op_id, context (the encoded StepContext model)
    workflow.continued_as_new  new_run_id
    cancellation.requested     op_id, reason (where the workflow saw CancellationError)
    workflow.cancelled         reason, error
    hook.created               hook_id, name, token_hash, token_hint, expires_at
    hook.received              hook_id, payload (JSON as delivered and validated)
    hook.expired               hook_id
    child_workflow.started     child_id, child_run_id, workflow_name, parent_close_policy
    child_workflow.completed   child_id, child_run_id, result
    child_workflow.failed      child_id, child_run_id, error
    child_workflow.cancelled   child_id, child_run_id, error
    log.<level>           message

``step_id``/``sleep_id`` are operation ids ``kind:name#n`` (``n`` = 1 for the first call
of that name in the run), assigned in the order the code starts the operations.
"""

from pyworkflow.storage.schemas import Event, EventType

# Events that mark the start of a durable operation; their order is the run's
# "operation order" that replay checks for determinism.
OPERATION_START_TYPES = frozenset(
    {
        EventType.STEP_STARTED,
        EventType.SLEEP_STARTED,
        EventType.STEP_CONTEXT_SET,
        EventType.CHILD_WORKFLOW_STARTED,
        EventType.CANCELLATION_REQUESTED,
        EventType.HOOK_CREATED,
    }
)

LOG_EVENT_TYPES = {
    "debug": EventType.LOG_DEBUG,
    "info": EventType.LOG_INFO,
    "warning": EventType.LOG_WARNING,
    "error": EventType.LOG_ERROR,
}

__all__ = ["Event", "EventType", "LOG_EVENT_TYPES", "OPERATION_START_TYPES"]
