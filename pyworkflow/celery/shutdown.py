"""Graceful shutdown of a Celery worker: its running tasks finish, or their runs are
handed back to the other workers at once, and no recovery attempt is counted.

**Warm shutdown** (SIGTERM to the worker's main process: what ``docker stop`` and
Kubernetes send): Celery stops taking messages and waits for the running tasks. Here the
main process also asks each pool process (:data:`HANDBACK_SIGNAL`) to finish within
``celery_shutdown_grace`` seconds; a task still running then is handed back.

**SIGTERM to a pool process itself** (SIGTERM to the whole process group, as systemd's
default ``KillMode=control-group`` does, or Celery's cold shutdown terminating the pool):
its running task is handed back at once.

**Handing back**, in the pool process's main thread with its event loop frozen (nothing
of the interrupted execution runs again, so nothing of it is written after the hand-back):

1. each run this process is executing (it holds the run's lease) is moved to a delivery
   placeholder (:func:`pyworkflow.engine.workers.hand_back`) and a workflow message taking
   it from there is sent: another worker resumes it at once, as a plain resume;
2. a dispatched step being run here needs no write: its message is unacknowledged
   (``acks_late``) and goes back to the queue when this process ends
   (``task_reject_on_worker_lost``), and the step's round keeps the run's lease;
3. the process's record leaves the worker registry, so the sweep does not treat it as a
   dead worker (which would count a recovery);
4. the process exits at once (Celery logs the task's message as requeued after a lost
   worker: that is the hand-back).

A task whose code holds the interpreter without returning to Python (a long call into C)
cannot be interrupted: the worker then waits until it returns or is killed (SIGKILL), and
its runs are recovered by the sweep as after a crash.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from pyworkflow.core.config import get_config, new_storage
from pyworkflow.utils.log import logger

# Sent by the main process to its pool processes when its warm shutdown begins (SIGUSR1
# is billiard's soft time limit; SIGUSR2 is unused by Celery's pool processes).
HANDBACK_SIGNAL = signal.SIGUSR2
# The hand-back's storage writes and messages get this long; then the process exits
# anyway (what is not handed back is recovered by the sweep, as after a crash).
HANDBACK_TIMEOUT = 10.0

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class _PoolProcess:
    """What one pool process knows about its shutdown (reset after each fork)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.tasks: list[tuple[str, dict[str, Any]]] = []  # (task name, kwargs) running
        self.idle = threading.Event()
        self.idle.set()
        self.deadline: float | None = None  # when a warm shutdown's grace ends
        self.due = False  # the grace ended with a task running: hand back now
        self.handing_back = False
        self.watcher: threading.Thread | None = None
        self.previous_term: _Handler = None  # billiard's SIGTERM handler, chained to


# Set in prefork pool processes only: the solo and threads pools run tasks in the main
# process (or its threads), whose signals belong to Celery.
_state: _PoolProcess | None = None


def _mine() -> _PoolProcess | None:
    state = _state
    return state if state is not None and state.pid == os.getpid() else None


def pool_process_started() -> None:
    """In a new pool process: listen for the main process's hand-back request."""
    global _state
    _state = _PoolProcess()
    signal.signal(HANDBACK_SIGNAL, _on_signal)


def task_started(name: str, kwargs: dict[str, Any]) -> None:
    """A task begins in this pool process (Celery's ``task_prerun``)."""
    state = _mine()
    if state is None:
        return
    if state.previous_term is None:
        # Installed at the first task, not at process start: billiard sets its own
        # SIGTERM handler after the start-up hooks ran; this one hands back, then
        # leaves through billiard's.
        state.previous_term = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_signal)
    state.tasks.append((name, dict(kwargs)))
    state.idle.clear()
    if state.deadline is not None:  # started during a warm shutdown: same grace
        _watch(state)


def task_ended() -> None:
    """The task ends (Celery's ``task_postrun``)."""
    state = _mine()
    if state is None or not state.tasks:
        return
    state.tasks.pop()
    if not state.tasks:
        state.idle.set()


def ask_pool_to_finish(worker: Any) -> None:
    """In the main process, as its warm shutdown begins: ask every pool process to end
    its task within the grace, or hand it back (only the prefork pool has processes)."""
    for pid in _pool_pids(worker):
        try:
            os.kill(pid, HANDBACK_SIGNAL)
        except OSError:  # already gone
            continue


