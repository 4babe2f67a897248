"""Publishing messages off the event loop and through a broker outage: a broker fault is
retried with backoff, then given up with one WARNING (the sweep re-sends what the message
would have done); a bug is raised; a slow broker never stalls the loop. The broker is
simulated by callables that raise what kombu raises when the broker is unreachable, or
block as a slow one does: the real outage is ``tests/celery/test_broker_outage.py``."""

from __future__ import annotations

import asyncio
import time

import pytest
from kombu.exceptions import OperationalError
from loguru import logger

from pyworkflow.celery import publishing


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publishing, "backoff_delay", lambda attempt: 0.0)


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
    await publishing.publish("run_1", [_flaky(3, sent, "a"), _flaky(0, sent, "b")])
    assert sent == ["a", "b"]


async def test_a_long_outage_gives_up_with_one_warning_naming_the_run() -> None:
    sent: list[str] = []
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING")
    try:
        await publishing.publish("run_1", [_flaky(99, sent, "a"), _flaky(0, sent, "b")])
    finally:
        logger.remove(sink)
    assert sent == []
    assert len(lines) == 1
    assert "run_1" in lines[0] and "2 message(s)" in lines[0]


async def test_a_bug_in_sending_is_not_mistaken_for_a_broker_fault() -> None:
    def broken() -> None:
        raise TypeError("send_task() got an unexpected keyword argument")

    with pytest.raises(TypeError):
        await publishing.publish("run_1", [broken])


def _slow(sent: list[str], name: str, seconds: float):
    def send() -> None:
        time.sleep(seconds)  # a broker that takes long to answer: blocking socket I/O
        sent.append(name)

    return send


@pytest.mark.parametrize("how", ["publish", "send_off_loop"])
async def test_a_slow_broker_does_not_stall_the_event_loop(how: str) -> None:
    """While a publish waits on the broker, the loop serves the run's other coroutines
    (lease renewals, steps under gather, the scheduler's next claim); messages keep their
    order."""
    sent: list[str] = []
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beat = asyncio.ensure_future(ticker())
    messages = [_slow(sent, "a", 0.15), _slow(sent, "b", 0.15)]
    if how == "publish":
        await publishing.publish("run_1", messages)
    else:
        await publishing.send_off_loop(messages)
    beat.cancel()
    assert sent == ["a", "b"]
    assert ticks >= 10  # a blocking publish would have allowed none


async def test_send_off_loop_raises_the_broker_fault_and_sends_nothing_after_it() -> None:
    sent: list[str] = []
    with pytest.raises(OperationalError):
        await publishing.send_off_loop([_flaky(1, sent, "a"), _flaky(0, sent, "b")])
    assert sent == []
