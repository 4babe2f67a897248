"""Queries over the broker: a request/response that needs no Celery result backend.

The asking process declares a reply queue of its own (``pyworkflow.reply.<uuid>``:
exclusive to this request, deleted afterwards, expiring on its own if the asker dies),
sends ``pyworkflow.query_run`` to the run's workflow queue, and waits on the reply
queue. A worker with the code answers (replaying the run: see
:mod:`pyworkflow.engine.queries`) and publishes ``{"ok": ..., ...}`` to the reply queue
through the default exchange, unless the asker's deadline (``reply_by``) has passed: a
reply nobody waits for would go nowhere on RabbitMQ but stay behind as a list on Redis.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import BaseModel, ValidationError

from pyworkflow.celery.messages import broker_priority
from pyworkflow.core.exceptions import (
    QueryFailedError,
    QueryNotFoundError,
    RunNotFoundError,
    WorkflowNotFoundError,
)
from pyworkflow.core.queues import MAX_PRIORITY, WORKFLOWS_QUEUE
from pyworkflow.storage.schemas import WorkflowRun

# Errors a worker reports by name, raised again here as the same class.
_ERRORS: dict[str, type[Exception]] = {
    "QueryNotFoundError": QueryNotFoundError,
    "QueryFailedError": QueryFailedError,
    "RunNotFoundError": RunNotFoundError,
    "WorkflowNotFoundError": WorkflowNotFoundError,
}


class Reply(BaseModel):
    """A worker's answer, validated: it comes through the broker."""

    ok: bool
    value: Any = None
    error: str = ""
    message: str = ""


def ask_worker(run: WorkflowRun, name: str, args: list[Any], timeout: float) -> Any:
    """Ask a worker consuming the run's queue to answer query ``name`` (blocking: call
    it from a thread).

    Raises:
        TimeoutError: no reply within ``timeout`` seconds.
        QueryNotFoundError, QueryFailedError, WorkflowNotFoundError: what the worker said.
    """
    import kombu

    from pyworkflow.celery.app import QUERY_RUN, sending_app

    k: Any = kombu  # untyped library

    app = sending_app()
    reply_to = f"pyworkflow.reply.{uuid.uuid4().hex}"
    # Default exchange: routed by queue name on every broker, no exchange to declare.
    queue = k.Queue(
        reply_to,
        exchange=k.Exchange(""),
        routing_key=reply_to,
        durable=False,
        auto_delete=True,
        expires=timeout + 60,
        message_ttl=timeout + 60,
    )
    replies: list[Any] = []
    with app.connection_for_write() as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        try:
            app.send_task(
                QUERY_RUN,
                kwargs={
                    "run_id": run.run_id,
                    "name": name,
                    "args": args,
                    "reply_to": reply_to,
                    "reply_by": time.time() + timeout,
                },
                queue=run.queue or WORKFLOWS_QUEUE,
                expires=timeout,
                # Someone waits for the answer: ahead of the queue's backlog (when
                # celery_priorities is on; Redis serves messages without one first anyway).
                **_top_priority(str(app.conf.broker_url or "")),
            )

            def take(body: Any, message: Any) -> None:
                replies.append(body)
                message.ack()

            with k.Consumer(conn, [queue], callbacks=[take], accept=["json"]):
                deadline = time.monotonic() + timeout
                while not replies:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        conn.drain_events(timeout=left)
                    except TimeoutError:
                        break
        finally:
            bound.delete()
    if not replies:
        raise TimeoutError(
            f"no worker answered query {name!r} of run {run.run_id!r} within {timeout:g}s "
            f"(is a worker with its workflow consuming {run.queue or WORKFLOWS_QUEUE}?)"
        )
    try:
        reply = Reply.model_validate(replies[0])
    except ValidationError:
        raise QueryFailedError(f"query {name!r}: a worker sent a malformed reply") from None
    if reply.ok:
        return reply.value
    raise _ERRORS.get(reply.error, QueryFailedError)(reply.message)


def publish_reply(reply_to: str, reply: dict[str, Any]) -> None:
    """Send a worker's answer to the asker's reply queue (through the default exchange)."""
    from pyworkflow.celery.app import app

    with app.producer_or_acquire() as producer:
        producer.publish(reply, exchange="", routing_key=reply_to, serializer="json")


def _top_priority(broker_url: str) -> dict[str, int]:
    level = broker_priority(MAX_PRIORITY, broker_url)
    return {} if level is None else {"priority": level}


__all__ = ["Reply", "ask_worker", "publish_reply"]
