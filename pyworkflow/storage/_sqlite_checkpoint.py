"""WAL checkpoints on a background thread, off the event loop.

A WAL database grows its ``-wal`` file with every commit until a checkpoint copies the
pages back into the main file. SQLite's default runs that checkpoint inside the commit
that crosses 1,000 pages, so one commit in a few hundred pays for writing back every
page and two fsyncs: about half of all commit time in a step-per-commit workload, on
the event loop's thread when the commit runs there.

Connections that hand their checkpoints here turn ``wal_autocheckpoint`` off and call
:meth:`WalCheckpointer.committed` after each commit. Every ``every`` commits this
thread runs a PASSIVE checkpoint on its own connection (it never blocks writers or
readers; ``sqlite3`` releases the GIL while SQLite works, so the I/O overlaps with the
next commits on another core). The WAL starts over from its beginning only once every
frame is copied back, and frames committed during the pass are not, so the next commit
after a pass finishes the job on its own connection: a RESTART checkpoint of those few
frames, which never waits (``busy_timeout = 0``; if anyone is busy it is tried again
after the next pass). Starting over matters twice: the file stays small, and commits
overwrite blocks the file already has, which syncs faster than growing it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading

from pyworkflow.utils.log import logger

CHECKPOINT_EVERY = 500  # commits between background passes (SQLite alone: every 1,000 pages)


class WalCheckpointer:
    """Checkpoints one database file in the background (one per storage backend)."""

    def __init__(self, path: str, every: int = CHECKPOINT_EVERY) -> None:
        self.path = path
        self.every = every
        self._commits = 0
        self._copied = False  # a pass finished: the next commit restarts the WAL
        self._wanted = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pid = 0

    def committed(self, conn: sqlite3.Connection) -> None:
        """Count a commit made on ``conn`` (which must have no transaction open)."""
        if self._copied:
            self._copied = False
            try:
                conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            except sqlite3.Error as exc:  # the next pass tries again
                logger.debug("sqlite: WAL restart of {} failed: {}", self.path, exc)
        self._commits += 1
        if self._commits >= self.every:
            self._commits = 0
            self._ensure_running()
            self._wanted.set()

    def _ensure_running(self) -> None:
        # A forked child inherits the object but not the thread: it starts its own.
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._stopping = False
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=self._loop, name=f"pyworkflow-checkpoint:{self.path}", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            while True:
                self._wanted.wait()
                self._wanted.clear()
                if self._stopping:
                    return
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the next pass tries again
                    logger.debug("sqlite: checkpoint of {} failed: {}", self.path, exc)
                else:
                    self._copied = True
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop the thread. (The last connection to close a database checkpoints it.)"""
        thread, self._thread = self._thread, None
        if thread is None or self._pid != os.getpid():
            return
        self._stopping = True
        self._wanted.set()
        with contextlib.suppress(RuntimeError):
            thread.join(timeout=5)
