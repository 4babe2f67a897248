"""What the CLI tests of ``workflows`` and ``schedules`` share: a project directory as
cwd holding a workflow module, the installed ``pyworkflow`` script run from it, and a
storage URL per backend (SQLite file, PostgreSQL schema dropped afterwards)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import pyworkflow

SCRIPT = Path(sys.executable).parent / "pyworkflow"


def project_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, text: str
) -> Iterator[Path]:
    """``tmp_path`` as cwd with ``module``.py in it and fresh configuration (no
    ``PYWORKFLOW_*`` settings; the test servers' addresses are kept); the module is
    forgotten afterwards."""
    for name in list(os.environ):
        if name.startswith("PYWORKFLOW_") and not name.startswith("PYWORKFLOW_TEST_"):
            monkeypatch.delenv(name)
    (tmp_path / f"{module}.py").write_text(text)
    monkeypatch.chdir(tmp_path)
    pyworkflow.reset_config()
    yield tmp_path
    pyworkflow.reset_config()
    sys.modules.pop(module, None)
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def script(
    project: Path, storage: str, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The installed console script, run from ``project`` without ``PYTHONPATH``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(SCRIPT), "--storage", storage, *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def storage_urls(backend: str, project: Path) -> Iterator[str]:
    """A storage URL of ``backend`` (``sqlite`` or ``postgres``) for one test."""
    if backend == "sqlite":
        yield f"sqlite:///{project}/script.db"
        return
    from tests.services import require_service

    base = require_service("postgres")
    pytest.importorskip("asyncpg")
    schema = f"cli_wfs_{uuid.uuid4().hex[:12]}"
    yield f"{base}?schema={schema}"
    drop_schema(base, schema)


def drop_schema(url: str, schema: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # generated name
        finally:
            await conn.close()

    asyncio.run(drop())
