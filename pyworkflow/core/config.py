"""Configuration: one process-wide :class:`PyWorkflowConfig`, built from (strongest first)
``configure()`` calls, ``PYWORKFLOW_*`` environment variables and ``./pyworkflow.config.yaml``.

Call arguments (``start(..., storage=...)``) override all of these at the call site.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pyworkflow.core.exceptions import ConfigurationError
from pyworkflow.serialization import policy
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.payloads import DEFAULT_MAX_PAYLOAD_BYTES, set_max_payload_bytes

DEFAULT_SQLITE_PATH = ".pyworkflow/pyworkflow.db"
CONFIG_FILE = "pyworkflow.config.yaml"


@dataclass
class PyWorkflowConfig:
    """Every option ``configure()`` accepts, with its default."""

    storage: StorageBackend | str | dict[str, Any] | None = None
    default_runtime: str = "local"
    default_durable: bool = True
    event_soft_limit: int = 10_000
    event_hard_limit: int = 50_000
    event_warning_interval: int = 100
    max_nesting_depth: int = 3
    default_max_recovery_attempts: int = 3
    lease_ttl: float = 30.0
    timer_poll_interval: float = 1.0
    sqlite_synchronous: str = "NORMAL"
    modules: list[str] = field(default_factory=list)
    celery_broker: str | None = None
    celery_result_backend: str | None = None
    # Celery runtime: run every step inline in its workflow task (no step queue hop).
    celery_inline_steps: bool = False
    # How long a run handed to a queue (a start, a dispatched step, a due timer) may wait
    # for a worker before the recovery sweep decides the message was lost.
    dispatch_timeout: float = 300.0
    # A run waiting for a concurrency slot is looked at again after this many seconds
    # even if no holder handed it the slot (a hand-off lost with its process).
    queue_recheck_interval: float = 30.0
    # Celery runtime: sleeps ending within this many seconds are also sent with a broker
    # countdown (low lateness); 0 leaves every wake-up to the scheduler.
    celery_countdown_window: float = 60.0
    # Celery runtime: how long a worker may hold a message unacknowledged (acks_late: until
    # the task ends) before the broker gives it to another worker: Redis's
    # visibility_timeout, RabbitMQ's consumer timeout (x-consumer-timeout). Must exceed
    # the longest task (a step body, or a workflow task with its inline steps) and the
    # countdown window (a sleep's countdown message is held unacknowledged until due).
    celery_ack_timeout: float = 3600.0
    # Celery runtime: message priorities (@workflow/@step priority=, 0-9, higher first).
    # On RabbitMQ it declares pyworkflow's queues with x-max-priority, which a queue
    # declared without it refuses (delete the drained queues first); on Redis it spreads
    # each queue over ten lists. Off by default for both reasons.
    celery_priorities: bool = False
    # Celery runtime: seconds a warm-shutdown worker (SIGTERM to its main process) lets a
    # running task go on before it hands the task's run back to the other workers.
    celery_shutdown_grace: float = 5.0
    # The largest value stored in one piece (workflow arguments, a step or workflow
    # result, an event, a hook payload), in bytes of JSON; lowered per backend to what
    # its server accepts (MySQL max_allowed_packet).
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    logging: dict[str, Any] = field(default_factory=dict)
    # Store values JSON cannot hold (and read stored ones) with cloudpickle. Unpickling
    # runs code: only for deployments where every writer to the storage is trusted.
    allow_pickle: bool = False
    # Derives hook tokens (HMAC); None: a key file beside the embedded storage. Never
    # shown by repr().
    secret_key: str | None = field(default=None, repr=False)
    # HTTP API and dashboard (`pyworkflow dashboard`): the admin token (every route) and
    # the read-only token (GET routes). Never shown by repr().
    dashboard_token: str | None = field(default=None, repr=False)
    dashboard_read_token: str | None = field(default=None, repr=False)
    # Serve /metrics without a token (for a scraper on a trusted network).
    dashboard_public_metrics: bool = False
    # Count Prometheus metrics in this process when prometheus_client is installed.
    metrics_enabled: bool = True
    # Celery worker (main process) and `pyworkflow scheduler`: serve /metrics on this port.
    metrics_port: int | None = None


_OPTION_NAMES = {f.name for f in dataclasses.fields(PyWorkflowConfig)}
_ALIASES = {"module": "modules", "runtime": "default_runtime", "durable": "default_durable"}
_INT_OPTIONS = {
    "event_soft_limit",
    "event_hard_limit",
    "event_warning_interval",
    "max_nesting_depth",
    "default_max_recovery_attempts",
    "max_payload_bytes",
}
_FLOAT_OPTIONS = {
    "lease_ttl",
    "timer_poll_interval",
    "dispatch_timeout",
    "celery_ack_timeout",
    "queue_recheck_interval",
}
_NON_NEGATIVE_FLOAT_OPTIONS = {"celery_countdown_window", "celery_shutdown_grace"}
_PORT_OPTIONS = {"metrics_port"}  # None (off) or a TCP port
_BOOL_OPTIONS = {
    "default_durable",
    "celery_priorities",
    "celery_inline_steps",
    "allow_pickle",
    "dashboard_public_metrics",
    "metrics_enabled",
}
MIN_SECRET_KEY_LENGTH = 16

_explicit: dict[str, Any] = {}
_config: PyWorkflowConfig | None = None
# The directory get_config() read pyworkflow.config.yaml from (the current directory then).
_project_dir: Path | None = None
_storage: StorageBackend | None = None
# One backend per URL string: repeated calls with the same URL share its connections
# (and, for memory://, its data) instead of opening a new store each time.
_by_url: dict[str, StorageBackend] = {}


def configure(**options: Any) -> None:
    """Set options for this process (merged with earlier ``configure()`` calls).

    Raises:
        ConfigurationError: (a ``ValueError``) an option name is unknown or a value is
            invalid; the message names it and nothing is changed.
    """
    global _config, _storage
    normalized = _normalize(options, source="configure()")
    previous = dict(_explicit)
    _explicit.update(normalized)
    _config = None
    try:
        get_config()  # validate now, at the call that set the bad value
    except ValueError:
        _explicit.clear()
        _explicit.update(previous)
        _config = None
        raise
    if normalized.keys() & {"storage", "sqlite_synchronous"}:
        _storage = None


def get_config() -> PyWorkflowConfig:
    """The effective configuration (file < environment < ``configure()``)."""
    global _config, _project_dir
    if _config is None:
        _project_dir = Path.cwd()
        merged: dict[str, Any] = {}
        merged.update(_from_file(_project_dir / CONFIG_FILE))
        merged.update(_from_env())
        merged.update(_explicit)
        config = PyWorkflowConfig(**merged)
        _validate(config)
        set_max_payload_bytes(config.max_payload_bytes)  # storage checks every write
        _config = config
    return _config


def reset_config() -> None:
    """Forget every ``configure()`` call and the cached storages (tests use this)."""
    global _config, _storage, _project_dir
    _explicit.clear()
    _config = None
    _project_dir = None
    _storage = None
    _by_url.clear()
    set_max_payload_bytes(DEFAULT_MAX_PAYLOAD_BYTES)


def drop_cached_storages() -> None:
    """Forget storage instances (not options): a forked worker process must open its own
    connections rather than share its parent's."""
    global _storage
    _storage = None
    _by_url.clear()


