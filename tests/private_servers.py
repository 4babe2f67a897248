"""Private database servers a test starts, stops and restarts at will.

The shared servers on the standard ports (:mod:`tests.services`) must never go away under
other tests, so outage tests run their own: a PostgreSQL cluster, a Redis or a MariaDB
created in a temporary directory, listening on a free port of 127.0.0.1 only, and
removed afterwards. :meth:`PrivateServer.stop` with ``crash=True`` kills the server the
way a power cut or an OOM kill would (``pg_ctl stop -m immediate``, ``SIGKILL``);
:meth:`PrivateServer.start` brings it back on the same port with the same data.

A missing binary fails the test under CI (``CI`` set) and skips it elsewhere, with what
to install.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import importlib
import os
import pwd
import shutil
import signal
import socket
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, NoReturn

import pytest

#: Seconds a server gets to accept connections after it was started.
READY_TIMEOUT = 30.0


def unavailable(message: str) -> NoReturn:
    """Fail under CI, skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_module(name: str, extra: str) -> None:
    """Import ``name`` or fail/skip, naming the extra that installs it."""
    try:
        importlib.import_module(name)
    except ImportError:
        unavailable(f"{name} is not installed: pip install 'pyworkflow-engine[{extra}]'")


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(name: str, *patterns: str, hint: str) -> str:
    """The path of executable ``name`` (on ``PATH`` or in a directory matching one of
    ``patterns``), or fail/skip with ``hint``."""
    found = shutil.which(name)
    if found:
        return found
    for pattern in (*patterns, "/usr/local/bin", "/usr/sbin", "/usr/local/sbin"):
        for directory in sorted(glob.glob(pattern), reverse=True):
            candidate = Path(directory) / name
            if os.access(candidate, os.X_OK):
                return str(candidate)
    unavailable(f"{name} not found: {hint}")


def _children(parent: int) -> list[int]:
    """The pids whose parent is ``parent`` (from ``/proc``)."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = Path(stat).read_text()
            # "pid (comm) state ppid ...": comm may hold spaces, so split after ")".
            if int(text.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(text.split(" ", 1)[0]))
    return found


def _stopped(pid: int) -> bool:
    """Whether every thread of process ``pid`` is stopped (or the process is gone)."""
    for stat in glob.glob(f"/proc/{pid}/task/[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if Path(stat).read_text().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                return False
    return True


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def _run(*argv: str, limit: float = 60) -> str:
    """Run a command to completion; its output. Raises ``RuntimeError`` on failure."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(limit):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{argv[0]} did not finish within {limit}s") from None
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}: {text[-2000:]}")
    return text


class PrivateServer(ABC):
    """One server process in a temporary directory, on a free port of 127.0.0.1."""

    name = "server"

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix=f"pw-{self.name}-"))

    @property
    @abstractmethod
    def url(self) -> str:
        """The URL a storage backend connects with."""

    async def setup(self) -> None:
        """Create the data directory (once), then start."""
        await self.start()

    @abstractmethod
    async def _launch(self) -> None:
        """Start the server process (it need not accept connections yet)."""

    @abstractmethod
    async def _halt(self, crash: bool) -> None:
        """Stop the server process and wait until it is gone."""

    async def start(self) -> None:
        """Start the server on its port and wait until it answers."""
        await self._launch()
        loop = asyncio.get_running_loop()
        give_up = loop.time() + READY_TIMEOUT
        while not await asyncio.to_thread(_accepts, self.port):
            if loop.time() > give_up:
                raise RuntimeError(f"private {self.name} did not start: {self.log_tail()}")
            await asyncio.sleep(0.05)
        await self._ready()

    @abstractmethod
    async def _ready(self) -> None:
        """Wait until the server answers queries (it accepts connections already)."""

    async def stop(self, *, crash: bool = True) -> None:
        """Stop the server: killed (``crash``) or shut down cleanly."""
        await self._halt(crash)

    @abstractmethod
    def pids(self) -> list[int]:
        """The server's processes (empty when it is not running)."""

    def freeze(self) -> None:
        """Stop the server's processes (``SIGSTOP``): connections stay open and accepted,
        nothing is answered, as when a network partition swallows packets."""
        pids = self.pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        # Delivery is asynchronous: a thread busy in a system call stops only when it
        # returns. Wait until every thread of every process is stopped.
        give_up = time.monotonic() + 5
        while not all(_stopped(pid) for pid in pids) and time.monotonic() < give_up:
            time.sleep(0.005)

    def thaw(self) -> None:
        """Let a frozen server go on (``SIGCONT``)."""
        for pid in self.pids():
            os.kill(pid, signal.SIGCONT)

    async def destroy(self) -> None:
        """Stop the server if it runs and delete its directory."""
        with contextlib.suppress(Exception):
            self.thaw()  # a stopped process would not act on a shutdown request
        with contextlib.suppress(Exception):
            await self._halt(crash=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self) -> str:
        log = self.root / "server.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"


class _ProcessServer(PrivateServer):
    """A server that runs in the foreground as a child process of the test."""

    proc: asyncio.subprocess.Process | None = None

    @abstractmethod
    def argv(self) -> list[str]:
        """The command line of the server."""

    def pids(self) -> list[int]:
        proc = self.proc
        return [proc.pid] if proc is not None and proc.returncode is None else []

    async def _launch(self) -> None:
        with (self.root / "server.log").open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv(), stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL
            )

    async def _halt(self, crash: bool) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGKILL if crash else signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


