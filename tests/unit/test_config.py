"""Configuration: ``configure()``, environment variables, ``pyworkflow.config.yaml`` and
their precedence; the embedded default storage."""

from __future__ import annotations

from pathlib import Path

import pytest

import pyworkflow
from pyworkflow import (
    ConfigurationError,
    configure,
    configure_from_yaml,
    get_config,
    get_storage,
    get_workflow_run,
    reset_config,
    start,
    workflow,
)
from pyworkflow.runtime import get_runtime


@workflow(name="cfg_simple_wf")
async def simple_wf(x: int) -> int:
    return x + 1


def _write_config(text: str) -> Path:
    path = Path.cwd() / "pyworkflow.config.yaml"
    path.write_text(text)
    return path


# -- configure() / get_config() / reset_config() --------------------------------------------


def test_defaults() -> None:
    cfg = get_config()
    assert cfg.default_runtime == "local"
    assert cfg.default_durable is True
    assert cfg.event_soft_limit == 10_000
    assert cfg.event_hard_limit == 50_000
    assert cfg.event_warning_interval == 100


def test_configure_unknown_option_raises_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="no_such_option"):
        configure(no_such_option=1)
    # the failed call changed nothing
    assert get_config().event_soft_limit == 10_000


def test_configure_get_config_reset_config() -> None:
    configure(event_soft_limit=7, event_hard_limit=70)
    cfg = get_config()
    assert cfg.event_soft_limit == 7
    assert cfg.event_hard_limit == 70

    configure(event_warning_interval=3)  # merged with the earlier call
    cfg = get_config()
    assert cfg.event_soft_limit == 7
    assert cfg.event_warning_interval == 3

    reset_config()
    cfg = get_config()
    assert cfg.event_soft_limit == 10_000
    assert cfg.event_warning_interval == 100


def test_configure_aliases() -> None:
    configure(runtime="local", durable=False, module="some.module")
    cfg = get_config()
    assert cfg.default_runtime == "local"
    assert cfg.default_durable is False
    assert cfg.modules == ["some.module"]


def test_invalid_option_values_are_rejected_at_configure_and_change_nothing() -> None:
    configure(event_soft_limit=100, event_hard_limit=500)
    with pytest.raises(ValueError, match="spaceship"):
        configure(default_runtime="spaceship")
    with pytest.raises(ConfigurationError, match="event_soft_limit"):
        configure(event_soft_limit=1000)
    with pytest.raises(ValueError, match="non-negative"):
        configure(event_warning_interval=-1)
    cfg = get_config()
    assert (cfg.default_runtime, cfg.event_soft_limit, cfg.event_hard_limit) == ("local", 100, 500)
    assert cfg.event_warning_interval == 100


def test_public_names_exported() -> None:
    for name in ("configure", "configure_from_yaml", "get_config", "get_storage", "reset_config"):
        assert callable(getattr(pyworkflow, name))


# -- environment variables ------------------------------------------------------------------


def test_env_var_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYWORKFLOW_EVENT_SOFT_LIMIT", "123")
    reset_config()
    assert get_config().event_soft_limit == 123


def test_env_var_with_bad_value_gives_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYWORKFLOW_EVENT_SOFT_LIMIT", "lots")
    reset_config()
    with pytest.raises(ValueError, match="PYWORKFLOW_EVENT_SOFT_LIMIT"):
        get_config()


def test_env_var_durable_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYWORKFLOW_DEFAULT_DURABLE", "false")
    reset_config()
    assert get_config().default_durable is False


# -- config file ----------------------------------------------------------------------------


def test_config_file_in_cwd_applies() -> None:
    _write_config("runtime: local\nstorage:\n  type: memory\nevent_soft_limit: 4321\n")
    reset_config()
    cfg = get_config()
    assert cfg.default_runtime == "local"
    assert cfg.storage == {"type": "memory"}
    assert cfg.event_soft_limit == 4321


def test_config_file_storage_is_used_by_get_storage() -> None:
    from pyworkflow.storage.memory import InMemoryStorageBackend

    _write_config("storage:\n  type: memory\n")
    reset_config()
    storage = get_storage()
    assert isinstance(storage, InMemoryStorageBackend)
    assert get_storage() is storage  # created once


def test_config_file_module_key_and_celery_section() -> None:
    _write_config(
        "module: myapp.workflows\n"
        "celery:\n  broker: redis://localhost:6379/0\n  result_backend: redis://localhost/1\n"
    )
    reset_config()
    cfg = get_config()
    assert cfg.modules == ["myapp.workflows"]
    assert cfg.celery_broker == "redis://localhost:6379/0"
    assert cfg.celery_result_backend == "redis://localhost/1"


def test_precedence_configure_beats_env_beats_file(monkeypatch: pytest.MonkeyPatch) -> None:
    _write_config("event_soft_limit: 100\nevent_warning_interval: 7\n")
    reset_config()
    assert get_config().event_soft_limit == 100

    monkeypatch.setenv("PYWORKFLOW_EVENT_SOFT_LIMIT", "200")
    reset_config()
    assert get_config().event_soft_limit == 200  # env beats file
    assert get_config().event_warning_interval == 7  # file still applies where env is silent

    configure(event_soft_limit=300)
    assert get_config().event_soft_limit == 300  # configure beats env
    assert get_config().event_warning_interval == 7


def test_invalid_yaml_raises_configuration_error() -> None:
    _write_config("storage: [unclosed\n  type: : memory\n")
    reset_config()
    with pytest.raises(ConfigurationError, match="pyworkflow.config.yaml"):
        get_config()


def test_config_file_not_a_mapping_raises_configuration_error() -> None:
    _write_config("- just\n- a list\n")
    reset_config()
    with pytest.raises(ConfigurationError):
        get_config()


def test_config_file_unknown_key_raises_configuration_error_naming_it() -> None:
    _write_config("stroage:\n  type: memory\n")
    reset_config()
    with pytest.raises(ConfigurationError, match="stroage"):
        get_config()


def test_configure_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.yaml"
    path.write_text("event_soft_limit: 99\nevent_hard_limit: 999\nruntime: local\n")
    configure_from_yaml(path)
    assert get_config().event_hard_limit == 999


def test_configure_from_yaml_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does-not-exist"):
        configure_from_yaml(tmp_path / "does-not-exist.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigurationError):
        configure_from_yaml(bad)


# -- embedded default storage ------------------------------------------------------------------


async def test_default_storage_is_sqlite_under_dot_pyworkflow() -> None:
    storage = get_storage()
    assert type(storage).__name__ == "SQLiteStorageBackend"
    try:
        run_id = await start(simple_wf, 1)
        run = await get_workflow_run(run_id)
        assert run is not None
        assert run.status == "completed"
        assert run.result == 2
        assert (Path.cwd() / ".pyworkflow" / "pyworkflow.db").exists()
    finally:
        await get_runtime("local").shutdown()
        await storage.close()
