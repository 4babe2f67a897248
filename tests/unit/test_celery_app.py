"""The Celery app and runtime selection are configured from pyworkflow's configuration
(no broker needed: nothing here connects)."""

from __future__ import annotations

from pathlib import Path

import pytest

import pyworkflow
from pyworkflow import step
from pyworkflow.celery.app import (
    FIRE_TIMERS,
    QUEUES,
    RUN_STEP,
    RUN_WORKFLOW,
    STEPS_QUEUE,
    WORKFLOWS_QUEUE,
    ack_timeout_warnings,
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


def test_the_ack_timeout_sets_both_brokers_limits(tmp_path: Path) -> None:
    """celery_ack_timeout (here from the YAML celery: mapping) is Redis's visibility
    timeout and RabbitMQ's per-consumer acknowledgement timeout on every queue."""
    (tmp_path / "pyworkflow.config.yaml").write_text(
        "celery:\n  broker: amqp://mq//\n  ack_timeout: 7200\n  shutdown_grace: 12\n"
    )
    pyworkflow.reset_config()
    cfg = pyworkflow.get_config()
    assert (cfg.celery_ack_timeout, cfg.celery_shutdown_grace) == (7200, 12)
    conf = create_app().conf
    assert conf.broker_transport_options["visibility_timeout"] == 7200
    assert {q.name: q.consumer_arguments for q in conf.task_queues} == {
        name: {"x-consumer-timeout": 7_200_000} for name in QUEUES
    }


def test_a_routed_queue_gets_the_ack_timeout_too() -> None:
    """A queue named only by routing (``@step(queue="gpu")``, ``celery worker -Q gpu``)
    is consumed with the same acknowledgement timeout as pyworkflow's own queues."""
    pyworkflow.configure(celery_ack_timeout=900)
    app = create_app()
    app.amqp.queues.select(["gpu", "pyworkflow.steps"])  # what `celery worker -Q` does
    consumed = {q.name: q.consumer_arguments for q in app.amqp.queues.consume_from.values()}
    assert consumed == {
        "gpu": {"x-consumer-timeout": 900_000},
        "pyworkflow.steps": {"x-consumer-timeout": 900_000},
    }


def test_the_default_ack_timeout_is_an_hour() -> None:
    conf = create_app().conf
    assert conf.broker_transport_options == {"visibility_timeout": 3600.0}


def test_an_ack_timeout_not_above_the_countdown_window_is_refused() -> None:
    # A countdown message waits unacknowledged in a worker until due.
    with pytest.raises(ValueError, match=r"celery_countdown_window \(60 s\) must be shorter"):
        pyworkflow.configure(celery_ack_timeout=60)
    pyworkflow.configure(celery_ack_timeout=120, celery_countdown_window=30)
    with pytest.raises(ValueError, match="celery_shutdown_grace"):
        pyworkflow.configure(celery_shutdown_grace=-1)


def test_an_unknown_key_of_the_celery_mapping_is_named(tmp_path: Path) -> None:
    (tmp_path / "pyworkflow.config.yaml").write_text("celery:\n  ack_timeuot: 7200\n")
    pyworkflow.reset_config()
    with pytest.raises(ValueError, match="celery_ack_timeuot"):
        pyworkflow.get_config()


def test_steps_allowed_to_outrun_the_ack_timeout_are_warned_about() -> None:
    @step(timeout="2h")
    async def long_export() -> None: ...

    @step(timeout="10m")
    async def short_export() -> None: ...

    warnings = ack_timeout_warnings()
    assert [w for w in warnings if "export" in w] == [
        "step 'long_export' may run for 7200 s, longer than "
        "celery_ack_timeout (3600 s): raise celery_ack_timeout above the longest step, or "
        "the broker hands its message to a second worker while it runs"
    ]
