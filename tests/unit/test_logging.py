"""Log records carry the run and step they came from; ``configure_logging`` writes text
or JSON lines with that context."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from pyworkflow import configure_logging, get_logger, start, step, workflow
from pyworkflow.storage.memory import InMemoryStorageBackend


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    logger.remove()  # also closes any log files a test opened
    logger.add(sys.stderr)


@pytest.fixture
def records() -> Iterator[list[Any]]:
    captured: list[Any] = []
    sink_id = logger.add(lambda message: captured.append(message.record), level="DEBUG")
    yield captured
    logger.remove(sink_id)


@step(name="lg_logging_step")
async def logging_step(order: str) -> str:
    get_logger().info("lg inside step {}", order)
    return order.upper()


@workflow(name="lg_logging_wf")
async def logging_wf(order: str) -> str:
    get_logger().info("lg inside workflow body")
    result = await logging_step(order)
    get_logger(order=order).warning("lg bound field")
    return result


def _find(records: list[Any], text: str) -> Any:
    matches = [r for r in records if r["message"].startswith(text)]
    assert matches, f"no log record starting with {text!r}"
    return matches[0]


async def test_log_inside_step_carries_run_and_step_context(records: list[Any]) -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(logging_wf, "o-1", storage=storage)

    record = _find(records, "lg inside step")
    assert record["message"] == "lg inside step o-1"
    extra = record["extra"]
    assert extra["run_id"] == run_id
    assert extra["workflow_name"] == "lg_logging_wf"
    assert extra["step_id"] == "step:lg_logging_step#1"
    assert extra["step_name"] == "lg_logging_step"


async def test_log_in_workflow_body_carries_only_run_context(records: list[Any]) -> None:
    storage = InMemoryStorageBackend()
    run_id = await start(logging_wf, "o-2", storage=storage)

    extra = _find(records, "lg inside workflow body")["extra"]
    assert extra["run_id"] == run_id
    assert extra["workflow_name"] == "lg_logging_wf"
    assert "step_id" not in extra
    assert "step_name" not in extra

    bound = _find(records, "lg bound field")["extra"]
    assert bound["order"] == "o-2"
    assert bound["run_id"] == run_id
    assert "step_id" not in bound


async def test_log_outside_any_run_has_no_run_context(records: list[Any]) -> None:
    get_logger().info("lg outside any run")
    extra = _find(records, "lg outside any run")["extra"]
    assert "run_id" not in extra
    assert "step_id" not in extra


async def test_step_called_outside_workflow_logs_without_context(records: list[Any]) -> None:
    assert await logging_step("plain") == "PLAIN"
    extra = _find(records, "lg inside step plain")["extra"]
    assert "run_id" not in extra
    assert "step_id" not in extra


async def test_json_log_file_contains_run_id(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "wf.log"
    configure_logging(level="INFO", log_file=str(log_file), json_logs=True)
    storage = InMemoryStorageBackend()
    run_id = await start(logging_wf, "o-3", storage=storage)
    logger.remove()  # flush and close the file before reading it

    lines = [line for line in log_file.read_text().splitlines() if line.strip()]
    assert lines
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    step_lines = [p for p in parsed if p["record"]["message"] == "lg inside step o-3"]
    assert len(step_lines) == 1
    extra = step_lines[0]["record"]["extra"]
    assert extra["run_id"] == run_id
    assert extra["step_name"] == "lg_logging_step"
    assert any(run_id in line for line in lines)


async def test_json_logs_respect_level(tmp_path: Path) -> None:
    log_file = tmp_path / "warn.log"
    configure_logging(level="WARNING", log_file=str(log_file), json_logs=True)
    storage = InMemoryStorageBackend()
    await start(logging_wf, "o-4", storage=storage)
    logger.remove()

    messages = [json.loads(line)["record"]["message"] for line in log_file.read_text().splitlines()]
    assert "lg bound field" in messages
    assert "lg inside step o-4" not in messages


async def test_text_format_shows_context_when_asked(tmp_path: Path) -> None:
    log_file = tmp_path / "text.log"
    configure_logging(level="INFO", log_file=str(log_file), show_context=True)
    storage = InMemoryStorageBackend()
    run_id = await start(logging_wf, "o-5", storage=storage)
    logger.remove()

    text = log_file.read_text()
    step_line = next(line for line in text.splitlines() if "lg inside step o-5" in line)
    assert f"run_id={run_id}" in step_line
    assert "step_name=lg_logging_step" in step_line
    assert "workflow_name=lg_logging_wf" in step_line


async def test_text_format_hides_context_when_not_asked(tmp_path: Path) -> None:
    log_file = tmp_path / "plain.log"
    configure_logging(level="INFO", log_file=str(log_file), show_context=False)
    storage = InMemoryStorageBackend()
    await start(logging_wf, "o-6", storage=storage)
    logger.remove()

    step_line = next(
        line for line in log_file.read_text().splitlines() if "lg inside step o-6" in line
    )
    assert "run_id=" not in step_line