def configure_from_yaml(path: str | os.PathLike[str]) -> None:
    """Apply a ``pyworkflow.config.yaml``-style file as if passed to ``configure()``."""
    values = _from_file(Path(path), required=True)
    configure(**values)


def get_storage() -> StorageBackend:
    """The configured storage backend (created once; SQLite under ``./.pyworkflow/`` by
    default)."""
    global _storage
    if _storage is None:
        _storage = resolve_storage(get_config().storage)
    return _storage


def new_storage(spec: StorageBackend | str | dict[str, Any] | None) -> StorageBackend | None:
    """A backend of its own for the storage ``spec`` names, shared with nobody (for a
    thread with its own event loop: connections belong to one loop); ``None`` when
    ``spec`` is a backend object, which cannot be duplicated.

    Raises:
        ConfigurationError: ``spec`` is none of the accepted forms.
    """
    if isinstance(spec, StorageBackend):
        return None
    from pyworkflow.storage.config import storage_from_config, storage_from_url

    if spec is None:
        sync = get_config().sqlite_synchronous
        return storage_from_url(f"sqlite:///{DEFAULT_SQLITE_PATH}?synchronous={sync}")
    if isinstance(spec, str):
        return storage_from_url(spec)
    if isinstance(spec, dict):
        return storage_from_config(spec)
    raise ConfigurationError(
        f"storage must be a StorageBackend, a URL string or a dict, not {type(spec).__name__}"
    )


def resolve_storage(spec: StorageBackend | str | dict[str, Any] | None) -> StorageBackend:
    """Turn a backend object, URL, config dict or ``None`` (embedded default) into a
    backend (one per URL in this process)."""
    if isinstance(spec, StorageBackend):
        return spec
    if isinstance(spec, str) and spec in _by_url:
        return _by_url[spec]
    backend = new_storage(spec)
    assert backend is not None  # only a backend object has no new instance
    if isinstance(spec, str):
        _by_url[spec] = backend
    return backend


