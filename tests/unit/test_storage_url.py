"""storage_from_url / storage_from_config: schemes, options and error messages."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pyworkflow.core.exceptions import ConfigurationError
from pyworkflow.storage import (
    FileStorageBackend,
    InMemoryStorageBackend,
    SQLiteStorageBackend,
    storage_from_config,
    storage_from_url,
)

# Nothing below connects, so no file or directory is ever created.


def test_memory_url() -> None:
    assert isinstance(storage_from_url("memory://"), InMemoryStorageBackend)
    with pytest.raises(ConfigurationError, match="no path"):
        storage_from_url("memory://somewhere")


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///relative/path.db", "relative/path.db"),
        ("sqlite:////abs/path.db", "/abs/path.db"),
        ("sqlite:///with%20space.db", "with space.db"),
        ("sqlite://", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        ("SQLite:///upper.db", "upper.db"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    backend = storage_from_url(url)
    assert isinstance(backend, SQLiteStorageBackend)
    assert backend.path == path
    assert backend.synchronous == "NORMAL"


def test_sqlite_url_options() -> None:
    backend = storage_from_url("sqlite:///wf.db?synchronous=full")
    assert isinstance(backend, SQLiteStorageBackend) and backend.synchronous == "FULL"
    with pytest.raises(ConfigurationError, match="synchronous"):
        storage_from_url("sqlite:///wf.db?synchronous=sometimes")
    with pytest.raises(ConfigurationError, match="unsupported option.*journal"):
        storage_from_url("sqlite:///wf.db?journal=off")
    with pytest.raises(ConfigurationError, match="three slashes"):
        storage_from_url("sqlite://host/wf.db")


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("file:///abs/dir", "/abs/dir"),
        ("file://relative/dir", "relative/dir"),
        ("file://./data", "data"),
        ("file://", ".pyworkflow/data"),
    ],
)
def test_file_urls(url: str, path: str) -> None:
    backend = storage_from_url(url)
    assert isinstance(backend, FileStorageBackend)
    assert backend.base_path == Path(path)
    assert backend.fsync is False


def test_file_url_fsync_option() -> None:
    backend = storage_from_url("file:///abs/dir?fsync=true")
    assert isinstance(backend, FileStorageBackend) and backend.fsync is True
    with pytest.raises(ConfigurationError, match="fsync"):
        storage_from_url("file:///abs/dir?fsync=maybe")


def test_unknown_scheme_suggests_the_closest() -> None:
    with pytest.raises(ConfigurationError) as info:
        storage_from_url("sqlit:///wf.db")
    message = str(info.value)
    assert "'sqlit'" in message
    assert "Did you mean 'sqlite'?" in message
    for scheme in ("memory", "sqlite", "file", "postgresql", "mysql", "redis"):
        assert scheme in message


def test_unknown_scheme_without_close_match() -> None:
    with pytest.raises(ConfigurationError) as info:
        storage_from_url("zzzz://x")
    assert "Did you mean" not in str(info.value)
    assert "'zzzz'" in str(info.value)


def test_not_a_url() -> None:
    with pytest.raises(ConfigurationError, match="scheme://"):
        storage_from_url("just/a/path.db")


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_missing_extra_names_the_pip_install(scheme: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver's absence is simulated (it is installed here): a None entry in
    sys.modules makes ``import asyncpg`` fail as it does without the extra."""
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    monkeypatch.delitem(sys.modules, "pyworkflow.storage.postgres", raising=False)
    with pytest.raises(ConfigurationError) as info:
        storage_from_url(f"{scheme}://user:secret@db.example.com/app")
    message = str(info.value)
    assert "pip install 'pyworkflow-engine[postgres]'" in message
    assert "secret" not in message
    with pytest.raises(ConfigurationError, match=r"pyworkflow-engine\[postgres\]"):
        storage_from_config({"type": scheme, "dsn": "postgresql://db/app"})


def test_config_dicts(tmp_path: Path) -> None:
    assert isinstance(storage_from_config({"type": "memory"}), InMemoryStorageBackend)

    sqlite = storage_from_config({"type": "sqlite", "path": tmp_path / "wf.db"})
    assert isinstance(sqlite, SQLiteStorageBackend)
    assert sqlite.path == os.fspath(tmp_path / "wf.db")
    full = storage_from_config({"type": "sqlite", "path": "wf.db", "synchronous": "FULL"})
    assert isinstance(full, SQLiteStorageBackend) and full.synchronous == "FULL"

    for key in ("path", "base_path"):
        file = storage_from_config({"type": "file", key: tmp_path / "data"})
        assert isinstance(file, FileStorageBackend)
        assert file.base_path == tmp_path / "data"

    via_url = storage_from_config({"url": "sqlite:///wf.db"})
    assert isinstance(via_url, SQLiteStorageBackend) and via_url.path == "wf.db"
    assert not any(tmp_path.iterdir())


def test_config_errors() -> None:
    with pytest.raises(ConfigurationError, match="'mongo'"):
        storage_from_config({"type": "mongo"})
    with pytest.raises(ConfigurationError, match="Did you mean 'sqlite'"):
        storage_from_config({"type": "sqllite"})
    with pytest.raises(ConfigurationError, match="type"):
        storage_from_config({"path": "wf.db"})
    with pytest.raises(ConfigurationError, match="does not take.*colour"):
        storage_from_config({"type": "sqlite", "colour": "blue"})
    with pytest.raises(ConfigurationError, match="synchronous"):
        storage_from_config({"type": "sqlite", "synchronous": "OFF"})


