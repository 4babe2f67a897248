"""Publishing task messages without blocking the event loop, through broker outages.

A publish is blocking socket I/O (kombu). Every sender of pyworkflow's messages (the
starter, the workers' follow-ups, the scheduler) goes through :func:`send_off_loop`,
which hands a batch to a thread so the loop keeps serving the run's other coroutines
(steps under ``gather``, lease renewals, a scheduler's next claim) meanwhile. Messages of
one batch go out in order, in one thread hop.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence

from kombu.exceptions import KombuError

from pyworkflow.engine.recovery import backoff_delay
from pyworkflow.utils.log import logger

# A message to send: calling it publishes it (see pyworkflow.celery.messages).
Message = Callable[[], None]

# A publish the broker refuses is tried this many times (backoff with jitter, about 25 s
# in all) before it is given up: the run's state is already stored, and what the message
# would have done is done later by the sweeper (an expired lease, a due timer).
PUBLISH_ATTEMPTS = 8


def is_broker_fault(exc: BaseException) -> bool:
    """True for the errors of a broker that cannot be reached (never a bug of ours)."""
    return isinstance(exc, KombuError | OSError | ConnectionError | TimeoutError) or (
        type(exc).__module__.startswith(("redis.", "amqp.", "kombu."))
        and "Error" in type(exc).__name__
    )


def _send_in_order(pending: list[Message]) -> None:
    # Each message leaves ``pending`` once sent, so after a failure it holds the rest.
    while pending:
        pending[0]()
        del pending[0]


async def send_off_loop(messages: Sequence[Message]) -> None:
    """Send ``messages`` in order from a thread; the first error is raised (the messages
    after it are not sent)."""
    if messages:
        await asyncio.to_thread(_send_in_order, list(messages))


async def publish(run_id: str, messages: Sequence[Message]) -> None:
    """Send ``messages`` (for ``run_id``) off the loop, surviving a broker outage: a
    broker fault is retried from the first unsent message, then logged at WARNING and the
    rest given up; any other error is raised."""
    pending = list(messages)
    for attempt in itertools.count(1):
        if not pending:
            return
        try:
            await asyncio.to_thread(_send_in_order, pending)
            return
        except Exception as exc:
            if not is_broker_fault(exc):
                raise
            if attempt >= PUBLISH_ATTEMPTS:
                logger.warning(
                    "broker unreachable: {} message(s) for run {} not sent ({}: {}); "
                    "the scheduler resends what they did once the run's lease or "
                    "timer is due",
                    len(pending),
                    run_id,
                    type(exc).__name__,
                    exc,
                )
                return
            await asyncio.sleep(backoff_delay(attempt))