def discover_workflows(module_path: str | list[str] | None = None) -> list[str]:
    """Import the configured workflow modules (or ``module_path``) so their decorators
    register; returns the imported module names. They are looked for in the project
    directory too (:func:`add_project_path`).

    Raises:
        ConfigurationError: a module cannot be imported (the message names it and, when it
            was not found, the directories searched).
    """
    names = [module_path] if isinstance(module_path, str) else module_path
    modules = names if names is not None else get_config().modules
    if modules:
        add_project_path()
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigurationError(
                f"cannot import workflow module {name!r}: {exc}{_searched(name, exc)}"
            ) from exc
    return list(modules)


def project_dir() -> Path:
    """The project directory: where this process reads ``pyworkflow.config.yaml`` from,
    the current directory when the configuration was first built (after Celery's
    ``--workdir`` moved there)."""
    return _project_dir if _project_dir is not None else Path.cwd()


def add_project_path() -> Path:
    """Put the project directory on ``sys.path`` unless it is there already; returns it.

    ``celery -A pyworkflow.celery.app`` imports our app from site-packages and takes the
    current directory off ``sys.path`` again, and a console script's path never held it:
    without this, a worker started beside ``myflows.py`` cannot import it. It goes after
    the standard library (a project's ``queue.py`` or ``email.py`` must not replace the
    stdlib module some library imports later) and before installed packages (the
    project's module wins over a distribution of the same name, as with ``python -m``).
    """
    directory = project_dir()
    present = {os.path.abspath(entry or os.curdir) for entry in sys.path}
    if str(directory) not in present:
        sys.path.insert(_after_stdlib(), str(directory))
    return directory


def _after_stdlib() -> int:
    """The index just past the last standard-library entry of ``sys.path``."""
    end = 0
    for index, entry in enumerate(sys.path):
        if _is_stdlib(os.path.abspath(entry or os.curdir)):
            end = index + 1
    return end


def _is_stdlib(path: str) -> bool:
    paths = sysconfig.get_paths()
    # A venv's platstdlib holds its site-packages: that is not the standard library.
    if _within(path, [os.path.abspath(paths[k]) for k in ("purelib", "platlib")]):
        return False
    stdlib_zip = f"python{sys.version_info[0]}{sys.version_info[1]}.zip"
    stdlib = [os.path.abspath(paths[k]) for k in ("stdlib", "platstdlib")]
    return _within(path, stdlib) or os.path.basename(path) == stdlib_zip


def _within(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root + os.sep) for root in roots)


def _searched(name: str, exc: ImportError) -> str:
    """For a module that was not found: where it was looked for, and the usual fix."""
    missing = getattr(exc, "name", None)
    if not isinstance(exc, ModuleNotFoundError) or not missing:
        return ""
    if name != missing and not name.startswith(f"{missing}."):
        return ""  # the module exists; something it imports is missing
    searched: list[str] = []
    for entry in sys.path:
        path = os.path.abspath(entry or os.curdir)
        if not _is_stdlib(path) and os.path.isdir(path) and path not in searched:
            searched.append(path)
    return (
        f" (searched the project directory {str(project_dir())!r} and sys.path: "
        f"{', '.join(searched)}; start the process from the directory holding the module, "
        "pass Celery's --workdir, or set PYTHONPATH)"
    )