def test_package_does_not_import_optional_drivers() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pyworkflow.storage; "
        "print(sorted(m for m in ('asyncpg', 'aiomysql', 'redis') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- server databases: PostgreSQL and MySQL/MariaDB (built, never connected) -----------------


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "PostgreSQL"])
def test_postgres_url(scheme: str) -> None:
    pytest.importorskip("asyncpg")
    from pyworkflow.storage.postgres import PostgresStorageBackend

    url = f"{scheme}://app:s3cr%40t@db.example.com:6543/orders?schema=wf&min_size=2&max_size=5"
    backend = storage_from_url(url)
    assert isinstance(backend, PostgresStorageBackend)
    assert (backend.host, backend.port, backend.database, backend.user) == (
        "db.example.com",
        6543,
        "orders",
        "app",
    )
    assert (backend.schema, backend.min_size, backend.max_size) == ("wf", 2, 5)
    assert backend.application_name == "pyworkflow"
    assert backend.capabilities >= {"persistent", "cross_process"}
    for text in (repr(backend), backend.label):
        assert "s3cr" not in text and "db.example.com" in text


def test_postgres_url_defaults_and_passthrough_options() -> None:
    pytest.importorskip("asyncpg")
    from pyworkflow.storage.postgres import PostgresStorageBackend

    backend = storage_from_url(
        "postgresql://localhost/app?sslmode=disable&application_name=x&statement_cache_size=0"
    )
    assert isinstance(backend, PostgresStorageBackend)
    assert (backend.schema, backend.port, backend.min_size, backend.max_size) == (
        "public",
        5432,
        1,
        10,
    )
    assert (backend.application_name, backend.statement_cache_size) == ("x", 0)
    # Options asyncpg understands stay in the DSN it receives; ours are taken out.
    assert backend._dsn == "postgresql://localhost/app?sslmode=disable"


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ("schema=bad-name", "schema"),
        ("schema=x;DROP", "schema"),
        ("min_size=many", "min_size"),
        ("min_size=5&max_size=2", "pool size"),
    ],
)
def test_postgres_url_errors_hide_the_password(query: str, match: str) -> None:
    pytest.importorskip("asyncpg")
    with pytest.raises(ConfigurationError, match=match) as info:
        storage_from_url(f"postgresql://app:hunter2@db/orders?{query}")
    assert "hunter2" not in str(info.value)


def test_postgres_config_dict() -> None:
    pytest.importorskip("asyncpg")
    from pyworkflow.storage.postgres import PostgresStorageBackend

    backend = storage_from_config(
        {"type": "postgresql", "host": "db", "user": "app", "password": "pw", "schema": "wf"}
    )
    assert isinstance(backend, PostgresStorageBackend)
    assert (backend.host, backend.user, backend.schema) == ("db", "app", "wf")
    assert "'pw'" not in repr(backend)


def test_mysql_url() -> None:
    pytest.importorskip("aiomysql")
    from pyworkflow.storage.mysql import MySQLStorageBackend

    url = "mysql://app:s3cr%2Ft@db.example.com:3307/orders?max_size=20&connect_timeout=2.5"
    backend = storage_from_url(url)
    assert isinstance(backend, MySQLStorageBackend)
    assert (backend.host, backend.port, backend.database, backend.user) == (
        "db.example.com",
        3307,
        "orders",
        "app",
    )
    assert (backend.min_size, backend.max_size, backend.connect_timeout) == (1, 20, 2.5)
    assert backend._password == "s3cr/t"  # percent-decoded
    assert backend.capabilities >= {"persistent", "cross_process"}
    for text in (repr(backend), backend.label):
        assert "s3cr" not in text and "db.example.com" in text
    defaults = storage_from_url("mysql://db/orders")
    assert isinstance(defaults, MySQLStorageBackend)
    assert (defaults.port, defaults.min_size, defaults.max_size) == (3306, 1, 10)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("mysql://app:hunter2@db/orders?charset=latin1", "unsupported option"),
        ("mysql://app:hunter2@db/orders?max_size=lots", "max_size"),
        ("mysql://app:hunter2@db/orders?connect_timeout=soon", "connect_timeout"),
        ("mysql://app:hunter2@db/orders?min_size=3&max_size=1", "pool size"),
        ("mysql://app:hunter2@db", "needs a database"),
    ],
)
def test_mysql_url_errors_hide_the_password(url: str, match: str) -> None:
    pytest.importorskip("aiomysql")
    with pytest.raises(ConfigurationError, match=match) as info:
        storage_from_url(url)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("version", "skip_locked", "collation"),
    [
        ("5.5.5-10.11.6-MariaDB-0+deb12u1", True, "utf8mb4_nopad_bin"),
        ("10.5.23-MariaDB", False, "utf8mb4_nopad_bin"),
        ("8.0.36-0ubuntu0.22.04.1", True, "utf8mb4_0900_bin"),
        ("8.0.13", True, "utf8mb4_bin"),
        ("5.7.44-log", False, "utf8mb4_bin"),
    ],
)
def test_mysql_server_traits(version: str, skip_locked: bool, collation: str) -> None:
    pytest.importorskip("aiomysql")
    from pyworkflow.storage.mysql import server_traits

    assert server_traits(version) == (skip_locked, collation)
