"""Build a storage backend from a URL or a config dict.

Backends are found through a registry of lazy import paths keyed by URL scheme, so
naming a backend never imports another backend's driver, and a backend whose optional
dependency is missing fails with the ``pip install`` line that fixes it::

    storage_from_url("sqlite:///.pyworkflow/pyworkflow.db")
    storage_from_url("sqlite:////var/lib/app/wf.db?synchronous=FULL")
    storage_from_url("file:///var/lib/app/workflows")
    storage_from_url("memory://")
    storage_from_config({"type": "sqlite", "path": "wf.db"})

Backends that live outside this module's built-in parsers (postgres, mysql, redis) are
built with ``Backend.from_url(url)`` when the class defines it, else ``Backend(url)``;
from a config dict, with ``Backend(**options)``.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from pyworkflow.core.exceptions import ConfigurationError
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.urls import parse_flag, parse_url, redact_url


@dataclass(frozen=True, slots=True)
class _Entry:
    target: str  # "module:Class", imported only when the scheme is used
    extra: str | None  # the pip extra that provides its dependencies, if any


_REGISTRY: dict[str, _Entry] = {
    "memory": _Entry("pyworkflow.storage.memory:InMemoryStorageBackend", None),
    "sqlite": _Entry("pyworkflow.storage.sqlite:SQLiteStorageBackend", None),
    "file": _Entry("pyworkflow.storage.file:FileStorageBackend", None),
    "postgresql": _Entry("pyworkflow.storage.postgres:PostgresStorageBackend", "postgres"),
    "postgres": _Entry("pyworkflow.storage.postgres:PostgresStorageBackend", "postgres"),
    "mysql": _Entry("pyworkflow.storage.mysql:MySQLStorageBackend", "mysql"),
    "redis": _Entry("pyworkflow.storage.redis:RedisStorageBackend", "redis"),
    "rediss": _Entry("pyworkflow.storage.redis:RedisStorageBackend", "redis"),
    "unix": _Entry("pyworkflow.storage.redis:RedisStorageBackend", "redis"),
    "dynamodb": _Entry("pyworkflow.storage.dynamodb:DynamoDBStorageBackend", "dynamodb"),
}

_WINDOWS_DRIVE = re.compile(r"^/[A-Za-z]:")


def known_schemes() -> list[str]:
    """The URL schemes (and config ``type`` values) this module understands."""
    return sorted(_REGISTRY)


def _unknown(kind: str, name: str) -> ConfigurationError:
    known = known_schemes()
    close = difflib.get_close_matches(name.lower(), known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigurationError(
        f"unknown storage {kind} {name!r}.{hint} Known: {', '.join(known)}", name=name
    )


# Backend classes by name, for ``from pyworkflow.storage import PostgresStorageBackend``.
_CLASSES: dict[str, _Entry] = {
    entry.target.partition(":")[2]: entry for entry in _REGISTRY.values()
}


def backend_names() -> list[str]:
    """The class names of the built-in backends (importable from ``pyworkflow.storage``)."""
    return sorted(_CLASSES)


def _load(scheme: str) -> type[StorageBackend]:
    return _import(_REGISTRY[scheme], f"storage {scheme!r}")


def _import(entry: _Entry, what: str) -> type[StorageBackend]:
    module_name, _, attr = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a missing driver is a missing extra; a missing module of ours is a bug.
        if entry.extra is None or (exc.name or "").startswith("pyworkflow"):
            raise
        raise ConfigurationError(
            f"{what} needs the optional dependencies of the {entry.extra!r} extra "
            f"(missing module {exc.name!r}); install them with: "
            f"pip install 'pyworkflow-engine[{entry.extra}]'",
            extra=entry.extra,
        ) from exc
    cls = getattr(module, attr)
    if not (isinstance(cls, type) and issubclass(cls, StorageBackend)):
        raise ConfigurationError(f"{entry.target} is not a StorageBackend")
    return cls


def backend_class(name: str) -> type[StorageBackend]:
    """The backend class called ``name``, its module (and driver) imported now.

    When its driver is not installed, a stand-in class of that name is returned instead:
    importing the name works on a base install (code that only names the class, in a
    type hint or an ``isinstance`` check, keeps working), and building one raises the
    :class:`ConfigurationError` that names the extra to install.

    Raises:
        KeyError: no built-in backend has this name.
    """
    try:
        return _import(_CLASSES[name], name)
    except ConfigurationError as exc:
        if "extra" not in exc.metadata:
            raise
        return _unavailable(name, exc)


def _unavailable(name: str, error: ConfigurationError) -> type[StorageBackend]:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise ConfigurationError(error.message, **error.metadata) from error.__cause__

    namespace: dict[str, Any] = {
        "__new__": refuse,
        "from_url": staticmethod(refuse),
        "__module__": "pyworkflow.storage",
        "__doc__": f"Not available: {error.message}",
    }
    return type(name, (StorageBackend,), namespace)


def _local_path(path: str) -> str:
    # "file:///C:/dir" -> "C:/dir": the slash before a drive letter is URL syntax.
    return path[1:] if _WINDOWS_DRIVE.match(path) else path


def _sqlite_from_url(url: str) -> StorageBackend:
    from pyworkflow.storage.sqlite import SQLiteStorageBackend

    parsed = parse_url(url, options={"synchronous"}, server=False)
    if parsed.parts.netloc:
        raise ConfigurationError(
            f"SQLite URL {parsed.safe!r} has a host part; use sqlite:///relative/path.db "
            "(three slashes) or sqlite:////absolute/path.db (four)"
        )
    path = unquote(parsed.parts.path)
    # sqlite:// and sqlite:///:memory: are the in-memory database (SQLAlchemy's reading);
    # otherwise the first slash ends the (empty) host: sqlite:///rel.db, sqlite:////abs.db.
    db_path = ":memory:" if path in ("", "/", "/:memory:") else _local_path(path[1:])
    synchronous = parsed.options.get("synchronous", "NORMAL")
    return SQLiteStorageBackend(db_path, synchronous=synchronous)


def _file_from_url(url: str) -> StorageBackend:
    from pyworkflow.storage.file import FileStorageBackend

    parsed = parse_url(url, options={"fsync"}, server=False)
    fsync = parsed.flag("fsync", False)
    # file:///abs/dir has an empty host; file://relative/dir puts "relative" in the host.
    path = _local_path(unquote(parsed.parts.netloc + parsed.parts.path))
    if not path:
        return FileStorageBackend(fsync=fsync)
    return FileStorageBackend(path, fsync=fsync)


def _memory_from_url(url: str) -> StorageBackend:
    from pyworkflow.storage.memory import InMemoryStorageBackend

    parsed = parse_url(url, server=False)
    if parsed.parts.netloc or parsed.parts.path.strip("/"):
        raise ConfigurationError(
            f"memory storage takes no path: use 'memory://', not {parsed.safe!r}"
        )
    return InMemoryStorageBackend()


_URL_PARSERS: dict[str, Callable[[str], StorageBackend]] = {
    "memory": _memory_from_url,
    "sqlite": _sqlite_from_url,
    "file": _file_from_url,
}


def storage_from_url(url: str) -> StorageBackend:
    """The backend a storage URL names (not yet connected: backends connect lazily).

    Raises:
        ConfigurationError: malformed URL, unknown scheme (with a did-you-mean hint),
            unsupported option, or a backend whose extra is not installed.
    """
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ConfigurationError(
            f"not a storage URL: {redact_url(url)!r}; expected scheme://..., one of "
            f"{', '.join(s + '://' for s in known_schemes())}"
        )
    scheme = scheme.lower()
    if scheme not in _REGISTRY:
        raise _unknown("URL scheme", scheme)
    parser = _URL_PARSERS.get(scheme)
    if parser is not None:
        return parser(url)
    cls = _load(scheme)
    from_url = getattr(cls, "from_url", None)
    backend = from_url(url) if callable(from_url) else cls(url)  # type: ignore[call-arg]
    if not isinstance(backend, StorageBackend):
        raise ConfigurationError(f"{cls.__name__}.from_url did not return a StorageBackend")
    return backend


def storage_from_config(cfg: Mapping[str, Any]) -> StorageBackend:
    """The backend a config mapping describes.

    Accepted forms: ``{"url": "sqlite:///wf.db"}``; ``{"type": "memory"}``;
    ``{"type": "sqlite", "path": "wf.db", "synchronous": "FULL"}``;
    ``{"type": "file", "path": "dir"}`` (or ``"base_path"``, plus ``"fsync"``); for other
    registered types, the remaining keys are passed to the backend's constructor.

    Raises:
        ConfigurationError: missing or unknown ``type`` (named in the message), or an
            option the backend does not take.
    """
    options = dict(cfg)
    if "url" in options and "type" not in options:
        url = options.pop("url")
        if options:
            names = ", ".join(sorted(map(str, options)))  # names only: a value may be a secret
            raise ConfigurationError(f"storage config with a url takes no other keys: {names}")
        return storage_from_url(str(url))
    kind = options.pop("type", None)
    if not isinstance(kind, str) or not kind:
        raise ConfigurationError("storage config needs a 'type' (or a 'url')")
    kind = kind.lower()
    if kind not in _REGISTRY:
        raise _unknown("type", kind)

    def take(allowed: set[str]) -> dict[str, Any]:
        unknown = set(options) - allowed
        if unknown:
            raise ConfigurationError(
                f"storage type {kind!r} does not take {', '.join(sorted(unknown))}; "
                f"options: {', '.join(sorted(allowed)) or 'none'}"
            )
        return options

    if kind == "memory":
        take(set())
        from pyworkflow.storage.memory import InMemoryStorageBackend

        return InMemoryStorageBackend()
    if kind == "sqlite":
        from pyworkflow.storage.sqlite import SQLiteStorageBackend

        opts = take({"path", "db_path", "synchronous"})
        path = opts.get("path", opts.get("db_path", ".pyworkflow/pyworkflow.db"))
        return SQLiteStorageBackend(path, synchronous=opts.get("synchronous", "NORMAL"))
    if kind == "file":
        from pyworkflow.storage.file import FileStorageBackend

        opts = take({"path", "base_path", "fsync"})
        path = opts.get("path", opts.get("base_path", ".pyworkflow/data"))
        fsync = opts.get("fsync", False)
        if isinstance(fsync, str):
            fsync = parse_flag("fsync", fsync)
        return FileStorageBackend(path, fsync=bool(fsync))
    cls = _load(kind)
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigurationError(f"storage type {kind!r}: {exc}") from exc


__all__ = ["known_schemes", "storage_from_config", "storage_from_url"]
