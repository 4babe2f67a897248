"""Publishing a worker's follow-up messages through a broker outage: a broker fault is
retried with backoff, then given up with one WARNING (the sweep re-sends what the message
would have done); a bug is raised. The broker is simulated by callables that raise what
kombu raises when the broker is unreachable: the real outage is
``tests/celery/test_broker_outage.py``."""

from __future__ import annotations

import pytest
from kombu.exceptions import OperationalError
from loguru import logger

from pyworkflow.celery import worker


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "backoff_delay", lambda attempt: 0.0)


def _flaky(failures: int, sent: list[str], name: str):
    left = [failures]

    def send() -> None:
        if left[0] > 0:
            left[0] -= 1
            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        sent.append(name)

    return send


async def test_a_broker_blip_delays_messages_but_loses_none() -> None:
    sent: list[str] = []
    await worker.publish("run_1", [_flaky(3, sent, "a"), _flaky(0, sent, "b")])
    assert sent == ["a", "b"]


async def test_a_long_outage_gives_up_with_one_warning_naming_the_run() -> None:
    sent: list[str] = []
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING")
    try:
        await worker.publish("run_1", [_flaky(99, sent, "a"), _flaky(0, sent, "b")])
    finally:
        logger.remove(sink)
    assert sent == []
    assert len(lines) == 1
    assert "run_1" in lines[0] and "2 message(s)" in lines[0]


async def test_a_bug_in_sending_is_not_mistaken_for_a_broker_fault() -> None:
    def broken() -> None:
        raise TypeError("send_task() got an unexpected keyword argument")

    with pytest.raises(TypeError):
        await worker.publish("run_1", [broken])
