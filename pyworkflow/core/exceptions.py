"""The PyWorkflow error tree.

Everything the library raises on purpose derives from :class:`WorkflowError`
(``PyWorkflowError`` is the same class under its long name)::

    WorkflowError
    +-- FatalError                 user: fail the step/run now, never retry
    +-- RetryableError             user: retry this step (optionally after ``retry_after``)
    +-- CancellationError          the run was cancelled
    +-- NotFoundError              nothing has this name / id (also a ``LookupError``)
    |   +-- WorkflowNotFoundError  no workflow of that name is registered in this process
    |   |   +-- RunNotFoundError   no stored run has that id
    |   |   +-- StepNotFoundError  no step of that name is registered in this process
    |   +-- HookNotFoundError      no hook has that token
    |   +-- QueryNotFoundError     the run registered no query handler of that name
    |   +-- ScheduleNotFoundError  no schedule has that id
    +-- DefinitionError            bad decorator option, name conflict (also a ``ValueError``)
    +-- WorkflowAlreadyRunningError
    +-- RunAlreadyExistsError      an explicit ``run_id`` is already taken
    +-- HookExpiredError, HookAlreadyReceivedError, InvalidTokenError
    +-- RunEndedError              a signal sent to a run that has ended
    +-- QueryFailedError           a query's handler raised, or the run cannot be replayed
    +-- SignalTimeoutError         wait_for_signal's timeout passed (also a TimeoutError)
    +-- HookPayloadError           a payload does not match the hook's stored schema (ValueError)
    +-- ChildWorkflowError
    |   +-- ChildWorkflowFailedError
    |   +-- MaxNestingDepthError
    +-- ConfigurationError         bad option, unknown storage URL, missing extra (a ValueError)
    +-- SerializationError         a value that cannot be stored
    |   +-- PayloadTooLargeError   a value over the payload size limit (nothing is written)
    +-- EventLimitExceededError    a run's history passed ``event_hard_limit``
    +-- NonDeterminismError        replayed code asked for a different operation
    +-- WorkflowTimeoutError       a run passed its ``max_duration``
    +-- StepTimeoutError           a step attempt passed its ``timeout`` (retryable)
    +-- StepFailedError            a step failed and its original error cannot be rebuilt
    +-- StorageError
        +-- SequenceConflictError  another writer appended to the run first
        +-- StorageUnavailableError  storage did not answer or failed a call (transient)
        +-- HistoryCorruptedError  a run's stored events cannot be read back as written

``RunNotFoundError`` and ``StepNotFoundError`` derive from ``WorkflowNotFoundError`` so
code written as ``except WorkflowNotFoundError`` keeps catching them; catch the precise
class to tell "this run does not exist" from "this code is not deployed here".

Internal control flow (:class:`SuspensionSignal`, :class:`ContinueAsNewSignal`) derives
from ``BaseException`` so a user's ``except Exception`` cannot swallow it.

All errors survive ``pickle`` (they cross process boundaries and the event log): each
keeps its constructor arguments in ``args``/attributes and rebuilds through ``__reduce__``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any


class WorkflowError(Exception):
    """Root of every error PyWorkflow raises on purpose."""

    def __init__(self, message: str = "", **metadata: Any) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = metadata

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (type(self), self.message, dict(self.__dict__)))

    def __str__(self) -> str:
        return self.message


def _rebuild_error(cls: type[WorkflowError], message: str, state: dict[str, Any]) -> Exception:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


PyWorkflowError = WorkflowError


class FatalError(WorkflowError):
    """Raised by user code to fail a step (and, unless caught, its run) without retrying."""


class RetryableError(WorkflowError):
    """Raised by user code to ask for a retry, optionally after ``retry_after``.

    ``retry_after`` accepts anything :func:`pyworkflow.utils.duration.parse_duration` does
    (``"30s"``, seconds, a ``timedelta``) and overrides the step's ``retry_delay`` for
    this attempt.
    """

    def __init__(
        self,
        message: str = "",
        retry_after: str | int | float | timedelta | None = None,
        **metadata: Any,
    ) -> None:
        super().__init__(message, **metadata)
        self.retry_after = retry_after


class CancellationError(WorkflowError):
    """The run was cancelled; raised inside the workflow at its next durable operation."""

    def __init__(self, message: str = "Workflow was cancelled", reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class NotFoundError(WorkflowError, LookupError):
    """Root of the not-found family: nothing has this name, id or token.

    Also a ``LookupError``, so ``except LookupError`` works too.
    """


class WorkflowNotFoundError(NotFoundError):
    """No workflow of this name is registered in this process (its code is not here).

    Base of :class:`RunNotFoundError` and :class:`StepNotFoundError`.
    """


class RunNotFoundError(WorkflowNotFoundError):
    """No stored run has this id."""


class StepNotFoundError(WorkflowNotFoundError):
    """No step of this name is registered in this process (its code is not here)."""


class DefinitionError(WorkflowError, ValueError):
    """A workflow, step, hook or schedule definition is invalid: a bad decorator option,
    or a name already registered by another function.

    Raised at import time (when the decorator runs). Also a ``ValueError``.
    """


class WorkflowAlreadyRunningError(WorkflowError):
    """The run is already being executed by another worker or process."""


class RunAlreadyExistsError(WorkflowError):
    """``start(..., run_id=...)`` named a run id that is already stored."""


class QueryNotFoundError(NotFoundError):
    """The run registered no query handler of that name."""


class HookNotFoundError(NotFoundError):
    """No hook has this token."""


class ScheduleNotFoundError(NotFoundError):
    """No schedule has this id."""


class HookExpiredError(WorkflowError):
    """The hook's timeout passed before a payload arrived."""


