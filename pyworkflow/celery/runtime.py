"""The ``celery`` runtime: ``start()`` stores the run and enqueues it for the workers."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

from pyworkflow.celery.messages import Route, route_of, send_transient, send_workflow
from pyworkflow.celery.publishing import Message, send_off_loop
from pyworkflow.celery.queries import ask_worker
from pyworkflow.core.config import get_config
from pyworkflow.engine.owners import QUEUED_OWNER
from pyworkflow.engine.runner import connect, store_new_run
from pyworkflow.engine.runs import RunRequest, build_run
from pyworkflow.runtime.base import Runtime
from pyworkflow.serialization import encode
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import WorkflowRun, utcnow
from pyworkflow.utils.log import logger


class CeleryRuntime(Runtime):
    """Runs workflows on Celery workers; this process only writes and enqueues."""

    name = "celery"

    async def start(self, request: RunRequest, storage: StorageBackend) -> str:
        """One storage write plus one enqueue; returns the run id once the run is stored.

        Raises:
            StorageUnavailableError: the run was not stored (or storage would not say).
        """
        await connect(storage)
        run, started = build_run(request, owner=None, lease_ttl=0)
        # Queued under a placeholder lease: local runtimes sharing the storage leave it
        # alone, and if the message is lost the sweep re-sends it once the lease expires.
        run.lease_owner = QUEUED_OWNER
        run.lease_expires_at = utcnow() + timedelta(seconds=get_config().dispatch_timeout)
        stored = await store_new_run(storage, run, started, request.idempotency_key)
        if stored.run_id != run.run_id:
            return stored.run_id  # another start with the same idempotency key won
        try:
            route = Route.of(run)
            await _off_loop(lambda: send_workflow(run.run_id, route=route, steal_from=QUEUED_OWNER))
        except Exception as exc:  # noqa: BLE001 - the run is stored: it is not lost
            # The broker is the infrastructure's business, not the caller's: the stored
            # run's queue lease runs out and the scheduler sends it then.
            logger.warning(
                "run {} is stored but its message could not be sent ({}: {}); the "
                "scheduler sends it within dispatch_timeout",
                run.run_id,
                type(exc).__name__,
                exc,
            )
        return run.run_id

    async def start_transient(self, request: RunRequest) -> str:
        """Send a ``durable=False`` run to a worker (fire and forget: nothing is stored)."""
        where = f"arguments of workflow {request.definition.name!r}"
        # Workers never unpickle what comes through the broker: refuse here, clearly.
        payload = json.dumps(
            {
                "args": encode(list(request.args), where=where, allow_pickle=False),
                "kwargs": encode(dict(request.kwargs), where=where, allow_pickle=False),
            }
        )
        run_id = request.run_id or f"run_{uuid.uuid4().hex}"
        name, queue = request.definition.name, request.queue or request.definition.queue
        await _off_loop(lambda: send_transient(name, run_id, payload, queue=queue))
        return run_id

    async def resume(self, run_id: str, storage: StorageBackend) -> None:
        """Ask a worker to continue ``run_id`` (a no-op there if nothing is due), through
        the run's stored queue; an unknown run is nothing to send."""
        route = await route_of(storage, run_id)
        if route is not None:
            await _off_loop(lambda: send_workflow(run_id, route=route))

    async def query(
        self,
        run: WorkflowRun,
        name: str,
        args: list[Any],
        timeout: float,  # noqa: ASYNC109 - the reply's wait, passed to the broker too
    ) -> Any:
        """Ask a worker to answer a query of ``run`` (see :mod:`.queries`)."""
        return await asyncio.to_thread(ask_worker, run, name, args, timeout)

    async def wake(self, run_id: str, storage: StorageBackend) -> None:
        route = await route_of(storage, run_id)
        if route is not None:
            await _off_loop(lambda: send_workflow(run_id, route=route, force=True))


async def _off_loop(send: Message) -> None:
    await send_off_loop([send])
