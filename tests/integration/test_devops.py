"""The deployment files in ``devops/`` describe a working Celery deployment.

No Docker engine exists on the development and CI machines, so nothing here starts a
container. Instead the tests check what a container would run: the compose file's
structure, the Dockerfile it builds, the environment it passes (read back through
pyworkflow's own configuration), and that every command it starts resolves (the Celery
app module loads and the subcommand exists; the ``pyworkflow`` CLI commands exist).

The ``*_help`` tests start subprocesses and need ``pyworkflow.celery.app`` and
``pyworkflow.cli``; ``-k "not help"`` runs only the structural checks.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from pyworkflow import get_config, reset_config
from pyworkflow.storage.config import storage_from_url

REPO = Path(__file__).resolve().parents[2]
DEVOPS = REPO / "devops"
COMPOSE_FILE = DEVOPS / "docker-compose.yml"
CELERY_APP = "pyworkflow.celery.app"
CELERY_PREFIX = f"celery -A {CELERY_APP} "
# Services built from the pyworkflow image, and the Celery subcommand each one runs.
CELERY_SERVICES = {"worker": "worker", "beat": "beat", "flower": "flower"}


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml must be a mapping"
    return data


def _services() -> dict[str, Any]:
    services = _compose().get("services")
    assert isinstance(services, dict), "docker-compose.yml has no services mapping"
    return services


def _command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    assert cmd, f"service has no command: {service}"
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def _port_pairs(service: dict[str, Any]) -> set[tuple[int, int]]:
    """``(host, container)`` pairs of a service's short-syntax or long-syntax ports."""
    pairs = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            pairs.add((int(port["published"]), int(port["target"])))
        else:
            *host, container = str(port).split(":")
            pairs.add((int(host[-1]) if host else int(container), int(container)))
    return pairs


def _dockerfile(service: dict[str, Any]) -> Path:
    build = service["build"]
    if isinstance(build, str):
        return (DEVOPS / build / "Dockerfile").resolve()
    context = (DEVOPS / build.get("context", ".")).resolve()
    return (context / build.get("dockerfile", "Dockerfile")).resolve()


