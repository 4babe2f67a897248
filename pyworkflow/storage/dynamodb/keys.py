"""Key layout of the DynamoDB table: partition/sort keys of every item kind, the sortable
key strings of the indexes, and the index names (see the package docstring's table)."""

from __future__ import annotations

from datetime import datetime

from pyworkflow.storage.dynamodb.codec import Item, _micros, _s, _sort_key
from pyworkflow.storage.schemas import HookStatus

# Index names (the table's GSIs) and the attributes that carry their keys.
INDEX_CREATED = "runs_by_created"
INDEX_STATUS = "runs_by_status"
INDEX_WORKFLOW = "runs_by_workflow"
INDEX_PARENT = "runs_by_parent"
INDEX_TAG = "runs_by_tag"
INDEX_DUE = "runs_due"
INDEX_HOOKS = "hooks_by_status"
INDEX_CANCEL = "runs_cancel_requested"

_RUN_SK = "META"
_IDEM_SK = "IDEM"
_EVT = "EVT#"
_EVT_END = "EVT$"  # sorts after every "EVT#..." key
_TAG = "TAG#"
_ALL = "RUN"
_DUE = "DUE"
_CANCEL = "CANCEL"
_SEQ_WIDTH = 20
_CHUNK_WIDTH = 5
_HOOK = "HOOK#"
_HOOK_SK = "HOOK"
_HOOKID = "HOOKID#"
_PART = "PART#"
_SCHEDULES_PK = "SCHEDULES"
_SCHEDULE = "SCHEDULE#"
_WORKERS_PK = "WORKERS"
_WORKER = "WORKER#"
_SIGNAL = "SIGNAL#"
_SIGNAL_END = "SIGNAL$"  # sorts after every "SIGNAL#..." key, before "SIGNALID#"
_SIGNALID = "SIGNALID#"
_GATE = "GATE#"
_GATE_SK = "GATE"


# The item that records a table-wide migration as done (no index attributes).
_MIGRATIONS_PK = "MIGRATIONS"
_CANCEL_INDEX_SK = "cancel_index"


def _created_sk(created_at: datetime, run_id: str) -> str:
    return f"{_sort_key(_micros(created_at))}#{run_id}"


def _due_sk(wake_at: datetime, run_id: str) -> str:
    return f"{_sort_key(_micros(wake_at))}#{run_id}"


def _run_pk(run_id: str) -> str:
    return f"RUN#{run_id}"


def _run_key(run_id: str) -> Item:
    return {"PK": {"S": _run_pk(run_id)}, "SK": {"S": _RUN_SK}}


def _event_sk(sequence: int) -> str:
    return f"{_EVT}{sequence:0{_SEQ_WIDTH}d}"


def _signal_sk(sequence: int) -> str:
    return f"{_SIGNAL}{sequence:0{_SEQ_WIDTH}d}"


def _signal_id_key(run_id: str, signal_id: str) -> Item:
    """The item that makes ``signal_id`` unique within its run's inbox (it names the
    signal's sequence)."""
    return {"PK": _s(_run_pk(run_id)), "SK": _s(f"{_SIGNALID}{signal_id}")}


def _hook_pk(token_hash: str) -> str:
    return f"{_HOOK}{token_hash}"


def _hook_key(token_hash: str) -> Item:
    return {"PK": _s(_hook_pk(token_hash)), "SK": _s(_HOOK_SK)}


def _hook_id_key(run_id: str, hook_id: str) -> Item:
    """The item that makes ``hook_id`` unique within its run (it names the hook)."""
    return {"PK": _s(_run_pk(run_id)), "SK": _s(f"{_HOOKID}{hook_id}")}


def _hook_sk(created_at: datetime, token_hash: str) -> str:
    return f"{_sort_key(_micros(created_at))}#{token_hash}"


def _hook_gsi(status: HookStatus | str) -> str:
    return f"H#{HookStatus(status).value}"


def _part_sk(version: str, index: int) -> str:
    return f"{_PART}{version}#{index:0{_CHUNK_WIDTH}d}"


def _schedule_key(schedule_id: str) -> Item:
    return {"PK": _s(_SCHEDULES_PK), "SK": _s(f"{_SCHEDULE}{schedule_id}")}


def _worker_key(worker_id: str) -> Item:
    return {"PK": _s(_WORKERS_PK), "SK": _s(f"{_WORKER}{worker_id}")}


def _gate_key(key: str) -> Item:
    """A gate's item: a partition of its own (a busy gate is a hot item, and a key of up
    to 1,020 bytes fits a partition key but not, with a prefix, a sort key)."""
    return {"PK": _s(f"{_GATE}{key}"), "SK": _s(_GATE_SK)}
