"""Control from a process that does not have the workflow code (an operator's script,
an admin shell): real processes sharing one SQLite file.

``nocode_app.py`` has the workflow and serves its runs with the local runtime;
``nocode_admin.py`` never imports it. Cancelling from the latter records the request
and returns quietly; the former acts on it within its poll interval. A local runtime
without the code leaves due runs to a process that has it: no spin, no lease kept.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

APP = Path(__file__).with_name("nocode_app.py")
ADMIN = Path(__file__).with_name("nocode_admin.py")


class _Process:
    """A child process; its stderr goes to a file (a spinning child cannot block on a
    full pipe, and the test reads every line it logged)."""

    def __init__(self, script: Path, *args: str, cwd: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        env.pop("PYWORKFLOW_MODULES", None)
        self.err_path = cwd / f"{script.stem}-{args[0]}-{time.monotonic_ns()}.err"
        with self.err_path.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(script), *args],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def read_line(self, prefix: str) -> str:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            if raw.startswith(prefix):
                return raw.strip()
        raise AssertionError(f"exited before printing {prefix!r}: {self.stderr[-3000:]}")

    def finish(self, timeout: float = 30) -> str:
        """Wait for the exit; return the rest of stdout."""
        out, _ = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, self.stderr[-3000:]
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_cancel_from_a_process_without_the_code(tmp_path: Path) -> None:
    db = str(tmp_path / "wf.db")
    server = _Process(APP, "run", db, cwd=tmp_path)
    try:
        run_id = server.read_line("RUN").split()[1]  # it now sleeps for 60 s

        admin = _Process(ADMIN, "cancel", db, run_id, cwd=tmp_path)
        out = admin.finish()
        cancelled_at = time.monotonic()

        assert "CANCELLED True" in out
        err = admin.stderr
        assert "Traceback" not in err and "ERROR" not in err, err
        assert len(err.splitlines()) <= 1, err  # at most one quiet line
        # The serving process sees the request within its poll interval (1 s).
        assert server.read_line("END") == "END cancelled"
        assert time.monotonic() - cancelled_at < 3.0
        server.finish()
    finally:
        server.kill()


def test_local_runtime_without_the_code_leaves_due_runs_alone(tmp_path: Path) -> None:
    db = str(tmp_path / "wf.db")
    run_id = _Process(APP, "start", db, "0.2", cwd=tmp_path).finish().split()[1]
    time.sleep(0.3)  # the run is due; only the code's owner can resume it

    admin = _Process(ADMIN, "serve", db, "7", cwd=tmp_path)
    try:
        cpu = float(admin.read_line("CPU").split()[1])  # its first 3 s of serving
        # Idle serving costs a few ms; spinning on the due run cost ~0.15 s.
        assert cpu < 0.05, f"the local runtime spun on a run it cannot resume: {cpu:.3f}s CPU"

        # While it keeps serving, a process with the code takes the run at once: the
        # process without the code holds no lease on it.
        started = time.monotonic()
        out = _Process(APP, "wait", db, run_id, cwd=tmp_path).finish()
        assert out.strip() == "END completed"
        assert time.monotonic() - started < 5.0
        assert admin.proc.poll() is None, "the process without the code should still serve"
        admin.finish()
    finally:
        admin.kill()
    err = admin.stderr
    lines = err.splitlines()
    assert "Traceback" not in err and "ERROR" not in err, err
    skipped = [line for line in lines if "is not registered here" in line]
    assert len(skipped) == 1 and "INFO" in skipped[0] and run_id in skipped[0], err
    assert len(lines) <= 5, err  # no line per pass