class SignalTimeoutError(WorkflowError, TimeoutError):
    """``wait_for_signal`` waited its whole timeout and no signal of that name came."""


class QueryFailedError(WorkflowError):
    """A query could not be answered: the handler raised, its answer is not JSON, or the
    run cannot be replayed by the code here (the message says which)."""


class RunEndedError(WorkflowError):
    """The run has already ended: it takes no more signals."""


class HookAlreadyReceivedError(WorkflowError):
    """The hook already received its payload (tokens are single-use)."""


class InvalidTokenError(WorkflowError):
    """The hook token is malformed."""


class HookPayloadError(WorkflowError, ValueError):
    """A payload does not match the JSON Schema the hook stored; nothing was written and
    the hook stays open.

    Raised where the hook's Pydantic model is not importable (the delivering process does
    not have the workflow's code), so the schema stored with the hook is the contract.

    Attributes:
        hook_id: the hook's operation id (``hook:approval#1``).
        errors: one ``{"path": ..., "message": ...}`` per violation; ``path`` is the
            location in the payload (``approved``, ``items/0/qty``; ``""`` for the whole
            payload).
    """

    def __init__(
        self,
        message: str = "",
        *,
        hook_id: str | None = None,
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.hook_id = hook_id
        self.errors = list(errors or [])


class ChildWorkflowError(WorkflowError):
    """Base for errors about child workflows."""


class ChildWorkflowFailedError(ChildWorkflowError):
    """A child workflow ended ``failed``."""


class MaxNestingDepthError(ChildWorkflowError):
    """Starting this child would exceed the configured nesting limit."""


class ConfigurationError(WorkflowError, ValueError):
    """A configuration option, storage URL or required extra is wrong or missing.

    Also a ``ValueError``, so ``except ValueError`` around ``configure()`` works too.
    """


class SerializationError(WorkflowError):
    """A value cannot be encoded for storage (or a stored value cannot be decoded)."""


class PayloadTooLargeError(SerializationError):
    """A value to be stored is larger than the payload limit; nothing was written.

    The limit is the ``max_payload_bytes`` option (default 2 MiB), or the storage
    server's own limit when that is lower (MySQL's ``max_allowed_packet``).

    Attributes:
        field: what was being stored (``"input_payload of run 'run_1'"``).
        size: its size in bytes of UTF-8 JSON text.
        limit: the limit it exceeded, in bytes.
    """

    def __init__(
        self,
        message: str = "",
        *,
        field: str | None = None,
        size: int | None = None,
        limit: int | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.size = size
        self.limit = limit


class EventLimitExceededError(WorkflowError):
    """The run's event log reached ``event_hard_limit``."""


class NonDeterminismError(WorkflowError):
    """Replayed workflow code asked for a different durable operation than the history holds."""

    def __init__(
        self,
        run_id: str,
        position: int,
        expected: str | None,
        found: str | None,
        sequence: int | None = None,
    ) -> None:
        where = f" (event sequence {sequence})" if sequence is not None else ""
        message = (
            f"Non-deterministic workflow run {run_id!r}: at operation #{position + 1}{where} the "
            f"history recorded {expected!r} but the code now asks for {found!r}. The workflow "
            "code changed in a way that is incompatible with this run's recorded history."
        )
        super().__init__(message)
        self.run_id = run_id
        self.position = position
        self.expected = expected
        self.found = found
        self.sequence = sequence


class WorkflowTimeoutError(WorkflowError):
    """The run exceeded its workflow ``max_duration``."""


class StepTimeoutError(WorkflowError):
    """A step attempt exceeded its ``timeout``; retried like any retryable failure."""


class StepFailedError(WorkflowError):
    """A step failed and its original exception could not be rebuilt from the log.

    ``error_type`` holds the original exception's qualified type name.
    """

    def __init__(self, message: str = "", error_type: str | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type


class StorageError(WorkflowError):
    """A storage backend failed in a way the engine can name."""


class SequenceConflictError(StorageError):
    """Another writer appended to the run's event log first (expected sequence mismatch)."""


class HistoryCorruptedError(StorageError):
    """A run's stored history cannot be replayed as it is: an event that cannot be
    decoded, of an unknown type, or a gap in the sequence numbers.

    The run is parked, not failed: its ``error`` says why, runtimes leave it alone, and
    ``resume()`` tries again once the history is repaired (or once the code that knows a
    newer event type is deployed).

    Attributes:
        run_id: the run.
        sequence: the first sequence number that is wrong (``None`` if unknown).
        reason: what is wrong there.
    """

    def __init__(self, run_id: str, sequence: int | None, reason: str) -> None:
        where = f"at sequence {sequence}" if sequence is not None else "in its events"
        super().__init__(
            f"history of run {run_id!r} is corrupted {where}: {reason}",
            run_id=run_id,
            sequence=sequence,
            reason=reason,
        )
        self.run_id, self.sequence, self.reason = run_id, sequence, reason


class StorageUnavailableError(StorageError):
    """Storage did not answer, or failed a call in a way a later retry may not.

    An infrastructure error, never a workflow's: the engine stops the affected execution
    and the run continues from storage once it answers. Raised to callers of the public
    API (e.g. ``start()`` when the run could not be stored) with what is known of the
    outcome in its message.
    """


class ContinueAsNewSignal(BaseException):  # noqa: N818 - a signal, not an error
    """Internal: ends the run as ``continued_as_new`` and starts a fresh one with these
    arguments (raised by :func:`pyworkflow.continue_as_new`)."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__("continue as new")
        self.args_ = args
        self.kwargs = kwargs


class SuspensionSignal(BaseException):  # noqa: N818 - a signal, not an error
    """Internal: unwinds a workflow coroutine so the run can be stored ``suspended``.

    Derives from ``BaseException`` so user ``except Exception`` blocks never swallow it.
    ``wake_at`` is the earliest time the run should be resumed (``None``: only an
    external event resumes it).
    """

    def __init__(self, reason: str, wake_at: datetime | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wake_at = wake_at
