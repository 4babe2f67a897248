"""``pyworkflow setup`` and ``pyworkflow quickstart``: the two commands a newcomer runs first.

``setup`` writes ``pyworkflow.config.yaml`` (asking, or from flags) and then checks that
what it names answers: the storage (connect and one read), the Celery broker (a kombu
connection) and the workflow modules (found on the import path, not imported: importing
a script can start runs). It prints one row per check and exits 1 if one failed, so a
typo in a URL shows up now rather than at the first run. URLs are always shown with
their secrets masked.

``quickstart DIR`` scaffolds a project that runs as it is: an order workflow, its config
(embedded SQLite) and a pytest test.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import stat
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import click
import yaml

from pyworkflow.cli import CliContext, pass_cli
from pyworkflow.cli.output import emit_list
from pyworkflow.core.config import (
    CONFIG_FILE,
    DEFAULT_SQLITE_PATH,
    configure_from_yaml,
    get_config,
    new_storage,
)
from pyworkflow.storage.config import known_schemes
from pyworkflow.storage.urls import REDACTED, redact_url

#: Storage kinds offered by ``setup``, with the URL proposed for each.
STORAGE_DEFAULTS: dict[str, str] = {
    "sqlite": f"sqlite:///{DEFAULT_SQLITE_PATH}",
    "file": "file://.pyworkflow/data",
    "postgresql": "postgresql://postgres@localhost:5432/postgres",
    "mysql": "mysql://root@localhost:3306/pyworkflow",
    "redis": "redis://localhost:6379/1",
    "dynamodb": "dynamodb://pyworkflow?region=us-east-1",
}
#: Spellings of a kind accepted by ``--storage`` besides the names above.
_KIND_ALIASES = {"postgres": "postgresql", "sqlite3": "sqlite", "mariadb": "mysql"}
DEFAULT_BROKER = "redis://localhost:6379/0"
CELERY_HINT = 'pip install "pyworkflow-engine[celery]"'
_ENV_OVERRIDES = {
    "storage": "PYWORKFLOW_STORAGE",
    "runtime": "PYWORKFLOW_RUNTIME",
    "default_runtime": "PYWORKFLOW_DEFAULT_RUNTIME",
    "celery_broker": "PYWORKFLOW_CELERY_BROKER",
    "modules": "PYWORKFLOW_MODULES",
    "module": "PYWORKFLOW_MODULE",
}


@dataclass
class Check:
    """One row of setup's report."""

    component: str
    setting: str
    status: str  # "ok" or "failed"
    detail: str


# -- secrets ----------------------------------------------------------------------------------


def mask_url(url: str) -> str:
    """``url`` without its secrets: the password (and, for DynamoDB, whose user name is
    an access key id, the whole user-info) and secret query values read ``***``."""
    keep_user = not url.lower().startswith("dynamodb:")
    return redact_url(url, keep_user=keep_user)


