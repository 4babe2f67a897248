"""The Celery app and runtime selection are configured from pyworkflow's configuration
(no broker needed: nothing here connects)."""

from __future__ import annotations

from pathlib import Path

import pytest

import pyworkflow
from pyworkflow.celery.app import (
    FIRE_TIMERS,
    RUN_STEP,
    RUN_WORKFLOW,
    STEPS_QUEUE,
    WORKFLOWS_QUEUE,
    create_app,
    sending_app,
)
from pyworkflow.runtime import get_runtime


def test_app_reads_broker_and_runtime_from_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "pyworkflow.config.yaml").write_text(
        "runtime: celery\ncelery:\n  broker: amqp://guest:guest@mq:5672//\n"
    )
    pyworkflow.reset_config()
    app = create_app()
    assert app.conf.broker_url == "amqp://guest:guest@mq:5672//"
    assert pyworkflow.get_config().default_runtime == "celery"


def test_environment_variables_configure_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYWORKFLOW_CELERY_BROKER", "redis://cache:6379/3")
    monkeypatch.setenv("PYWORKFLOW_CELERY_INLINE_STEPS", "true")
    pyworkflow.reset_config()
    assert create_app().conf.broker_url == "redis://cache:6379/3"
    assert pyworkflow.get_config().celery_inline_steps is True


def test_tasks_are_acked_late_and_routed_to_separate_queues() -> None:
    conf = create_app().conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_routes[RUN_WORKFLOW]["queue"] == WORKFLOWS_QUEUE
    assert conf.task_routes[RUN_STEP]["queue"] == STEPS_QUEUE
    assert conf.beat_schedule["pyworkflow-fire-timers"]["task"] == FIRE_TIMERS


def test_a_later_configure_changes_where_messages_go() -> None:
    pyworkflow.configure(celery_broker="redis://elsewhere:6379/9")
    assert sending_app().conf.broker_url == "redis://elsewhere:6379/9"


def test_celery_runtime_is_selectable_by_name() -> None:
    assert get_runtime("celery").name == "celery"


def test_bad_celery_options_are_refused() -> None:
    with pytest.raises(ValueError, match="celery_countdown_window"):
        pyworkflow.configure(celery_countdown_window=-1)
    with pytest.raises(ValueError, match="dispatch_timeout"):
        pyworkflow.configure(dispatch_timeout=0)
