"""The records storage keeps: runs, events, and the status enums.

These shapes live at the bottom of the package (storage imports nothing above it), so
backends, the engine and the public API all share one definition.

Status and event-type enums are ``str`` enums: ``run.status == "completed"`` and
``run.status.value == "completed"`` both hold.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, Self

from pydantic import BaseModel, ConfigDict

from pyworkflow.core.exceptions import HistoryCorruptedError
from pyworkflow.serialization import loads
from pyworkflow.utils.ids import unique_id


def utcnow() -> datetime:
    """Timezone-aware current UTC time (the only clock storage and engine use)."""
    return datetime.now(UTC)


class RunStatus(StrEnum):
    """Lifecycle of a workflow run."""

    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    CONTINUED_AS_NEW = "continued_as_new"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.CONTINUED_AS_NEW}
)


class StepStatus(StrEnum):
    """Outcome of a step as seen in its events."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    CANCELLED = "cancelled"


class EventType(StrEnum):
    """Every kind of event a run's log can hold (dotted string values)."""

    WORKFLOW_STARTED = "workflow.started"
    WORKFLOW_COMPLETED = "workflow.completed"
    WORKFLOW_FAILED = "workflow.failed"
    WORKFLOW_SUSPENDED = "workflow.suspended"
    WORKFLOW_RESUMED = "workflow.resumed"
    WORKFLOW_INTERRUPTED = "workflow.interrupted"
    WORKFLOW_CANCELLED = "workflow.cancelled"
    WORKFLOW_CONTINUED_AS_NEW = "workflow.continued_as_new"
    STEP_STARTED = "step.started"
    STEP_COMPLETED = "step.completed"
    STEP_FAILED = "step.failed"
    STEP_RETRYING = "step.retrying"
    STEP_CANCELLED = "step.cancelled"
    SLEEP_STARTED = "sleep.started"
    SLEEP_COMPLETED = "sleep.completed"
    HOOK_CREATED = "hook.created"
    HOOK_RECEIVED = "hook.received"
    HOOK_EXPIRED = "hook.expired"
    HOOK_DISPOSED = "hook.disposed"
    CANCELLATION_REQUESTED = "cancellation.requested"
    STEP_CONTEXT_SET = "step_context.set"
    CHILD_WORKFLOW_STARTED = "child_workflow.started"
    CHILD_WORKFLOW_COMPLETED = "child_workflow.completed"
    CHILD_WORKFLOW_FAILED = "child_workflow.failed"
    CHILD_WORKFLOW_CANCELLED = "child_workflow.cancelled"
    PATCH_APPLIED = "patch.applied"
    SIGNAL_RECEIVED = "signal.received"
    SIGNAL_WAITING = "signal.waiting"
    SIGNAL_CONSUMED = "signal.consumed"
    SIGNAL_TIMED_OUT = "signal.timed_out"
    SCHEDULE_TRIGGERED = "schedule.triggered"
    SCHEDULE_SKIPPED = "schedule.skipped"
    LOG_DEBUG = "log.debug"
    LOG_INFO = "log.info"
    LOG_WARNING = "log.warning"
    LOG_ERROR = "log.error"


_EVENT_TYPES: dict[str, EventType] = {t.value: t for t in EventType}

# Keys of an event's stored record (``Event.to_dict``): sequence, id, type, timestamp, data.
EVENT_RECORD_KEYS = ("sequence", "event_id", "type", "timestamp", "data")


# Event ids: one is made for every event on the hot path (see pyworkflow.utils.ids).
_new_id = unique_id