def _secrets_of(url: str) -> list[str]:
    """The secret parts of ``url`` as they may appear in a driver's error message."""
    try:
        parts = urlsplit(url)
        password, user = parts.password, parts.username
    except ValueError:
        return []
    found = [password] if password else []
    if user and url.lower().startswith("dynamodb:"):
        found.append(user)
    # Longest first, so a secret that contains another is replaced whole.
    return sorted({s for raw in found for s in (raw, unquote(raw)) if s}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (an error message) with ``url`` and its secrets masked: drivers are not
    all careful about what they echo."""
    text = text.replace(url, mask_url(url))
    for secret in _secrets_of(url):
        text = text.replace(secret, REDACTED)
    return text


def _has_secret(url: str) -> bool:
    return mask_url(url) != url


def _describe_spec(spec: Any) -> str:
    """How a configured storage (URL, config mapping or ``None``) is shown."""
    if spec is None:
        return f"sqlite:///{DEFAULT_SQLITE_PATH} (default)"
    if isinstance(spec, str):
        return mask_url(spec)
    if isinstance(spec, dict):
        shown = []
        for key, value in spec.items():
            if key == "url" and isinstance(value, str):
                shown.append(f"url={mask_url(value)}")
            elif key in ("type", "path", "base_path", "db_path", "synchronous", "fsync"):
                shown.append(f"{key}={value}")
            else:  # a constructor option of a server backend: may be a credential
                shown.append(f"{key}={mask_url(str(value)) if '://' in str(value) else '...'}")
        return " ".join(shown)
    return type(spec).__name__


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- checks -----------------------------------------------------------------------------------


async def _probe_storage(spec: Any) -> str:
    backend = new_storage(spec)
    if backend is None:  # a backend object: only configure() can set one, not the file
        raise click.ClickException("the configured storage is an object; setup checks URLs")
    started = time.monotonic()
    try:
        await backend.connect()
        runs = await backend.list_runs(limit=1)
    finally:
        await backend.close()
    elapsed = (time.monotonic() - started) * 1000
    kind = type(backend).__name__.removesuffix("StorageBackend") or type(backend).__name__
    seen = "has runs" if runs else "no runs yet"
    return f"{kind}: connected and read in {elapsed:.0f} ms ({seen})"


def check_storage(spec: Any, timeout: float) -> Check:
    """Connect to the configured storage and read one run (within ``timeout`` seconds)."""
    shown = _describe_spec(spec)
    raw = spec if isinstance(spec, str) else ""
    try:
        detail = asyncio.run(asyncio.wait_for(_probe_storage(spec), timeout))
    except TimeoutError:
        return Check("storage", shown, "failed", f"no answer within {timeout:g} s")
    except Exception as exc:  # every failure is a row of the report, not a crash
        return Check(
            "storage", shown, "failed", scrub(_one_line(exc), raw) if raw else _one_line(exc)
        )
    if isinstance(spec, str) and spec.startswith("memory:"):
        detail += "; memory storage keeps nothing between processes"
    return Check("storage", shown, "ok", detail)


def check_broker(url: str, timeout: float) -> Check:
    """Open a kombu connection to the Celery broker (needs the ``celery`` extra)."""
    shown = mask_url(url)
    try:  # kombu comes with the celery extra (imported by name: untyped)
        kombu = importlib.import_module("kombu")
    except ImportError:
        return Check("broker", shown, "failed", f"needs the celery extra: {CELERY_HINT}")
    started = time.monotonic()
    try:
        with kombu.Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=timeout
            )
            transport = conn.transport_cls
    except Exception as exc:  # every failure is a row of the report, not a crash
        return Check("broker", shown, "failed", scrub(_one_line(exc), url))
    elapsed = (time.monotonic() - started) * 1000
    return Check("broker", shown, "ok", f"{transport}: connected in {elapsed:.0f} ms")


def check_module(name: str) -> Check:
    """Whether module ``name`` can be found from this directory. The module itself is
    not imported (a script's top level may start runs); the packages above a dotted
    name are, as finding it requires."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:  # workers and `pyworkflow --module` import from the project directory
        sys.path.insert(0, cwd)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        return Check("module", name, "failed", _one_line(exc))
    finally:
        if added:
            sys.path.remove(cwd)
    if spec is None:
        return Check("module", name, "failed", f"no module named {name!r} here or installed")
    return Check("module", name, "ok", f"found: {spec.origin}")


def run_checks(timeout: float) -> list[Check]:
    """Check what the effective configuration names (file < environment < flags)."""
    config = get_config()
    checks = [check_storage(config.storage, timeout)]
    runtime_detail = (
        "runs execute in the process that starts or resumes them"
        if config.default_runtime == "local"
        else "runs are enqueued for Celery workers (pyworkflow worker, pyworkflow scheduler)"
    )
    checks.append(Check("runtime", config.default_runtime, "ok", runtime_detail))
    if config.default_runtime == "celery":
        try:
            import celery  # noqa: F401
        except ImportError:
            checks.append(
                Check("celery", "-", "failed", f"the celery extra is missing: {CELERY_HINT}")
            )
        checks.append(check_broker(config.celery_broker or DEFAULT_BROKER, timeout))
    checks.extend(check_module(name) for name in config.modules)
    return checks


# -- the file ---------------------------------------------------------------------------------


def config_text(storage: str, runtime: str, broker: str | None, modules: list[str]) -> str:
    """The YAML ``setup`` writes: only keys :mod:`pyworkflow.core.config` reads."""
    data: dict[str, Any] = {"storage": storage, "runtime": runtime}
    if modules:
        data["modules"] = modules
    if runtime == "celery" or broker:
        data["celery"] = {"broker": broker or DEFAULT_BROKER}
    header = (
        "# PyWorkflow configuration, read from the directory a process starts in.\n"
        "# Environment variables (PYWORKFLOW_STORAGE, ...) and command-line options override it.\n"
        "# Written by `pyworkflow setup`; check it again with `pyworkflow setup --check-only`.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def _write_config(path: Path, text: str, secret: bool) -> None:
    if secret:  # a password in the file: readable by its owner only
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    else:
        path.write_text(text)


def _storage_url(value: str) -> str:
    """A ``--storage`` value: a URL as given, or a kind name for its default URL."""
    if "://" in value:
        scheme = value.partition("://")[0].lower()
        if scheme not in known_schemes():
            raise click.BadParameter(
                f"unknown storage URL scheme {scheme!r}; known: {', '.join(known_schemes())}",
                param_hint="--storage",
            )
        return value
    kind = _KIND_ALIASES.get(value.lower(), value.lower())
    if kind == "memory":
        return "memory://"
    if kind not in STORAGE_DEFAULTS:
        raise click.BadParameter(
            f"{value!r} is neither a URL nor a storage kind ({', '.join(STORAGE_DEFAULTS)})",
            param_hint="--storage",
        )
    return STORAGE_DEFAULTS[kind]


def _note(cli: CliContext, text: str) -> None:
    """A message for people: stdout with tables, stderr when stdout is for scripts."""
    click.echo(text, err=cli.output != "table")


def _split_modules(values: tuple[str, ...] | list[str]) -> list[str]:
    return [m.strip() for value in values for m in value.split(",") if m.strip()]


def _ask(
    storage: str | None, runtime: str | None, broker: str | None, modules: list[str] | None
) -> tuple[str, str, str | None, list[str]]:
    """Prompt for every value not given as a flag."""
    if storage is None or "://" not in storage:
        kinds = list(STORAGE_DEFAULTS)
        default_kind = _KIND_ALIASES.get((storage or "sqlite").lower(), (storage or "sqlite"))
        kind = click.prompt(
            "Storage",
            type=click.Choice(kinds, case_sensitive=False),
            default=default_kind if default_kind in kinds else "sqlite",
        )
        storage = click.prompt("Storage URL", default=STORAGE_DEFAULTS[kind.lower()])
        assert storage is not None
    if runtime is None:
        runtime = click.prompt(
            "Runtime (local: in your process; celery: on workers)",
            type=click.Choice(["local", "celery"]),
            default="celery" if broker else "local",
        )
    if runtime == "celery" and broker is None:
        broker = click.prompt("Celery broker URL", default=DEFAULT_BROKER)
    if modules is None:
        suggestion = "workflows" if Path("workflows.py").exists() else ""
        answer = click.prompt(
            "Workflow module(s), comma-separated (empty for none)",
            default=suggestion,
            show_default=bool(suggestion),
        )
        modules = _split_modules((answer,))
    assert runtime is not None
    return storage, runtime, broker, modules


def _env_overrides() -> list[str]:
    return sorted({var for var in _ENV_OVERRIDES.values() if os.environ.get(var)})


@click.command(short_help="Write pyworkflow.config.yaml and check its services.")
@click.option("--storage", "storage", help="Storage URL, or a kind for its default URL.")
@click.option("--runtime", type=click.Choice(["local", "celery"]), help="Where runs execute.")
@click.option("--broker", help=f"Celery broker URL (runtime celery; default {DEFAULT_BROKER}).")
@click.option(
    "--module", "-m", "modules", multiple=True, help="Workflow module (repeat or comma-separate)."
)
@click.option("--yes", "-y", is_flag=True, help="Ask nothing: flags, else defaults.")
@click.option("--force", is_flag=True, help=f"Overwrite an existing {CONFIG_FILE}.")
@click.option("--no-check", is_flag=True, help="Write the file only; do not contact services.")
@click.option("--check-only", is_flag=True, help=f"Write nothing: check the current {CONFIG_FILE}.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds each service may take to answer.",
)
@pass_cli
@click.pass_context
def setup(
    ctx: click.Context,
    cli: CliContext,
    storage: str | None,
    runtime: str | None,
    broker: str | None,
    modules: tuple[str, ...],
    yes: bool,
    force: bool,
    no_check: bool,
    check_only: bool,
    timeout: float,
) -> None:
    """Write pyworkflow.config.yaml, then check that its storage and broker answer.

    Asks for the storage, runtime, broker and workflow modules (or takes them from the
    flags; the global options of the same names count too). Prints what it checked and
    exits 1 if a check failed. Passwords are never printed.
    """
    if no_check and check_only:
        raise click.UsageError("--no-check and --check-only exclude each other")
    path = Path.cwd() / CONFIG_FILE
    if not check_only:
        if path.exists() and not force:
            raise click.ClickException(
                f"{CONFIG_FILE} already exists here; pass --force to overwrite it "
                "(or --check-only to check it)"
            )
        root = ctx.find_root().params  # `pyworkflow --storage X setup` means the same
        storage = storage or root.get("storage")
        runtime = runtime or root.get("runtime")
        broker = broker or root.get("broker")
        chosen = _split_modules(modules or tuple(root.get("modules") or ()))
        if yes:
            url = _storage_url(storage or "sqlite")
            runtime = runtime or ("celery" if broker else "local")
            module_list = chosen
        else:
            url, runtime, broker, module_list = _ask(
                storage, runtime, broker, chosen if modules or root.get("modules") else None
            )
        url = _storage_url(url)
        secret = _has_secret(url) or bool(broker and _has_secret(broker))
        _write_config(path, config_text(url, runtime, broker, module_list), secret)
        _note(cli, f"wrote {path}" + (" (mode 600: it holds a password)" if secret else ""))
        configure_from_yaml(path)  # what was written is what the loader reads back
    elif not path.exists():
        _note(cli, f"no {CONFIG_FILE} here: checking the defaults and environment")
    if no_check:
        return
    overridden = _env_overrides()
    if overridden:
        _note(cli, f"note: set in the environment (overrides the file): {', '.join(overridden)}")
    checks = run_checks(timeout)
    emit_list(
        cli.output,
        "checks",
        [asdict(c) for c in checks],
        ["component", "setting", "status", "detail"],
        title="pyworkflow setup",
    )
    failed = [c.component for c in checks if c.status != "ok"]
    if failed:
        raise click.ClickException(f"check failed: {', '.join(failed)} (see the table)")
    if not check_only:
        _note(cli, "next: python -m <your module>, then: pyworkflow runs list")


COMMANDS = [setup]
