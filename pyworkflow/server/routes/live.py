"""Live updates as server-sent events: ``/api/runs/stream`` and
``/api/runs/{run_id}/events/stream``.

Storage has no push, so each stream polls it every ``settings.live_poll_interval``
seconds with one bounded read: the first page of the runs list (plus a lookup of the
runs that left it), or a run and its events after the last one sent. A comment line
goes out every :data:`HEARTBEAT_SECONDS` so proxies keep an idle stream open, and a
stream stops polling as soon as its client has gone.

A small ``StreamingResponse`` is all the protocol needs (``id:``, ``event:``, ``data:``
lines), so no SSE library is used.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from pyworkflow.server.app import state
from pyworkflow.server.deps import Reader, Storage
from pyworkflow.server.models import EventOut, RunSummary
from pyworkflow.server.routes.runs import MAX_PAGE, RunFilters, run_or_404
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import RunStatus, WorkflowRun
from pyworkflow.utils.log import logger

router = APIRouter(prefix="/api", tags=["live"])

#: An idle stream sends a comment this often (proxies close silent connections).
HEARTBEAT_SECONDS = 15.0
#: How long a browser's EventSource waits before reconnecting (milliseconds).
RETRY_MS = 2000
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # nginx: do not buffer
_SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "A server-sent event stream."}
}

# One poll: the messages to send now, and whether the stream is over.
Poll = Callable[[], Awaitable[tuple[list[str], bool]]]


class RunChange(RunSummary):
    """A ``run`` event: a run as it is now."""

    updated_at: datetime
    last_sequence: int

    @classmethod
    def of_run(cls, run: WorkflowRun) -> RunChange:
        return cls(
            **RunSummary.of(run).model_dump(),
            updated_at=run.updated_at,
            last_sequence=run.last_sequence,
        )


def message(event: str, data: BaseModel, event_id: str | None = None) -> str:
    """One server-sent event (compact JSON has no raw newline, so one ``data:`` line)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data.model_dump_json()}\n\n"


async def pump(
    request: Request, poll: Poll, interval: float, first: tuple[list[str], bool]
) -> AsyncIterator[str]:
    """Send ``first``, then poll until a poll says the stream is over or the client has
    gone, with heartbeats in between."""
    loop = asyncio.get_running_loop()
    messages, over = first
    yield f"retry: {RETRY_MS}\n\n"
    quiet_since = loop.time()
    while True:
        if messages:
            yield "".join(messages)
            quiet_since = loop.time()
        if over or await request.is_disconnected():
            return
        if loop.time() - quiet_since >= HEARTBEAT_SECONDS:
            yield ": keep-alive\n\n"
            quiet_since = loop.time()
        await asyncio.sleep(interval)
        try:
            messages, over = await poll()
        except Exception as exc:  # noqa: BLE001 - the status line is long gone
            # End the stream: a browser's EventSource reconnects after RETRY_MS, and
            # its first poll then answers with the error's own status.
            logger.warning("live stream {} ended: {}", request.url.path, exc)
            return


async def _stream(request: Request, poll: Poll) -> StreamingResponse:
    """Poll once now (a bad filter or unreachable storage gets its HTTP status), then
    stream."""
    first = await poll()
    interval = state(request).settings.live_poll_interval
    return StreamingResponse(
        pump(request, poll, interval, first), media_type="text/event-stream", headers=_HEADERS
    )


# -- runs ---------------------------------------------------------------------------------


class RunWatch:
    """Which runs of the watched window changed since the last poll."""

    def __init__(self, storage: StorageBackend, filters: RunFilters, limit: int) -> None:
        self.storage = storage
        self.filters = filters
        self.limit = limit
        self.seen: dict[str, tuple[RunStatus, datetime]] = {}

    async def poll(self) -> list[WorkflowRun]:
        """The runs that entered the window or changed; runs that left it are read
        once more so their last change (a run filtered by status ending) is not lost."""
        query = self.filters.query(self.limit, None)
        if self.filters.idempotency_key:  # an exact lookup, as GET /api/runs does
            found = await self.storage.get_run_by_idempotency_key(self.filters.idempotency_key)
            page = query.page([found] if found is not None else [])
        else:
            page = await self.storage.query_runs(query)
        changed = [run for run in reversed(page) if self.seen.get(run.run_id) != _key(run)]
        gone = self.seen.keys() - {run.run_id for run in page}
        for run_id in sorted(gone):
            run = await self.storage.get_run(run_id)
            if run is not None and self.seen[run_id] != _key(run):
                changed.append(run)
        self.seen = {run.run_id: _key(run) for run in page}
        return changed


def _key(run: WorkflowRun) -> tuple[RunStatus, datetime]:
    return run.status, run.updated_at


@router.get("/runs/stream", response_class=StreamingResponse, responses=_SSE_DOC)
async def stream_runs(
    request: Request,
    storage: Storage,
    _: Reader,
    filters: Annotated[RunFilters, Query()],
    limit: int = Query(50, ge=1, le=MAX_PAGE, description="Size of the watched window."),
    snapshot: bool = Query(True, description="Start with a run event per run of the window."),
) -> StreamingResponse:
    """``run`` events for the newest ``limit`` runs matching the filters of ``GET
    /api/runs`` (its first page): each run when it enters that window and whenever its
    status or ``updated_at`` changes (runs that leave the window once more, with their
    last change). Older runs' changes are not watched."""
    watch = RunWatch(storage, filters, limit)
    if not snapshot:
        await watch.poll()

    async def poll() -> tuple[list[str], bool]:
        return [message("run", RunChange.of_run(run)) for run in await watch.poll()], False

    return await _stream(request, poll)


# -- one run's events ---------------------------------------------------------------------


class EventTail:
    """A run's events after the last one sent, in sequence order and gap-free."""

    def __init__(self, storage: StorageBackend, run_id: str, after: int) -> None:
        self.storage = storage
        self.run_id = run_id
        self.last = after

    async def poll(self) -> tuple[list[str], bool]:
        # The run is read before its events: when it is already terminal, the events
        # read next include its last one.
        run = await self.storage.get_run(self.run_id)
        out = []
        for event in await self.storage.get_events(self.run_id, after_sequence=self.last):
            if event.sequence != self.last + 1:
                break  # never skip one: the next poll reads from the gap again
            out.append(message("event", EventOut.of(event), str(event.sequence)))
            self.last = event.sequence
        if run is None:  # deleted meanwhile (retention)
            return out, True
        if run.status.is_terminal and self.last >= run.last_sequence:
            out.append(message("end", RunSummary.of(run)))
            return out, True
        return out, False


@router.get("/runs/{run_id}/events/stream", response_class=StreamingResponse, responses=_SSE_DOC)
async def stream_events(
    run_id: str,
    request: Request,
    storage: Storage,
    _: Reader,
    after: int = Query(0, ge=0, description="Start after this sequence."),
    last_event_id: str | None = Header(
        None, description="Sent by a reconnecting EventSource; wins over after."
    ),
) -> StreamingResponse:
    """Each event of the run (``event``, with the sequence as its id) as it is
    appended, then one ``end`` event with the run once it is terminal and every event
    was sent."""
    await run_or_404(storage, run_id)
    if last_event_id is not None:
        if not last_event_id.strip().isdigit():
            raise HTTPException(400, "Last-Event-ID must be an event sequence number")
        after = int(last_event_id)
    return await _stream(request, EventTail(storage, run_id, after).poll)