def _pool_pids(worker: Any) -> list[int]:
    pool = getattr(getattr(worker, "pool", None), "_pool", None)
    processes = getattr(pool, "_pool", None) or []
    return [pid for pid in (getattr(p, "pid", None) for p in processes) if pid]


def _on_signal(signum: int, frame: FrameType | None) -> None:
    state = _mine()
    if state is None:
        if signum == signal.SIGTERM:  # a process forked by a task inherited the handler
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        return
    if state.handing_back:
        return
    if signum == HANDBACK_SIGNAL and not state.due:
        # The warm shutdown begins: the running task gets the grace to end.
        if state.deadline is None:
            state.deadline = time.monotonic() + get_config().celery_shutdown_grace
        if state.tasks:
            _watch(state)
        return
    if not state.tasks:
        if signum == signal.SIGTERM:
            _chain(state.previous_term, signum, frame)  # idle: leave as billiard does
        return
    _hand_back_and_exit(state)


def _chain(handler: _Handler, signum: int, frame: FrameType | None) -> None:
    if callable(handler):
        handler(signum, frame)
    elif handler != signal.SIG_IGN:
        os._exit(128 + signum)


def _watch(state: _PoolProcess) -> None:
    """Start a thread that interrupts the main thread when the grace ends with a task
    still running (the signal must reach the main thread: Python runs handlers there)."""
    if state.watcher is not None and state.watcher.is_alive():
        return
    main = threading.main_thread().ident
    deadline = state.deadline or time.monotonic()

    def watch() -> None:
        if not state.idle.wait(max(0.0, deadline - time.monotonic())) and main is not None:
            state.due = True
            signal.pthread_kill(main, HANDBACK_SIGNAL)

    state.watcher = threading.Thread(target=watch, name="pyworkflow-shutdown", daemon=True)
    state.watcher.start()


def _hand_back_and_exit(state: _PoolProcess) -> None:
    """Hand back what this process is working on, leave the registry, and exit (see the
    module docstring). Runs in the main thread, so the event loop stays frozen."""
    state.handing_back = True
    from pyworkflow.celery import worker

    proc = worker._process  # noqa: SLF001 - this process's state, if it has any
    if proc is not None and proc.pid != os.getpid():
        proc = None
    runs = sorted({str(kwargs.get("run_id")) for _, kwargs in state.tasks if "run_id" in kwargs})
    if proc is not None and proc.beat is not None:
        runs = sorted(set(runs) | set(proc.beat.runs()))
    tasks = [name for name, _ in state.tasks]
    owner = proc.owner if proc is not None else None
    done = threading.Event()

    def work() -> None:
        try:
            handed = asyncio.run(_release(runs, owner)) if owner is not None else []
            logger.warning(
                "worker process {} stopping: task(s) {} handed back ({} run(s) released to "
                "other workers: {}; dispatched steps go back to their queue)",
                os.getpid(),
                ", ".join(tasks),
                len(handed),
                ", ".join(handed) or "-",
            )
        except Exception:  # noqa: BLE001 - the sweep recovers what was not handed back
            logger.exception("worker process {} could not hand back its runs", os.getpid())
        finally:
            done.set()

    threading.Thread(target=work, name="pyworkflow-handback", daemon=True).start()
    done.wait(HANDBACK_TIMEOUT)
    if proc is not None and proc.beat is not None:
        proc.beat.stop()  # deletes the record: a clean stop is not a death
    os._exit(0)


async def _release(runs: list[str], owner: str) -> list[str]:
    """Move this process's leases to delivery placeholders and send their messages."""
    from pyworkflow.celery.messages import routes_of, send_workflow
    from pyworkflow.engine.workers import hand_back

    cfg = get_config()
    storage = new_storage(cfg.storage)
    if storage is None:  # a backend object given to configure(): cannot open another
        return []
    await storage.connect()
    try:
        handed = await hand_back(storage, runs, owner, wait=cfg.dispatch_timeout)
        routes = await routes_of(storage, [run_id for run_id, _ in handed])
    finally:
        await storage.close()
    for run_id, placeholder in handed:
        route = routes.get(run_id)
        if route is None:  # deleted meanwhile: nothing to send
            continue
        send_workflow(run_id, route=route, steal_from=placeholder)
    return [run_id for run_id, _ in handed]