@dataclass(slots=True)
class Event:
    """One entry of a run's append-only log.

    ``sequence`` starts at 1 for every run and has no gaps. ``data`` holds only
    JSON-native values (results and errors inside it are already encoded).
    """

    run_id: str
    type: EventType
    data: dict[str, Any] = field(default_factory=dict)
    sequence: int = 0
    timestamp: datetime = field(default_factory=utcnow)
    event_id: str = field(default_factory=_new_id)

    @staticmethod
    def parse_type(value: str) -> EventType:
        """Map a stored type string back to its :class:`EventType`."""
        try:
            return _EVENT_TYPES[value]
        except KeyError:
            raise ValueError(f"unknown event type {value!r}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (used by the file backend, golden histories and the CLI)."""
        return {
            "event_id": self.event_id,
            "run_id": self.run_id,
            "sequence": self.sequence,
            "type": self.type.value,
            "timestamp": self.timestamp.isoformat(),
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        return cls(
            run_id=raw["run_id"],
            type=cls.parse_type(raw["type"]),
            data=raw.get("data") or {},
            sequence=int(raw["sequence"]),
            timestamp=datetime.fromisoformat(raw["timestamp"]),
            event_id=raw.get("event_id") or _new_id(),
        )

    @staticmethod
    def from_stored(
        run_id: str,
        sequence: Any,
        event_id: Any,
        type_text: Any,
        timestamp: Any,
        data: Any,
        to_datetime: Callable[[Any], datetime],
        position: int | None = None,
    ) -> Event:
        """The event of one stored row, as a backend read it: the one decoding rule of
        every backend's ``get_events``.

        Args:
            run_id: the run whose log is read.
            sequence: the stored sequence (must be a positive ``int``).
            event_id: the stored event id.
            type_text: the stored event type string.
            timestamp: the stored timestamp, as ``to_datetime`` takes it.
            data: the event data: JSON text (``str``/``bytes``) or an already parsed dict.
            to_datetime: the backend's stored-timestamp converter.
            position: the sequence the row must have, for backends that read by position
                (its place in a log); named in the error when the stored one is unusable.

        Raises:
            HistoryCorruptedError: the row cannot be decoded (data not a JSON object, an
                unknown event type, e.g. one written by a newer version, a bad sequence
                or timestamp).
        """
        # Hot path (every replay decodes the whole log): one constructor call and a few
        # type checks; the reason is worked out only when something is wrong.
        try:
            event = Event(
                run_id,
                _EVENT_TYPES[type_text],
                data if type(data) is dict else json.loads(data),
                sequence,
                to_datetime(timestamp),
                event_id,
            )
        except Exception:  # any failure: explained below, off the hot path
            event = None
        if (
            event is not None
            and type(event.data) is dict
            and type(sequence) is int
            and sequence > 0
            and (position is None or sequence == position)
        ):
            return event
        reason = _row_problem(sequence, type_text, data, timestamp, to_datetime, position)
        if position is None and type(sequence) is int and sequence > 0:
            position = sequence
        raise HistoryCorruptedError(run_id, position, reason)

    @staticmethod
    def from_stored_record(
        run_id: str,
        record: Any,
        position: int,
        to_datetime: Callable[[Any], datetime],
        names: tuple[str, str, str, str, str] = EVENT_RECORD_KEYS,
    ) -> Event:
        """The event of one stored record holding all its fields (a JSON line of the
        file backend, an item of a Redis list), by :meth:`from_stored`'s rules.

        Args:
            run_id: the run whose log is read.
            record: the record as JSON text, or already parsed.
            position: the sequence the record must have (its place in the log).
            to_datetime: the backend's stored-timestamp converter.
            names: the record's keys of sequence, event id, type, timestamp and data.

        Raises:
            HistoryCorruptedError: the record is not a JSON object, or a field is bad.
        """
        if type(record) is not dict:
            text = record
            try:
                record = json.loads(text)
            except (TypeError, ValueError):
                record = None  # explained below, from the text
            if type(record) is not dict:
                problem = _object_problem("stored event", text) or "not a JSON object"
                raise HistoryCorruptedError(run_id, position, problem)
        sequence, event_id, type_text, timestamp, data = names
        get = record.get
        return Event.from_stored(
            run_id,
            get(sequence),
            get(event_id) or _new_id(),
            get(type_text),
            get(timestamp),
            get(data),
            to_datetime,
            position,
        )


def _row_problem(
    sequence: Any,
    type_text: Any,
    data: Any,
    timestamp: Any,
    to_datetime: Callable[[Any], datetime],
    position: int | None,
) -> str:
    """Why a stored event row does not decode (the cold path of :meth:`Event.from_stored`).

    Names the type and shows short reprs of a bad sequence or timestamp, never the data
    (it holds workflow payloads).
    """
    if type(sequence) is not int or sequence < 1:
        return f"stored sequence {_short(sequence)} is not a positive integer"
    if position is not None and sequence != position:
        return f"the event stored there has sequence {sequence}"
    try:
        known = type_text in _EVENT_TYPES
    except TypeError:  # unhashable (a JSON list or object)
        known = False
    if type_text is None:
        return "event type is missing"
    if not known:
        return (
            f"unknown event type {_short(type_text)} (written by a newer version of "
            "pyworkflow, or damaged)"
        )
    problem = _object_problem("event data", data)
    if problem is not None:
        return problem
    try:
        to_datetime(timestamp)
    except Exception:  # any failure means the same here
        return (
            "timestamp is missing"
            if timestamp is None
            else f"invalid timestamp {_short(timestamp)}"
        )
    return "the stored event cannot be decoded"


def _object_problem(what: str, value: Any) -> str | None:
    """Why ``value`` (JSON text, or a value parsed from JSON) is not a JSON object
    (``None`` if it is one)."""
    if value is None:
        return f"{what} is missing"
    if isinstance(value, str | bytes | bytearray):
        try:
            value = json.loads(value)
        except ValueError as exc:  # decoder messages name a position, never the text
            return f"{what} is not valid JSON ({exc})"
    if type(value) is dict:
        return None
    return f"{what} is a JSON {_JSON_KINDS.get(type(value), 'value')}, not an object"


_JSON_KINDS: dict[type, str] = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


@dataclass(slots=True)
class WorkflowRun:
    """The stored projection of one run (rebuildable from its events).

    ``input_payload``, ``result_payload`` and ``context_payload`` hold encoded JSON
    text; the ``input_args``, ``input_kwargs``, ``result`` and ``context`` properties
    decode them on access, so listing many runs never decodes what nobody reads.
    """

    run_id: str
    workflow_name: str
    status: RunStatus = RunStatus.PENDING
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    input_payload: str | None = None
    result_payload: str | None = None
    error: str | None = None
    idempotency_key: str | None = None
    max_duration: str | None = None
    deadline_at: datetime | None = None
    context_payload: str | None = None
    tags: list[str] = field(default_factory=list)
    recovery_attempts: int = 0
    max_recovery_attempts: int = 3
    recover_on_worker_loss: bool = True
    parent_run_id: str | None = None
    nesting_depth: int = 0
    continued_from_run_id: str | None = None
    continued_to_run_id: str | None = None
    wake_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    cancel_reason: str | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    last_sequence: int = 0
    # The broker queue of the run's workflow messages (Celery); None: the default queue.
    # Stored so that senders without the workflow's code (scheduler, CLI, webhooks) route.
    queue: str | None = None
    # The trace context the run's spans continue (W3C traceparent/tracestate as JSON
    # text, set when the run is created: the caller's); None: none (or stored before).
    trace_context: str | None = None

    @property
    def input_args(self) -> tuple[Any, ...]:
        if not self.input_payload:
            return ()
        return tuple(loads(self.input_payload).get("args", ()))

    @property
    def input_kwargs(self) -> dict[str, Any]:
        if not self.input_payload:
            return {}
        return dict(loads(self.input_payload).get("kwargs", {}))

    @property
    def result(self) -> Any:
        return None if self.result_payload is None else loads(self.result_payload)

    @property
    def context(self) -> dict[str, Any]:
        return {} if not self.context_payload else dict(loads(self.context_payload))

    def copy(self) -> WorkflowRun:
        """A shallow copy whose ``tags`` list is not shared (memory backend isolation)."""
        clone = copy.copy(self)
        clone.tags = list(self.tags)
        return clone

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the file backend's records, exported history files)."""
        raw: dict[str, Any] = {}
        for name in _RUN_FIELDS:
            value = getattr(self, name)
            if name in _RUN_DATETIME_FIELDS and value is not None:
                value = value.isoformat()
            elif name == "status":
                value = RunStatus(value).value
            elif name == "tags":
                value = list(value)
            raw[name] = value
        return raw

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> WorkflowRun:
        """The run of a :meth:`to_dict` record; keys it does not know (a newer version's
        fields) are ignored, missing ones take their defaults."""
        values = {name: raw[name] for name in _RUN_FIELDS if name in raw}
        for name in _RUN_DATETIME_FIELDS:
            if values.get(name) is not None:
                values[name] = datetime.fromisoformat(values[name])
        values["status"] = RunStatus(values["status"])
        return cls(**values)


_RUN_FIELDS = tuple(f.name for f in dataclasses.fields(WorkflowRun))
_RUN_DATETIME_FIELDS = frozenset(
    f.name for f in dataclasses.fields(WorkflowRun) if "datetime" in str(f.type)
)


class HookStatus(StrEnum):
    """Lifecycle of a hook (a point where a run waits for an external payload)."""

    PENDING = "pending"
    RECEIVED = "received"
    EXPIRED = "expired"
    DISPOSED = "disposed"


@dataclass(slots=True)
class HookRecord:
    """A hook a run created: how an outside caller finds and resumes it.

    ``token_hash`` (sha256 hex of the token) is the lookup key. ``token`` is ``""``: a
    token is derived again from the hook's identity when needed, never stored (hooks
    created by earlier versions kept their random token here). Neither ever appears in
    logs; the event log holds only the hash.
    ``payload`` is the received payload, encoded JSON text.
    """

    token_hash: str
    run_id: str
    hook_id: str
    name: str
    token: str = ""
    status: HookStatus = HookStatus.PENDING
    created_at: datetime = field(default_factory=utcnow)
    expires_at: datetime | None = None
    received_at: datetime | None = None
    payload: str | None = None
    schema: str | None = None  # JSON schema of the expected payload, when typed

    def copy(self) -> HookRecord:
        return copy.copy(self)


@dataclass(slots=True)
class SignalRecord:
    """A message sent to a run's inbox (``send_signal``), waiting for the run to take it.

    ``sequence`` numbers a run's signals 1, 2, ... in the order they were stored, which
    is the order the run receives them. ``signal_id`` is the sender's id for this message:
    a send repeated with the same id (a retry after a timeout) stores nothing new.
    ``payload`` is the message, encoded JSON text.
    """

    run_id: str
    sequence: int
    name: str
    payload: str
    signal_id: str
    sent_at: datetime = field(default_factory=utcnow)

    def copy(self) -> SignalRecord:
        return copy.copy(self)


@dataclass(slots=True)
class GateRecord:
    """A flow-control gate as storage keeps it: the state one concurrency limit (its
    slot holders and queue) or one rate limit (its next free start time) shares across
    processes.

    Storage keeps ``data`` (JSON text the engine reads, see
    :mod:`pyworkflow.engine.flow`) verbatim; ``version`` makes every change a
    compare-and-set, which is what makes a limit hold across processes: of two
    processes that read one version, only one writes the next.
    """

    key: str
    data: str = "{}"
    version: int = 0  # 0: never stored; storage sets 1 on insert, +1 on each update
    updated_at: datetime = field(default_factory=utcnow)

    def copy(self) -> GateRecord:
        return copy.copy(self)


@dataclass(slots=True)
class WorkerRecord:
    """A process that executes runs, as the worker registry keeps it.

    ``worker_id`` is the process's lease-owner id (what a run it executes stores as
    ``lease_owner``). The process writes its record again every beat; a record whose
    ``last_beat`` is older than the lease TTL belongs to a process that stopped (killed,
    frozen, or cut off from storage): the runs it held are recovered without waiting for
    their leases. ``runs`` are the runs it was working on at its last beat (executing,
    or running one of their dispatched steps): while it beats, nobody takes them.

    Storage keeps ``worker_id`` and ``last_beat`` as fields of their own (the key, and
    what stale records are found by) and everything else as the JSON text of
    :meth:`data_json`, read back by :meth:`from_stored`.
    """

    worker_id: str
    host: str = ""
    pid: int = 0
    kind: str = "celery"  # what runs it: "celery" (a pool process), "local", ...
    queues: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    started_at: datetime = field(default_factory=utcnow)
    last_beat: datetime = field(default_factory=utcnow)
    version: str = ""  # the pyworkflow version it runs
    # The workflows registered in it (its code): "runs why" names a workflow that no
    # live worker can execute. Empty in records written before it was kept.
    workflows: list[str] = field(default_factory=list)

    def copy(self) -> WorkerRecord:
        return dataclasses.replace(
            self, queues=list(self.queues), runs=list(self.runs), workflows=list(self.workflows)
        )

    def data_json(self) -> str:
        """Every field but ``worker_id`` and ``last_beat``, as JSON text."""
        return json.dumps(
            {
                "host": self.host,
                "pid": self.pid,
                "kind": self.kind,
                "queues": self.queues,
                "runs": self.runs,
                "started_at": self.started_at.isoformat(),
                "version": self.version,
                "workflows": self.workflows,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_stored(cls, worker_id: str, last_beat: datetime, data: str | bytes) -> WorkerRecord:
        """A record from its stored parts. ``data`` is validated, not trusted: unknown
        fields are ignored (written by a newer version) and a missing one takes its
        default; a field of the wrong type, or text that is not a JSON object, gives a
        record with no runs (a worker nobody can rely on is treated as holding nothing).
        """
        try:
            parsed = _WorkerData.model_validate_json(data)
        except ValueError:
            parsed = _WorkerData()
        return cls(
            worker_id=worker_id,
            last_beat=_aware(last_beat),
            host=parsed.host,
            pid=parsed.pid,
            kind=parsed.kind,
            queues=list(parsed.queues),
            runs=list(parsed.runs),
            started_at=_aware(parsed.started_at) if parsed.started_at else _aware(last_beat),
            version=parsed.version,
            workflows=list(parsed.workflows),
        )


class _WorkerData(BaseModel):
    """The stored JSON of a WorkerRecord (see :meth:`WorkerRecord.from_stored`)."""

    model_config = ConfigDict(extra="ignore")

    host: str = ""
    pid: int = 0
    kind: str = ""
    queues: list[str] = []
    runs: list[str] = []
    started_at: datetime | None = None
    version: str = ""
    workflows: list[str] = []


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class ScheduleStatus(StrEnum):
    """Whether a schedule fires."""

    ACTIVE = "active"
    PAUSED = "paused"


@dataclass
class ScheduleRecord:
    """A schedule as storage keeps it.

    Only the fields storage filters on are columns; everything else the scheduler needs
    (spec, arguments, overlap policy, recent runs, ...) is the JSON text ``data``, which
    storage stores and returns verbatim. ``version`` makes updates compare-and-set: it
    is what makes two schedulers unable to fire the same tick.
    """

    schedule_id: str
    workflow_name: str
    status: ScheduleStatus = ScheduleStatus.ACTIVE
    next_run_time: datetime | None = None
    data: str = "{}"
    version: int = 0  # 0: never stored; storage sets 1 on insert, +1 on each update
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    def copy(self) -> ScheduleRecord:
        return copy.copy(self)


class VersionedRecord(Protocol):
    """A record the backends save by compare-and-set on ``version`` (a
    :class:`ScheduleRecord`, a :class:`GateRecord`): a save sets the version it stored."""

    version: int

    def copy(self) -> Self: ...


# Columns of WorkflowRun a RunUpdate may change. Backends build SQL from this fixed set
# (never from caller strings), which keeps every statement parameterized.
UPDATABLE_RUN_FIELDS = (
    "status",
    "updated_at",
    "started_at",
    "completed_at",
    "result_payload",
    "error",
    "context_payload",
    "recovery_attempts",
    "continued_to_run_id",
    "wake_at",
    "cancel_requested_at",
    "cancel_reason",
    "lease_owner",
    "lease_expires_at",
)


_UPDATABLE = frozenset(UPDATABLE_RUN_FIELDS)


@dataclass(slots=True)
class RunUpdate:
    """Changes to a run's projection, applied atomically with an event append.

    Only the fields in ``changes`` are written; a key with value ``None`` clears the column.
    """

    changes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.changes.keys() <= _UPDATABLE:
            unknown = set(self.changes) - _UPDATABLE
            raise ValueError(f"RunUpdate cannot change {sorted(unknown)}")

    def apply_to(self, run: WorkflowRun) -> None:
        for name, value in self.changes.items():
            setattr(run, name, value)


__all__ = [
    "EVENT_RECORD_KEYS",
    "Event",
    "EventType",
    "HookRecord",
    "HookStatus",
    "RunStatus",
    "RunUpdate",
    "StepStatus",
    "TERMINAL_STATUSES",
    "UPDATABLE_RUN_FIELDS",
    "WorkflowRun",
    "utcnow",
]