def _dockerfile_cmd(path: Path) -> list[str]:
    """The last ``CMD`` of a Dockerfile, in exec form (JSON array) or shell form."""
    cmds = re.findall(r"^CMD\s+(.+)$", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert cmds, f"{path} has no CMD"
    last = cmds[-1].strip()
    return json.loads(last) if last.startswith("[") else shlex.split(last)


def _subprocess_env() -> dict[str, str]:
    """This environment minus pyworkflow settings, plus this checkout on the path."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PYWORKFLOW_") or k.startswith("PYWORKFLOW_TEST_")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _run_help(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", *args, "--help"],
        cwd=cwd,
        env=_subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, (
        f"{' '.join(args)} --help exited with {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )
    assert "Usage" in proc.stdout, proc.stdout
    return proc


# --- structure of docker-compose.yml ---------------------------------------------------


def test_compose_defines_broker_workers_beat_and_flower() -> None:
    """`docker compose up` in devops/ starts Redis, workers and beat, and offers Flower."""
    services = _services()
    for name in ("redis", "postgres", "worker", "beat", "flower"):
        assert name in services, f"service {name!r} missing from docker-compose.yml"
    assert str(services["redis"]["image"]).startswith("redis:7")
    assert str(services["postgres"]["image"]).startswith("postgres:")


def test_compose_commands_run_the_pyworkflow_celery_app() -> None:
    """Workers, beat and Flower all load `pyworkflow.celery.app`, as the README documents."""
    services = _services()
    for name, sub in CELERY_SERVICES.items():
        cmd = _command(services[name])
        assert cmd[:4] == ["celery", "-A", CELERY_APP, sub], (name, cmd)
    assert "--port=5555" in _command(services["flower"])


def test_worker_is_scaled_out() -> None:
    """The default deployment runs several workers, so one crashing does not stop runs."""
    worker = _services()["worker"]
    assert int(worker["deploy"]["replicas"]) >= 2


def test_pyworkflow_services_share_storage_and_broker_settings() -> None:
    """Every pyworkflow process talks to the same storage and broker, with the Celery runtime."""
    compose = _compose()
    env = compose.get("x-pyworkflow-env")
    assert isinstance(env, dict), "the shared x-pyworkflow-env mapping is missing"
    for key in ("PYWORKFLOW_STORAGE", "PYWORKFLOW_CELERY_BROKER", "PYWORKFLOW_MODULES"):
        assert env.get(key), f"x-pyworkflow-env lacks {key}"
    assert env.get("PYWORKFLOW_RUNTIME") == "celery"
    assert str(env["PYWORKFLOW_STORAGE"]).startswith("postgresql://")
    assert "@postgres:" in str(env["PYWORKFLOW_STORAGE"])
    assert str(env["PYWORKFLOW_CELERY_BROKER"]).startswith("redis://redis:6379")

    services = compose["services"]
    built = [name for name, svc in services.items() if "build" in svc]
    assert set(CELERY_SERVICES) <= set(built), built
    for name in built:
        svc_env = services[name].get("environment")
        assert isinstance(svc_env, dict), f"{name}: environment must be a mapping"
        for key, value in env.items():
            assert svc_env.get(key) == value, f"{name}: {key} differs from x-pyworkflow-env"


def test_pyworkflow_services_wait_for_healthy_broker_and_storage() -> None:
    """Workers do not start (and crash-loop) before Redis and PostgreSQL accept connections."""
    services = _services()
    for dep in ("redis", "postgres"):
        assert "healthcheck" in services[dep], f"{dep} has no healthcheck"
    for name in CELERY_SERVICES:
        depends = services[name]["depends_on"]
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for dep in ("redis", "postgres"):
            assert depends[dep]["condition"] == "service_healthy", (name, dep)


def test_compose_ports() -> None:
    """Redis answers on 6379 and Flower on 5555 from the host; workers publish no ports."""
    services = _services()
    assert (6379, 6379) in _port_pairs(services["redis"])
    assert (5555, 5555) in _port_pairs(services["flower"])
    # Replicated services cannot share a fixed host port.
    assert not services["worker"].get("ports")


def test_flower_is_optional() -> None:
    """A plain `docker compose up` does not start Flower; `--profile monitoring` does."""
    services = _services()
    assert services["flower"].get("profiles") == ["monitoring"]
    for name in ("redis", "postgres", "worker", "beat"):
        assert not services[name].get("profiles"), f"{name} must start by default"


def test_compose_env_is_what_pyworkflow_reads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The variable names in the compose file are the ones pyworkflow's configuration reads."""
    env = _compose()["x-pyworkflow-env"]
    monkeypatch.chdir(tmp_path)  # no pyworkflow.config.yaml of the checkout interferes
    for key in [k for k in os.environ if k.startswith("PYWORKFLOW_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    reset_config()
    try:
        cfg = get_config()
        assert cfg.storage == env["PYWORKFLOW_STORAGE"]
        assert cfg.default_runtime == "celery"
        assert cfg.celery_broker == env["PYWORKFLOW_CELERY_BROKER"]
        assert cfg.modules == [m.strip() for m in str(env["PYWORKFLOW_MODULES"]).split(",")]
        # The storage URL parses into a backend (it connects lazily: no server needed).
        assert type(storage_from_url(str(env["PYWORKFLOW_STORAGE"]))).__name__ == (
            "PostgresStorageBackend"
        )
    finally:
        reset_config()


# --- the image -------------------------------------------------------------------------


def test_dockerfile_builds_the_worker_image() -> None:
    """The image compose builds exists, runs a worker by default and not as root."""
    services = _services()
    paths = {_dockerfile(services[name]) for name in CELERY_SERVICES}
    assert paths == {DEVOPS / "Dockerfile"}, paths
    dockerfile = DEVOPS / "Dockerfile"
    assert dockerfile.is_file()
    text = dockerfile.read_text(encoding="utf-8")

    cmd = _dockerfile_cmd(dockerfile)
    assert CELERY_APP in cmd
    assert cmd == _command(services["worker"])
    assert re.search(r"^FROM python:3\.11-slim\b", text, flags=re.MULTILINE)
    assert re.search(r"^WORKDIR /app$", text, flags=re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"


def test_dockerfile_installs_existing_extras() -> None:
    """`pip install ".[postgres,redis,celery]"` in the image names extras the package defines."""
    text = (DEVOPS / "Dockerfile").read_text(encoding="utf-8")
    match = re.search(r'pip install\s+"\.\[([^\]]+)\]"', text)
    assert match, "the Dockerfile must pip install the package with extras"
    wanted = {e.strip() for e in match.group(1).split(",")}
    assert {"postgres", "redis", "celery"} <= wanted
    extras = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    assert wanted <= set(extras), wanted - set(extras)
    # Everything the image copies exists in the checkout.
    for src in re.findall(r"^COPY\s+(.+?)\s+\S+$", text, flags=re.MULTILINE):
        for part in src.split():
            assert (REPO / part).exists(), f"COPY source {part!r} does not exist"


# --- the commands resolve --------------------------------------------------------------


@pytest.mark.parametrize("sub", ["worker", "beat"])
def test_celery_command_help(sub: str, tmp_path: Path) -> None:
    """`celery -A pyworkflow.celery.app worker|beat` finds the app and the subcommand."""
    proc = _run_help(["celery", "-A", CELERY_APP, sub], tmp_path)
    assert sub in proc.stdout


def test_celery_flower_command_help(tmp_path: Path) -> None:
    """`celery -A pyworkflow.celery.app flower` (the monitoring profile) resolves."""
    assert importlib.util.find_spec("celery") is not None
    if importlib.util.find_spec("flower") is None:
        # Flower is an optional extra, not a pyworkflow dependency (the image installs it
        # separately); without it `celery flower` is an unknown subcommand. Only this
        # check is skipped: the worker/beat help tests load the same app.
        pytest.skip("flower is not installed (optional monitoring extra)")
    _run_help(["celery", "-A", CELERY_APP, "flower"], tmp_path)


@pytest.mark.parametrize("group", ["worker", "scheduler"])
def test_pyworkflow_cli_help(group: str, tmp_path: Path) -> None:
    """`pyworkflow worker` and `pyworkflow scheduler` (beat's alternative) exist."""
    proc = _run_help(["pyworkflow.cli", group], tmp_path)
    assert group in proc.stdout