def _normalize(options: dict[str, Any], *, source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw_name, value in options.items():
        name = _ALIASES.get(raw_name, raw_name)
        if name not in _OPTION_NAMES:
            known = ", ".join(sorted(_OPTION_NAMES | set(_ALIASES)))
            raise ConfigurationError(
                f"unknown PyWorkflow option {raw_name!r} in {source}; known: {known}"
            )
        if name == "modules" and isinstance(value, str):
            value = [value]
        out[name] = value
    return out


def _validate(cfg: PyWorkflowConfig) -> None:
    if cfg.default_runtime not in ("local", "celery"):
        raise ConfigurationError(
            f"default_runtime must be 'local' or 'celery', not {cfg.default_runtime!r}"
        )
    for name in _INT_OPTIONS:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigurationError(
                f"option {name!r} must be a non-negative integer, not {value!r}"
            )
    for name in _FLOAT_OPTIONS:
        value = getattr(cfg, name)
        if not isinstance(value, int | float) or value <= 0:
            raise ConfigurationError(f"option {name!r} must be a positive number, not {value!r}")
    for name in _NON_NEGATIVE_FLOAT_OPTIONS:
        value = getattr(cfg, name)
        if not isinstance(value, int | float) or value < 0:
            raise ConfigurationError(f"option {name!r} must be a number >= 0, not {value!r}")
    if cfg.max_payload_bytes < 1:
        raise ConfigurationError(
            f"option 'max_payload_bytes' must be a positive integer, not {cfg.max_payload_bytes!r}"
        )
    if cfg.celery_countdown_window >= cfg.celery_ack_timeout:
        # A countdown message waits unacknowledged in a worker until due: past the ack
        # timeout Redis hands it out again (and again), RabbitMQ closes the channel.
        raise ConfigurationError(
            f"celery_countdown_window ({cfg.celery_countdown_window:g} s) must be shorter "
            f"than celery_ack_timeout ({cfg.celery_ack_timeout:g} s)"
        )
    if cfg.event_soft_limit > cfg.event_hard_limit:
        raise ConfigurationError("event_soft_limit must not exceed event_hard_limit")
    if cfg.sqlite_synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
        raise ConfigurationError(
            f"sqlite_synchronous must be NORMAL, FULL or EXTRA, not {cfg.sqlite_synchronous!r}"
        )
    if not isinstance(cfg.allow_pickle, bool):  # a truthy "false" must not turn it on
        raise ConfigurationError(
            f"option 'allow_pickle' must be True or False, not {cfg.allow_pickle!r}"
        )
    for name in _PORT_OPTIONS:
        port = getattr(cfg, name)
        if port is not None and (
            not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536
        ):
            raise ConfigurationError(
                f"option {name!r} must be a TCP port (1-65535) or None, not {port!r}"
            )
    if not isinstance(cfg.metrics_enabled, bool):
        raise ConfigurationError(
            f"option 'metrics_enabled' must be True or False, not {cfg.metrics_enabled!r}"
        )
    key = cfg.secret_key
    # The value itself is never shown: it is a secret.
    if key is not None and (not isinstance(key, str) or len(key) < MIN_SECRET_KEY_LENGTH):
        raise ConfigurationError(
            f"option 'secret_key' must be a string of at least {MIN_SECRET_KEY_LENGTH} "
            'characters (e.g. the output of: python -c "import secrets; '
            'print(secrets.token_hex(32))")'
        )


# The serialization layer sits below this module: it asks through this reader.
policy.use_setting(lambda: get_config().allow_pickle)


def _from_env() -> dict[str, Any]:
    """``PYWORKFLOW_<OPTION>`` variables, converted to the option's type."""
    out: dict[str, Any] = {}
    # Aliases first, full names last: when both are set the full name wins.
    for name in [*sorted(_ALIASES), *sorted(_OPTION_NAMES)]:
        raw = os.environ.get(f"PYWORKFLOW_{name.upper()}")
        if raw is None or raw == "":
            continue
        target = _ALIASES.get(name, name)
        value: Any = raw
        if target in _INT_OPTIONS | _PORT_OPTIONS:
            value = _convert(int, raw, f"PYWORKFLOW_{name.upper()}")
        elif target in _FLOAT_OPTIONS | _NON_NEGATIVE_FLOAT_OPTIONS:
            value = _convert(float, raw, f"PYWORKFLOW_{name.upper()}")
        elif target in _BOOL_OPTIONS:
            value = raw.strip().lower() in ("1", "true", "yes", "on")
        elif target == "modules":
            value = [m.strip() for m in raw.split(",") if m.strip()]
        out[target] = value
    return out


def _convert(kind: type, raw: str, where: str) -> Any:
    try:
        return kind(raw)
    except ValueError:
        raise ConfigurationError(f"{where}={raw!r} is not a valid {kind.__name__}") from None


def _from_file(path: Path, *, required: bool = False) -> dict[str, Any]:
    """Options from a YAML config file (``module(s)``, ``runtime``, ``storage``, ``celery``)."""
    if not path.exists():
        if required:
            raise ConfigurationError(f"config file {str(path)!r} does not exist")
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"config file {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"config file {str(path)!r} must hold a mapping at top level")
    data = dict(data)
    celery = data.pop("celery", None) or {}
    if not isinstance(celery, dict):
        raise ConfigurationError(f"config file {str(path)!r}: 'celery' must be a mapping")
    for key, value in celery.items():  # celery: {broker: ..., ack_timeout: ...}
        data[f"celery_{key}"] = value
    return _normalize(data, source=str(path))
