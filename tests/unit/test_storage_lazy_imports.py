"""Every backend class is importable from ``pyworkflow.storage``; the driver loads on
first use, and a missing driver is reported, naming its extra, when the backend is built.

The drivers are installed here, so their absence is simulated in a fresh interpreter: a
``None`` entry in ``sys.modules`` makes ``import asyncpg`` fail as it does on a base
install.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pyworkflow.storage

ROOT = Path(__file__).resolve().parents[2]
DRIVERS = ["asyncpg", "aiomysql", "redis", "aioboto3", "aiobotocore", "botocore"]
SERVER_BACKENDS = {
    "PostgresStorageBackend": "postgres",
    "MySQLStorageBackend": "mysql",
    "RedisStorageBackend": "redis",
    "DynamoDBStorageBackend": "dynamodb",
}


def _python(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_every_backend_imports_without_its_driver_and_building_one_names_the_extra() -> None:
    found = _python(
        f"""
        import json, sys
        for driver in {DRIVERS!r}:
            sys.modules[driver] = None  # not installed
        from pyworkflow.storage import (
            DynamoDBStorageBackend, FileStorageBackend, InMemoryStorageBackend,
            MySQLStorageBackend, PostgresStorageBackend, RedisStorageBackend,
            SQLiteStorageBackend, StorageBackend,
        )
        from pyworkflow.core.exceptions import ConfigurationError

        errors = {{}}
        for cls in (PostgresStorageBackend, MySQLStorageBackend, RedisStorageBackend,
                    DynamoDBStorageBackend):
            assert issubclass(cls, StorageBackend)
            for build in (lambda: cls("url://x"), lambda: cls.from_url("url://x")):
                try:
                    build()
                except ConfigurationError as exc:
                    errors[cls.__name__] = [str(exc), exc.metadata.get("extra")]
                else:
                    raise AssertionError(f"{{cls.__name__}} was built without its driver")
        # The embedded backends need nothing more and work as usual.
        assert type(InMemoryStorageBackend()).__name__ == "InMemoryStorageBackend"
        assert SQLiteStorageBackend.__module__ == "pyworkflow.storage.sqlite"
        assert FileStorageBackend.__module__ == "pyworkflow.storage.file"
        print(json.dumps(errors))
        """
    )
    assert set(found) == set(SERVER_BACKENDS)
    for name, extra in SERVER_BACKENDS.items():
        message, named_extra = found[name]  # type: ignore[misc]
        assert named_extra == extra
        assert f"pip install 'pyworkflow-engine[{extra}]'" in message
        assert name in message


def test_importing_the_package_imports_no_driver_and_no_server_backend() -> None:
    found = _python(
        f"""
        import json, sys
        import pyworkflow.storage
        from pyworkflow.storage import StorageBackend, storage_from_url
        loaded = [m for m in {DRIVERS!r} if m in sys.modules]
        backends = [m for m in sys.modules
                    if m.split(".")[-1] in ("postgres", "mysql", "redis", "dynamodb")]
        print(json.dumps({{"drivers": loaded, "backends": backends}}))
        """
    )
    assert found == {"drivers": [], "backends": []}


@pytest.mark.parametrize("name", sorted(SERVER_BACKENDS) + ["SQLiteStorageBackend"])
def test_with_the_driver_installed_the_name_is_the_backend_class(name: str) -> None:
    module = {
        "PostgresStorageBackend": "pyworkflow.storage.postgres",
        "MySQLStorageBackend": "pyworkflow.storage.mysql",
        "RedisStorageBackend": "pyworkflow.storage.redis",
        "DynamoDBStorageBackend": "pyworkflow.storage.dynamodb",
        "SQLiteStorageBackend": "pyworkflow.storage.sqlite",
    }[name]
    __import__(module)
    assert getattr(pyworkflow.storage, name) is getattr(sys.modules[module], name)
    assert name in dir(pyworkflow.storage) and name in pyworkflow.storage.__all__


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchStorageBackend"):
        pyworkflow.storage.NoSuchStorageBackend  # noqa: B018
    with pytest.raises(ImportError):
        from pyworkflow.storage import NoSuchStorageBackend  # noqa: F401


def test_a_driver_installed_later_in_the_process_is_found() -> None:
    """The stand-in is not cached: once the driver can be imported, the name is the
    real class (an application may install or mock drivers after importing us)."""
    found = _python(
        """
        import json, sys
        sys.modules["asyncpg"] = None
        import pyworkflow.storage as storage
        before = storage.PostgresStorageBackend.__module__
        del sys.modules["asyncpg"]  # now importable again
        after = storage.PostgresStorageBackend.__module__
        print(json.dumps({"before": before, "after": after}))
        """
    )
    assert found == {"before": "pyworkflow.storage", "after": "pyworkflow.storage.postgres"}