class PrivatePostgres(PrivateServer):
    """A PostgreSQL cluster (``initdb``, trust authentication) run with ``pg_ctl``.

    ``initdb`` and ``postgres`` refuse to run as root: as root they run as the
    ``postgres`` user (``runuser``), which then owns the directory.
    """

    name = "postgres"
    HINT = "install the PostgreSQL server (apt-get install postgresql)"

    def __init__(self) -> None:
        pattern = "/usr/lib/postgresql/*/bin"
        self.initdb = find_binary("initdb", pattern, hint=self.HINT)
        self.pg_ctl = find_binary("pg_ctl", pattern, hint=self.HINT)
        self.prefix: list[str] = []
        super().__init__()
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.root, ignore_errors=True)
                unavailable("running as root, and there is no 'postgres' user to run initdb")
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self.prefix = [find_binary("runuser", "/sbin", hint="util-linux"), "-u", "postgres"]
            self.prefix.append("--")
        self.data = self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    async def setup(self) -> None:
        await _run(
            *self.prefix, self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        await self.start()

    async def _launch(self) -> None:
        # fsync off: only the server process dies in these tests, never the OS, so what it
        # wrote survives in the page cache exactly as a crash-safe server's would.
        options = f"-p {self.port} -h 127.0.0.1 -k {self.root} -c fsync=off -c max_connections=200"
        await _run(
            *self.prefix, self.pg_ctl, "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "-t", str(int(READY_TIMEOUT)), "start",
        )  # fmt: skip

    def pids(self) -> list[int]:
        pidfile = self.data / "postmaster.pid"
        if not pidfile.exists():
            return []
        postmaster = int(pidfile.read_text().split()[0])
        return [postmaster, *_children(postmaster)]

    async def _halt(self, crash: bool) -> None:
        if not (self.data / "postmaster.pid").exists():
            return
        mode = "immediate" if crash else "fast"
        await _run(*self.prefix, self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")

    async def _ready(self) -> None:
        import asyncpg

        loop = asyncio.get_running_loop()
        give_up = loop.time() + READY_TIMEOUT
        while True:  # after a crash the server replays its WAL before it takes queries
            try:
                conn = await asyncpg.connect(self.url, timeout=5)
            except (OSError, asyncpg.PostgresError) as exc:
                if loop.time() > give_up:
                    raise RuntimeError(f"private postgres never answered: {exc}") from exc
                await asyncio.sleep(0.05)
                continue
            await conn.close()
            return


class PrivateRedis(_ProcessServer):
    """A ``redis-server`` with an append-only file: what it acknowledged survives a
    ``SIGKILL`` (written to the file before the reply is sent)."""

    name = "redis"

    def __init__(self) -> None:
        self.binary = find_binary("redis-server", hint="apt-get install redis-server")
        super().__init__()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def _ready(self) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import ConnectionError as RedisConnectionError

        client = aioredis.Redis.from_url(self.url)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + READY_TIMEOUT
        try:
            while True:  # BusyLoadingError (a ConnectionError) while it reads its AOF
                try:
                    await client.ping()
                    return
                except RedisConnectionError as exc:
                    if loop.time() > give_up:
                        raise RuntimeError(f"private redis never answered: {exc}") from exc
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    def argv(self) -> list[str]:
        return [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--appendonly", "yes", "--save", "", "--dir", str(self.root),
            "--daemonize", "no", "--protected-mode", "no",
        ]  # fmt: skip


class PrivateMariaDB(_ProcessServer):
    """A ``mariadbd`` on a fresh data directory (``mariadb-install-db``), root without
    a password (``--skip-grant-tables``), with a database ``test``."""

    name = "mariadb"
    HINT = "apt-get install mariadb-server"

    def __init__(self) -> None:
        self.binary = find_binary("mariadbd", hint=self.HINT)
        installer = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        if installer is None:
            unavailable(f"mariadb-install-db not found: {self.HINT}")
        self.installer = installer
        super().__init__()
        self.data = self.root / "data"

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/test"

    async def setup(self) -> None:
        await _run(
            self.installer, "--no-defaults", f"--datadir={self.data}", "--user=root",
            "--auth-root-authentication-method=normal", "--skip-test-db",
        )  # fmt: skip
        await self.start()
        conn = await self._connect()
        try:
            async with conn.cursor() as cursor:
                await cursor.execute("CREATE DATABASE test CHARACTER SET utf8mb4")
        finally:
            conn.close()

    def argv(self) -> list[str]:
        # Log flushed to the OS at each commit, not synced: only the process dies here.
        return [
            self.binary, "--no-defaults", f"--datadir={self.data}", f"--port={self.port}",
            "--bind-address=127.0.0.1", f"--socket={self.root / 'mysqld.sock'}",
            f"--pid-file={self.root / 'mysqld.pid'}", "--user=root", "--skip-grant-tables",
            "--skip-log-bin", "--innodb-buffer-pool-size=64M",
            "--innodb-flush-log-at-trx-commit=2", "--max-connections=300",
        ]  # fmt: skip

    async def _connect(self) -> Any:
        import aiomysql

        return await aiomysql.connect(
            host="127.0.0.1", port=self.port, user="root", autocommit=True, connect_timeout=5
        )

    async def _ready(self) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + READY_TIMEOUT
        while True:
            try:
                conn = await self._connect()
            except Exception as exc:  # noqa: BLE001 - still starting (crash recovery)
                if loop.time() > give_up:
                    raise RuntimeError(f"private mariadb never answered: {exc}") from exc
                await asyncio.sleep(0.05)
                continue
            conn.close()
            return


SERVERS: dict[str, type[PrivateServer]] = {
    "postgres": PrivatePostgres,
    "redis": PrivateRedis,
    "mysql": PrivateMariaDB,
}
