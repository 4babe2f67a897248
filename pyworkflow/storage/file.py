"""File storage: plain JSON files in a directory, for development and small deployments.

Extra: none. URL: ``file:///abs/dir`` or ``file://relative/dir`` (optional ``?fsync=true``).

Features: persistent, and safe for several processes sharing one directory
(``cross_process``) thanks to OS file locks (``filelock``). The files are easy to read
and diff, which makes this backend handy for debugging. Queries (:meth:`list_runs`,
:meth:`list_due_runs`, :meth:`next_wake_time`, :meth:`list_stale_runs`) read every run
file, so they slow down linearly with the number of runs: use SQLite or a server
database beyond a few thousand runs.

Layout under ``base_path``::

    runs/<run_id>.json      the run record, replaced atomically (temp file + os.replace)
    events/<run_id>.jsonl   the event log, one JSON object per line, appended
    signals/<run_id>.jsonl  the run's signal inbox, one signal per line (line n holds
                            sequence n), appended under the run's lock
    keys/<sha256>.json      idempotency index: key -> run_id
    hooks/<token_hash>.json a hook record (listing hooks scans this folder)
    schedules/<id>.json     a schedule record, replaced atomically under a striped
                            per-schedule lock (listing schedules scans this folder)
    workers/<id>.json       a worker's registry record (worker_id, last_beat, data),
                            replaced atomically at each beat (listing scans this folder)
    gates/<sha256>.json     a flow-control gate (key, data, version, updated_at), replaced
                            atomically under a striped per-gate lock, like a schedule
    locks/                  lock files (striped per-run, per-schedule and per-gate locks,
                            and one for creation)

Run, schedule and worker ids are percent-encoded into file names. Idempotency and gate
keys are hashed instead: they are arbitrary text (up to 255 characters of it for a gate
key), whose percent-encoding could exceed the file system's 255-byte name limit.

The run record also stores the byte length of the committed event log: it is written
last, so it is the commit point of an append.
Bytes past that length (left by a crash between the two writes) are invisible to
readers and overwritten by the next append, which keeps "events and projection move
together" true across crashes. The signal inbox works the same way (``signals_size`` in
the run record, absent while the inbox is empty), so a signal and the wake-up of its
suspended run are committed together, ordered with the run's own writes by its lock.
By default files are not fsynced (data survives process crashes, not necessarily power
loss); pass ``fsync=True`` for the stronger guarantee.
Deleting a finished run (:meth:`delete_runs`, retention) removes its files in the
reverse order, the run file last.
Blocking file I/O runs in worker threads (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import filelock

from pyworkflow.core.exceptions import (
    HistoryCorruptedError,
    RunAlreadyExistsError,
    RunNotFoundError,
    SequenceConflictError,
    StorageError,
)
from pyworkflow.storage import _predicates as rules
from pyworkflow.storage import payloads
from pyworkflow.storage.base import RunQuery, StorageBackend, parse_cursor
from pyworkflow.storage.schemas import (
    Event,
    GateRecord,
    HookRecord,
    HookStatus,
    RunStatus,
    RunUpdate,
    ScheduleRecord,
    ScheduleStatus,
    SignalRecord,
    VersionedRecord,
    WorkerRecord,
    WorkflowRun,
)

T = TypeVar("T")
R = TypeVar("R", bound=VersionedRecord)

FORMAT_VERSION = 1
LOCK_STRIPES = 64  # per-run locks hash onto this many files, so lock files stay bounded

_iso = datetime.fromisoformat


def _event_line(run_id: str, event: Event, limit: payloads.PayloadLimit) -> bytes:
    # JSON escapes control characters, so one event is always exactly one line.
    data = payloads.event_json(run_id, event, limit)  # strict JSON within the limit, else raises
    head = json.dumps({**event.to_dict(), "data": None}, ensure_ascii=False)
    return f"{head[: -len('null}')]}{data}}}\n".encode()


class FileStorageBackend(StorageBackend):
    """Runs as JSON files, event logs as JSONL files, under ``base_path``."""

    capabilities = frozenset({"persistent", "cross_process"})

    def __init__(
        self,
        base_path: str | os.PathLike[str] = ".pyworkflow/data",
        *,
        fsync: bool = False,
        lock_timeout: float = 60.0,
    ) -> None:
        self.base_path = Path(base_path)
        self.fsync = fsync
        self.lock_timeout = lock_timeout
        self._runs = self.base_path / "runs"
        self._events = self.base_path / "events"
        self._signals = self.base_path / "signals"
        self._keys = self.base_path / "keys"
        self._locks = self.base_path / "locks"
        self._hooks = self.base_path / "hooks"
        self._schedules = self.base_path / "schedules"
        self._workers = self.base_path / "workers"
        self._gates = self.base_path / "gates"
        self._ready = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.base_path)!r})"

    # -- plumbing ---------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(self._guarded, fn, *args)

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        if not self._ready:
            for directory in (
                self._runs,
                self._events,
                self._signals,
                self._keys,
                self._locks,
                self._hooks,
                self._schedules,
                self._workers,
                self._gates,
            ):
                directory.mkdir(parents=True, exist_ok=True)
            self._ready = True
        try:
            return fn(*args)
        except filelock.Timeout as exc:
            raise StorageError(
                f"file storage {self.base_path}: lock {exc.lock_file} not acquired "
                f"within {self.lock_timeout}s"
            ) from exc
        except OSError as exc:
            raise StorageError(f"file storage {self.base_path}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise StorageError(f"file storage {self.base_path}: corrupt file: {exc}") from exc

    @contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        # A fresh thread-local FileLock per use: flock() on separate descriptors excludes
        # threads of this process as well as other processes.
        lock = filelock.FileLock(self._locks / name, timeout=self.lock_timeout)
        with lock:
            yield

    def _run_lock(self, run_id: str) -> str:
        return self._striped_lock("run", run_id)

    @staticmethod
    def _striped_lock(kind: str, key: str) -> str:
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        return f"{kind}-{int.from_bytes(digest[:4], 'big') % LOCK_STRIPES:02d}.lock"

    @staticmethod
    def _name(run_id: str) -> str:
        return quote(run_id, safe="")

    def _run_path(self, run_id: str) -> Path:
        return self._runs / f"{self._name(run_id)}.json"

    def _events_path(self, run_id: str) -> Path:
        return self._events / f"{self._name(run_id)}.jsonl"

    def _signals_path(self, run_id: str) -> Path:
        return self._signals / f"{self._name(run_id)}.jsonl"

    def _key_path(self, key: str) -> Path:
        return self._keys / f"{hashlib.sha256(key.encode('utf-8')).hexdigest()}.json"

    def _write_atomic(self, path: Path, obj: Any) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(obj, f, ensure_ascii=False)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @staticmethod
    def _unlink(path: Path) -> bool:
        """Remove a record file; whether it was there."""
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    @staticmethod
    def _read_json(path: Path) -> Any:
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def _read_record(self, run_id: str) -> dict[str, Any] | None:
        record: dict[str, Any] | None = self._read_json(self._run_path(run_id))
        return record

    def _write_record(self, run: WorkflowRun, stored: dict[str, Any]) -> None:
        """Replace the run record with ``run`` and the committed log lengths of ``stored``
        (the record read under the run's lock, or the new lengths): every writer carries
        them over, so none drops another's commit."""
        record: dict[str, Any] = {"format": FORMAT_VERSION, "events_size": stored["events_size"]}
        if stored.get("signals_size"):  # absent while empty: records stay as they were
            record["signals_size"] = stored["signals_size"]
        record["run"] = run.to_dict()
        self._write_atomic(self._run_path(run.run_id), record)

    def _write_events(self, run_id: str, offset: int, payload: bytes) -> None:
        self._write_log(self._events_path(run_id), offset, payload)

    def _write_log(self, path: Path, offset: int, payload: bytes) -> None:
        """Write ``payload`` at ``offset``, dropping any uncommitted bytes beyond it."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        with os.fdopen(fd, "r+b") as f:
            f.seek(offset)
            f.truncate()
            f.write(payload)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())

    def _scan(self, directory: Path) -> Iterator[Any]:
        """The JSON content of every record file in ``directory``."""
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return
        for entry in entries:
            # Skip temp files (".name.json.<hex>.tmp") and anything foreign.
            if entry.name.startswith(".") or not entry.name.endswith(".json"):
                continue
            raw = self._read_json(Path(entry.path))
            if raw is not None:  # deleted since the listing
                yield raw

    def _all_runs(self) -> Iterator[WorkflowRun]:
        return (WorkflowRun.from_dict(record["run"]) for record in self._scan(self._runs))

    # -- lifecycle --------------------------------------------------------------------------

    async def connect(self) -> None:
        await self._call(lambda: None)

    # -- runs -------------------------------------------------------------------------------

    async def create_run(self, run: WorkflowRun, events: Sequence[Event] = ()) -> WorkflowRun:
        record_run, limit = run.copy(), self.payload_limit
        payloads.check_run(run, limit)
        payload = b"".join(_event_line(run.run_id, e, limit) for e in events)
        return await self._call(self._create_run, record_run, payload)

    def _create_run(self, run: WorkflowRun, payload: bytes) -> WorkflowRun:
        key = run.idempotency_key
        with self._locked("create.lock"):
            if key is not None:
                existing = self._run_for_key(key)
                if existing is not None:
                    return existing
            if self._run_path(run.run_id).exists():
                raise RunAlreadyExistsError(f"run {run.run_id!r} already exists")
            # Order matters: the run record is the commit point. A crash before it leaves
            # an orphan log (overwritten on retry) and perhaps a key pointing at a missing
            # run, which _run_for_key treats as unused.
            self._write_events(run.run_id, 0, payload)
            if key is not None:
                self._write_atomic(self._key_path(key), {"key": key, "run_id": run.run_id})
            self._write_record(run, {"events_size": len(payload)})
        return run.copy()

    def _run_for_key(self, key: str) -> WorkflowRun | None:
        entry = self._read_json(self._key_path(key))
        if entry is None or entry.get("key") != key:
            return None
        record = self._read_record(entry["run_id"])
        return None if record is None else WorkflowRun.from_dict(record["run"])

    async def get_run(self, run_id: str) -> WorkflowRun | None:
        record = await self._call(self._read_record, run_id)
        return None if record is None else WorkflowRun.from_dict(record["run"])

    async def get_run_by_idempotency_key(self, key: str) -> WorkflowRun | None:
        return await self._call(self._run_for_key, key)

    async def query_runs(self, query: RunQuery) -> list[WorkflowRun]:
        return await self._call(lambda: query.page(self._all_runs()))

    # -- events -----------------------------------------------------------------------------

    async def append_events(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_last_sequence: int,
        update: RunUpdate | None = None,
    ) -> None:
        limit = self.payload_limit
        if update is not None:
            payloads.check_changes(run_id, update.changes, limit)
        payload = b"".join(_event_line(run_id, e, limit) for e in events)
        last = events[-1].sequence if events else None
        await self._call(self._append, run_id, payload, last, expected_last_sequence, update)

    def _append(
        self,
        run_id: str,
        payload: bytes,
        last: int | None,
        expected: int,
        update: RunUpdate | None,
    ) -> None:
        with self._locked(self._run_lock(run_id)):
            record = self._read_record(run_id)
            if record is None:
                raise RunNotFoundError(f"run {run_id!r} not found")
            run = WorkflowRun.from_dict(record["run"])
            if run.last_sequence != expected:
                raise SequenceConflictError(
                    f"run {run_id!r}: expected last sequence {expected}, found {run.last_sequence}"
                )
            size = int(record["events_size"])
            if payload:
                self._write_events(run_id, size, payload)
                record["events_size"] = size + len(payload)
            if last is not None:
                run.last_sequence = last
            if update is not None:
                update.apply_to(run)
            self._write_record(run, record)

    async def get_events(self, run_id: str, *, after_sequence: int = 0) -> list[Event]:
        return await self._call(self._read_events, run_id, after_sequence)

    def _read_events(self, run_id: str, after_sequence: int) -> list[Event]:
        # No lock needed: the committed prefix of a log never changes, and the record
        # (read first) tells how long it is.
        record = self._read_record(run_id)
        if record is None:
            return []
        size = int(record["events_size"])
        if size == 0:
            return []
        try:
            with open(self._events_path(run_id), "rb") as f:
                data = f.read(size)
        except FileNotFoundError:
            data = b""
        # Line n holds sequence n (appends are consecutive from 1): the lines up to
        # after_sequence are skipped unread. A damaged line raises HistoryCorruptedError.
        skip = max(after_sequence, 0)
        decode = Event.from_stored_record
        lines = data.splitlines()[skip:]
        events = [decode(run_id, line, n, _iso) for n, line in enumerate(lines, skip + 1)]
        if len(data) < size and int(record["run"]["last_sequence"]) > skip:
            # Committed bytes are gone (the file was cut short, e.g. copied mid-write).
            raise HistoryCorruptedError(
                run_id,
                data.count(b"\n") + 1,
                f"the event log file is cut short ({len(data)} of {size} committed bytes)",
            )
        return events

    # -- timers and leases --------------------------------------------------------------------

    async def list_due_runs(self, now: datetime, limit: int = 100) -> list[str]:
        due = await self._call(lambda: rules.due_runs(self._all_runs(), now, limit))
        return [r.run_id for r in due]

    async def next_wake_time(self) -> datetime | None:
        return await self._call(lambda: rules.next_wake_time(self._all_runs()))

    async def list_stale_runs(self, now: datetime, limit: int = 100) -> list[WorkflowRun]:
        return await self._call(lambda: rules.stale_runs(self._all_runs(), now, limit))

    async def acquire_lease(
        self,
        run_id: str,
        owner: str,
        expires_at: datetime,
        now: datetime,
        *,
        steal_from: str | None = None,
    ) -> bool:
        def acquire() -> bool:
            with self._locked(self._run_lock(run_id)):
                record = self._read_record(run_id)
                if record is None:
                    return False
                run = WorkflowRun.from_dict(record["run"])
                if not rules.take_lease(run, owner, expires_at, now, steal_from):
                    return False
                self._write_record(run, record)
                return True

        return await self._call(acquire)

    async def renew_leases(self, run_ids: Sequence[str], owner: str, expires_at: datetime) -> None:
        def renew() -> None:
            for run_id in dict.fromkeys(run_ids):
                with self._locked(self._run_lock(run_id)):
                    record = self._read_record(run_id)
                    if record is None or record["run"].get("lease_owner") != owner:
                        continue
                    run = WorkflowRun.from_dict(record["run"])
                    run.lease_expires_at = expires_at
                    self._write_record(run, record)

        await self._call(renew)

    async def release_lease(self, run_id: str, owner: str) -> None:
        def release() -> None:
            with self._locked(self._run_lock(run_id)):
                record = self._read_record(run_id)
                if record is None or record["run"].get("lease_owner") != owner:
                    return
                run = WorkflowRun.from_dict(record["run"])
                run.lease_owner = run.lease_expires_at = None
                self._write_record(run, record)

        await self._call(release)

    # -- cancellation and hooks ---------------------------------------------------------

    async def request_cancellation(self, run_id: str, reason: str | None, now: datetime) -> bool:
        def request() -> bool:
            with self._locked(self._run_lock(run_id)):
                record = self._read_record(run_id)
                if record is None:
                    return False
                run = WorkflowRun.from_dict(record["run"])
                first = run.cancel_requested_at is None
                if not rules.request_cancel(run, reason, now):
                    return False
                if first:  # a repeated request changes nothing
                    self._write_record(run, record)
                return True

        return await self._call(request)

    def _hook_path(self, token_hash: str) -> Path:
        return self._hooks / f"{quote(token_hash, safe='')}.json"

    def _all_hooks(self) -> Iterator[HookRecord]:
        return (_hook_from_dict(raw) for raw in self._scan(self._hooks))

    async def save_hook(self, hook: HookRecord) -> HookRecord:
        payloads.check_hook(hook, self.payload_limit)

        def save() -> HookRecord:
            with self._locked("hooks.lock"):
                existing = rules.same_hook(self._all_hooks(), hook)
                if existing is not None:
                    return existing
                self._write_atomic(self._hook_path(hook.token_hash), _hook_to_dict(hook))
                return hook.copy()

        return await self._call(save)

    async def get_hook(self, token_hash: str) -> HookRecord | None:
        raw = await self._call(self._read_json, self._hook_path(token_hash))
        return None if raw is None else _hook_from_dict(raw)

    async def list_hooks(
        self,
        *,
        run_id: str | None = None,
        status: HookStatus | None = None,
        limit: int = 100,
        offset: int = 0,
        cursor: str | None = None,
    ) -> list[HookRecord]:
        if cursor is not None:
            parse_cursor(cursor)  # a bad cursor is the caller's error, raised here

        def query() -> list[HookRecord]:
            hooks = self._all_hooks()
            return rules.page_hooks(
                hooks, run_id=run_id, status=status, limit=limit, offset=offset, cursor=cursor
            )

        return await self._call(query)

    async def update_hook(
        self,
        token_hash: str,
        *,
        expected: HookStatus,
        status: HookStatus,
        payload: str | None = None,
        received_at: datetime | None = None,
    ) -> bool:
        payloads.check_hook_payload(token_hash, payload, self.payload_limit)

        def update() -> bool:
            with self._locked("hooks.lock"):
                raw = self._read_json(self._hook_path(token_hash))
                if raw is None:
                    return False
                hook = _hook_from_dict(raw)
                moved = rules.move_hook(
                    hook, expected=expected, status=status, payload=payload, received_at=received_at
                )
                if not moved:
                    return False
                self._write_atomic(self._hook_path(token_hash), _hook_to_dict(hook))
                return True

        return await self._call(update)

    # -- signal inboxes -----------------------------------------------------------------

    async def send_signal(
        self, run_id: str, name: str, payload: str, *, signal_id: str, now: datetime
    ) -> SignalRecord | None:
        payloads.check_signal(run_id, name, payload, self.payload_limit)
        return await self._call(self._send_signal, run_id, name, payload, signal_id, now)

    def _send_signal(
        self, run_id: str, name: str, payload: str, signal_id: str, now: datetime
    ) -> SignalRecord | None:
        # Under the run's lock, as the run's own writes: a send and a suspension are
        # ordered, and senders get gapless sequences.
        with self._locked(self._run_lock(run_id)):
            record = self._read_record(run_id)
            if record is None:
                return None
            run = WorkflowRun.from_dict(record["run"])
            if run.status.is_terminal:
                return None
            inbox = self._committed_signals(run_id, record, 0, None)
            for stored in inbox:
                if stored.signal_id == signal_id:
                    return stored
            signal = SignalRecord(run_id, len(inbox) + 1, name, payload, signal_id, now)
            line = _signal_line(signal)
            size = int(record.get("signals_size", 0))
            self._write_log(self._signals_path(run_id), size, line)
            record["signals_size"] = size + len(line)
            if run.status == RunStatus.SUSPENDED and (run.wake_at is None or run.wake_at > now):
                run.wake_at = now  # due now: list_due_runs reads wake_at from the record
            self._write_record(run, record)  # the commit point of the signal and the wake-up
            return signal

    async def list_signals(
        self, run_id: str, *, after_sequence: int = 0, limit: int = 1000
    ) -> list[SignalRecord]:
        return await self._call(self._read_signals, run_id, after_sequence, limit)

    def _read_signals(self, run_id: str, after_sequence: int, limit: int) -> list[SignalRecord]:
        # No lock, as for events: the committed prefix of the inbox never changes.
        record = self._read_record(run_id)
        if record is None:
            return []
        try:
            return self._committed_signals(run_id, record, after_sequence, limit)
        except FileNotFoundError:
            pass
        # The file went after the record was read: a deletion under way. Under the lock
        # the run is either whole or gone.
        with self._locked(self._run_lock(run_id)):
            record = self._read_record(run_id)
            if record is None:
                return []
            return self._committed_signals(run_id, record, after_sequence, limit)

    def _committed_signals(
        self, run_id: str, record: dict[str, Any], after_sequence: int, limit: int | None
    ) -> list[SignalRecord]:
        """The signals the run record commits, from ``after_sequence + 1`` on (line n
        holds sequence n, so earlier lines are skipped undecoded)."""
        size = int(record.get("signals_size", 0))
        if size == 0:
            return []
        with open(self._signals_path(run_id), "rb") as f:
            data = f.read(size)
        if len(data) < size:
            raise StorageError(
                f"file storage {self.base_path}: the signal inbox of run {run_id!r} is cut "
                f"short ({len(data)} of {size} committed bytes)"
            )
        skip = max(after_sequence, 0)
        lines = data.splitlines()[skip:]
        if limit is not None:
            lines = lines[: max(limit, 0)]
        return [_signal_from_line(run_id, line) for line in lines]

    # -- schedules ------------------------------------------------------------------------

    def _schedule_path(self, schedule_id: str) -> Path:
        return self._schedules / f"{self._name(schedule_id)}.json"

    def _all_schedules(self) -> Iterator[ScheduleRecord]:
        return (_schedule_from_dict(raw) for raw in self._scan(self._schedules))

    async def save_schedule(
        self, schedule: ScheduleRecord, *, expected_version: int | None
    ) -> bool:
        payloads.check_schedule(schedule, self.payload_limit)
        lock = self._striped_lock("schedule", schedule.schedule_id)
        path = self._schedule_path(schedule.schedule_id)
        return await self._save_versioned(schedule, expected_version, lock, path, _schedule_to_dict)

    async def _save_versioned(
        self,
        record: R,
        expected_version: int | None,
        lock: str,
        path: Path,
        to_dict: Callable[[R], dict[str, Any]],
    ) -> bool:
        """The compare-and-set of a schedule or a gate, under ``lock`` (its stripe lock),
        which makes read-compare-replace atomic across threads and processes; readers need
        none (the file is replaced atomically). On success ``record.version`` is the
        version stored."""
        written = record.copy()

        def save() -> bool:
            with self._locked(lock):
                raw = self._read_json(path)
                stored = None if raw is None else raw["version"]
                version = rules.next_schedule_version(stored, expected_version)
                if version is None:
                    return False
                written.version = version
                self._write_atomic(path, to_dict(written))
                return True

        saved = await self._call(save)
        if saved:
            record.version = written.version
        return saved

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        raw = await self._call(self._read_json, self._schedule_path(schedule_id))
        return None if raw is None else _schedule_from_dict(raw)

    async def list_schedules(
        self,
        *,
        workflow_name: str | None = None,
        status: ScheduleStatus | None = None,
        limit: int = 1000,
    ) -> list[ScheduleRecord]:
        def query() -> list[ScheduleRecord]:
            schedules = self._all_schedules()
            return rules.select_schedules(
                schedules, workflow_name=workflow_name, status=status, limit=limit
            )

        return await self._call(query)

    async def list_due_schedules(self, now: datetime, limit: int = 100) -> list[ScheduleRecord]:
        return await self._call(lambda: rules.due_schedules(self._all_schedules(), now, limit))

    async def delete_schedule(self, schedule_id: str) -> bool:
        def delete() -> bool:
            with self._locked(self._striped_lock("schedule", schedule_id)):
                return self._unlink(self._schedule_path(schedule_id))

        return await self._call(delete)

    # -- flow-control gates ---------------------------------------------------------------

    def _gate_path(self, key: str) -> Path:
        # Hashed, not percent-encoded: 255 characters of any text may encode to well over
        # the 255 bytes a file name may have.
        return self._gates / f"{hashlib.sha256(key.encode('utf-8')).hexdigest()}.json"

    async def get_gate(self, key: str) -> GateRecord | None:
        raw = await self._call(self._read_json, self._gate_path(key))
        return None if raw is None else _gate_from_dict(raw)

    async def save_gate(self, gate: GateRecord, *, expected_version: int | None) -> bool:
        """A compare-and-set under the gate's stripe lock, exactly as a schedule is saved
        (:meth:`_save_versioned`)."""
        payloads.check_gate(gate, self.payload_limit)
        lock, path = self._striped_lock("gate", gate.key), self._gate_path(gate.key)
        return await self._save_versioned(gate, expected_version, lock, path, _gate_to_dict)

    # -- retention ------------------------------------------------------------------------

    async def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Per run, under its lock: hooks, idempotency key, signal inbox, event log, then
        the run record (the commit point, as for creation): an interrupted deletion leaves
        the run readable and terminal, and the next call removes what is left."""
        ids = list(dict.fromkeys(run_ids))
        if not ids:
            return 0

        def delete() -> int:
            wanted = set(ids)
            hooks: dict[str, list[str]] = {}
            for hook in self._all_hooks():  # one scan per batch, not per run
                if hook.run_id in wanted:
                    hooks.setdefault(hook.run_id, []).append(hook.token_hash)
            return sum(self._delete_run(run_id, hooks.get(run_id, ())) for run_id in ids)

        return await self._call(delete)

    def _delete_run(self, run_id: str, token_hashes: Sequence[str]) -> bool:
        with self._locked(self._run_lock(run_id)):
            record = self._read_record(run_id)
            if record is None:
                return False
            run = WorkflowRun.from_dict(record["run"])
            if not run.status.is_terminal:
                return False
            if token_hashes:
                # Under the hooks lock: a concurrent update_hook must not write one back.
                with self._locked("hooks.lock"):
                    for token_hash in token_hashes:
                        self._unlink(self._hook_path(token_hash))
            key = run.idempotency_key
            if key is not None:
                with self._locked("create.lock"):
                    entry = self._read_json(self._key_path(key))
                    if entry is not None and entry.get("run_id") == run_id:
                        self._unlink(self._key_path(key))
            self._unlink(self._signals_path(run_id))
            self._unlink(self._events_path(run_id))
            return self._unlink(self._run_path(run_id))

    # -- the worker registry ----------------------------------------------------------------

    def _worker_path(self, worker_id: str) -> Path:
        return self._workers / f"{self._name(worker_id)}.json"

    async def save_worker(self, worker: WorkerRecord) -> None:
        """No lock: a save reads nothing, and the file is replaced atomically, so of two
        concurrent beats of one worker the last one wins whole (as on every backend)."""
        record = {
            "worker_id": worker.worker_id,
            "last_beat": worker.last_beat.isoformat(),
            "data": worker.data_json(),
        }
        await self._call(self._write_atomic, self._worker_path(worker.worker_id), record)

    async def list_workers(
        self, *, limit: int = 1000, after: str | None = None
    ) -> list[WorkerRecord]:
        def query() -> list[WorkerRecord]:
            found = [
                w
                for w in map(_worker_from_dict, self._scan(self._workers))
                if w and (after is None or w.worker_id > after)
            ]
            found.sort(key=lambda w: w.worker_id)
            return found[: max(limit, 0)]

        return await self._call(query)

    async def delete_worker(self, worker_id: str) -> bool:
        return await self._call(self._unlink, self._worker_path(worker_id))


def _worker_from_dict(raw: Any) -> WorkerRecord | None:
    """A worker record from its file, or ``None`` for a file that is not one (foreign,
    or edited by hand): the registry then simply lacks that worker, whose runs are
    recovered when their leases expire, instead of every listing failing."""
    try:
        worker_id, last_beat, data = raw["worker_id"], raw["last_beat"], raw["data"]
        if not (isinstance(worker_id, str) and isinstance(data, str)):
            return None
        return WorkerRecord.from_stored(worker_id, datetime.fromisoformat(last_beat), data)
    except (TypeError, KeyError, ValueError):
        return None


def _signal_line(signal: SignalRecord) -> bytes:
    # The payload is kept as text (not inlined JSON), so it reads back exactly as sent.
    # JSON escapes control characters: one signal is always exactly one line.
    line = {
        "sequence": signal.sequence,
        "signal_id": signal.signal_id,
        "name": signal.name,
        "sent_at": signal.sent_at.isoformat(),
        "payload": signal.payload,
    }
    return f"{json.dumps(line, ensure_ascii=False)}\n".encode()


def _signal_from_line(run_id: str, line: bytes) -> SignalRecord:
    raw = json.loads(line)
    return SignalRecord(
        run_id=run_id,
        sequence=int(raw["sequence"]),
        name=raw["name"],
        payload=raw["payload"],
        signal_id=raw["signal_id"],
        sent_at=datetime.fromisoformat(raw["sent_at"]),
    )


_HOOK_DATETIMES = ("created_at", "expires_at", "received_at")
_SCHEDULE_DATETIMES = ("next_run_time", "created_at", "updated_at")


def _record_to_dict(record: Any, datetimes: tuple[str, ...]) -> dict[str, Any]:
    """A hook or schedule record as JSON values (status as text, datetimes ISO)."""
    raw = {f.name: getattr(record, f.name) for f in fields(record)}
    raw["status"] = raw["status"].value
    for name in datetimes:
        if raw[name] is not None:
            raw[name] = raw[name].isoformat()
    return raw


def _record_values(
    raw: dict[str, Any], cls: Any, datetimes: tuple[str, ...], status: Any
) -> dict[str, Any]:
    values = {f.name: raw[f.name] for f in fields(cls) if f.name in raw}
    for name in datetimes:
        if values.get(name) is not None:
            values[name] = datetime.fromisoformat(values[name])
    values["status"] = status(values["status"])
    return values


def _hook_to_dict(hook: HookRecord) -> dict[str, Any]:
    return _record_to_dict(hook, _HOOK_DATETIMES)


def _hook_from_dict(raw: dict[str, Any]) -> HookRecord:
    return HookRecord(**_record_values(raw, HookRecord, _HOOK_DATETIMES, HookStatus))


def _schedule_to_dict(schedule: ScheduleRecord) -> dict[str, Any]:
    return _record_to_dict(schedule, _SCHEDULE_DATETIMES)


def _gate_to_dict(gate: GateRecord) -> dict[str, Any]:
    return {
        "key": gate.key,
        "data": gate.data,
        "version": gate.version,
        "updated_at": gate.updated_at.isoformat(),
    }


def _gate_from_dict(raw: dict[str, Any]) -> GateRecord:
    return GateRecord(
        key=raw["key"],
        data=raw["data"],
        version=raw["version"],
        updated_at=datetime.fromisoformat(raw["updated_at"]),
    )


def _schedule_from_dict(raw: dict[str, Any]) -> ScheduleRecord:
    return ScheduleRecord(
        **_record_values(raw, ScheduleRecord, _SCHEDULE_DATETIMES, ScheduleStatus)
    )
