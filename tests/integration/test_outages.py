"""Real servers going away: runs in flight survive a storage server's crash, restart or
freeze.

Each test starts a *private* server (:mod:`tests.private_servers`: a PostgreSQL cluster,
a Redis, a MariaDB in a temporary directory on a free port; never the shared servers),
starts runs of a workflow with parallel steps and durable sleeps on the local runtime,
takes the server away while they are in flight and brings it back after a while:

* ``crash``: killed (``pg_ctl stop -m immediate``, ``SIGKILL``), then restarted on the
  same port with the same data;
* ``stop``: shut down cleanly (``pg_ctl stop -m fast``, ``SIGTERM``), then restarted;
* ``freeze``: its processes stopped (``SIGSTOP``) and continued, a network partition
  that swallows packets: calls must time out, not hang.

Every run must then complete with the right result, a gap-free history, no step recorded
as completed twice and no run failed; a ``start()`` while the server is away either
stores its run or raises :class:`StorageUnavailableError` within a few seconds, with
nothing stored (or, only when the server froze mid-call, a message saying storage did
not answer whether it was stored).

The default run holds one short outage per server and the backend-level checks. The
long ones (100 runs; 2 s and 10 s outages) are marked ``outages``: ``make outages``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from pyworkflow import (
    EventType,
    StorageUnavailableError,
    get_workflow_events,
    sleep,
    start,
    step,
    wait_for_run,
    workflow,
)
from pyworkflow.storage.base import StorageBackend
from pyworkflow.storage.schemas import Event, WorkflowRun, utcnow
from tests.private_servers import SERVERS, PrivateServer, require_module, unavailable

#: How long a ``start()`` may take while storage is down before it must have raised.
START_BOUND = 5.0
#: How long runs get to finish once the server is back.
RECOVERY_TIMEOUT = 90.0
#: Call timeouts of the backends in the freeze tests (seconds).
FAST_TIMEOUT = 1.5
#: The options that set them, per backend.
FAST_OPTIONS = {
    "postgres": {"call_timeout": FAST_TIMEOUT, "connect_timeout": FAST_TIMEOUT},
    "mysql": {"call_timeout": FAST_TIMEOUT, "connect_timeout": FAST_TIMEOUT},
    "redis": {"socket_timeout": FAST_TIMEOUT, "socket_connect_timeout": FAST_TIMEOUT},
}

ROUNDS = ((0, 1, 2), (3, 4, 5), (6, 7))


@step(name="outage_part")
async def part(n: int, i: int) -> int:
    await asyncio.sleep(0.01 + 0.002 * (n % 5))
    return n * 100 + i


@workflow(name="outage_fanout")
async def fanout(n: int) -> int:
    """Three rounds of parallel steps, with a durable sleep between rounds."""
    total = 0
    for number, indexes in enumerate(ROUNDS):
        if number:
            await sleep(0.2)
        total += sum(await asyncio.gather(*(part(n, i) for i in indexes)))
    return total


#: Runs of ``outage_limited`` inside one of its rounds right now (at most 3 may be).
inside: set[int] = set()
most_inside = [0]


@step(name="outage_limited_part")
async def limited_part(n: int, i: int) -> int:
    inside.add(n)
    most_inside[0] = max(most_inside[0], len(inside))
    try:
        await asyncio.sleep(0.01 + 0.002 * (n % 5))
        return n * 100 + i
    finally:
        inside.discard(n)


@workflow(name="outage_limited", concurrency_limit=3)
async def limited_fanout(n: int) -> int:
    """``outage_fanout`` under a concurrency limit: its gate is written all along."""
    total = 0
    for number, indexes in enumerate(ROUNDS):
        if number:
            await sleep(0.2)
        total += sum(await asyncio.gather(*(limited_part(n, i) for i in indexes)))
    return total


def expected(n: int) -> int:
    return sum(n * 100 + i for indexes in ROUNDS for i in indexes)


DRIVERS = {"postgres": "asyncpg", "mysql": "aiomysql", "redis": "redis"}


def _open_storage(kind: str, url: str, **options: Any) -> StorageBackend:
    if options:
        url += "?" + "&".join(f"{name}={value}" for name, value in options.items())
    if kind == "postgres":
        from pyworkflow.storage.postgres import PostgresStorageBackend

        return PostgresStorageBackend.from_url(url)
    if kind == "redis":
        from pyworkflow.storage.redis import RedisStorageBackend

        return RedisStorageBackend(url)
    from pyworkflow.storage.mysql import MySQLStorageBackend

    return MySQLStorageBackend.from_url(url)


@pytest.fixture(params=list(SERVERS))
async def server(request: pytest.FixtureRequest) -> AsyncIterator[PrivateServer]:
    require_module(DRIVERS[request.param], request.param)
    try:
        instance = SERVERS[request.param]()
    except OSError as exc:  # e.g. the temporary directory cannot be handed to 'postgres'
        unavailable(f"cannot prepare a private {request.param}: {exc}")
    try:
        await instance.setup()
        yield instance
    finally:
        await instance.destroy()


@pytest.fixture
def kind(request: pytest.FixtureRequest, server: PrivateServer) -> str:
    return str(request.node.callspec.params["server"])


@asynccontextmanager
async def _opened(server: PrivateServer, kind: str, fast: bool) -> AsyncIterator[StorageBackend]:
    backend = _open_storage(kind, server.url, **(FAST_OPTIONS[kind] if fast else {}))
    await backend.connect()
    try:
        yield backend
    finally:
        server.thaw()  # if a freeze test failed midway
        await backend.close()


@pytest.fixture
async def storage(server: PrivateServer, kind: str) -> AsyncIterator[StorageBackend]:
    async with _opened(server, kind, fast=False) as backend:
        yield backend


@pytest.fixture
async def fast_storage(server: PrivateServer, kind: str) -> AsyncIterator[StorageBackend]:
    """A backend whose calls time out after FAST_TIMEOUT seconds (for freezes)."""
    async with _opened(server, kind, fast=True) as backend:
        yield backend


# -- what every run must look like afterwards ------------------------------------------------


def _problems(run: WorkflowRun, n: int, events: list[Event]) -> list[str]:
    found = []
    if run.status != "completed" or run.result != expected(n):
        found.append(f"{run.run_id}: {run.status} {run.result!r} {run.error}")
    if [e.sequence for e in events] != list(range(1, len(events) + 1)):
        found.append(f"{run.run_id}: history has gaps: {[e.sequence for e in events]}")
    done = Counter(e.data["step_id"] for e in events if e.type == EventType.STEP_COMPLETED)
    if len(done) != sum(map(len, ROUNDS)) or set(done.values()) != {1}:
        found.append(f"{run.run_id}: step completions {dict(done)}")
    if any(e.type in (EventType.STEP_FAILED, EventType.WORKFLOW_FAILED) for e in events):
        found.append(f"{run.run_id}: a step or the run failed")
    return found


async def _assert_all_sound(storage: StorageBackend, runs: dict[str, int]) -> None:
    async def check(run_id: str, n: int) -> list[str]:
        run = await wait_for_run(run_id, timeout=RECOVERY_TIMEOUT, storage=storage)
        return _problems(run, n, await get_workflow_events(run_id, storage=storage))

    results = await asyncio.gather(*(check(run_id, n) for run_id, n in runs.items()))
    problems = [p for found in results for p in found]
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:20])


# -- start() while the server is away ----------------------------------------------------------

Probe = tuple[str, str | None, str, float]  # key, run id or None, error message, seconds


async def _probe(storage: StorageBackend, key: str, n: int) -> Probe:
    began = time.monotonic()
    try:
        run_id: str | None = await start(fanout, n, storage=storage, idempotency_key=key)
        error = ""
    except StorageUnavailableError as exc:
        run_id, error = None, str(exc)
    return key, run_id, error, time.monotonic() - began


async def _probes_while_away(
    storage: StorageBackend, tag: str, count: int, back: asyncio.Event
) -> list[Probe]:
    outcomes = []
    for i in range(count):
        if back.is_set():
            break
        outcomes.append(await _probe(storage, f"{tag}-probe-{i}", 1000 + i))
    return outcomes


async def _check_probes(
    storage: StorageBackend, outcomes: list[Probe], runs: dict[str, int], bound: float
) -> None:
    assert outcomes
    for key, run_id, error, took in outcomes:
        assert took < bound, f"start() blocked {took:.1f}s while storage was away"
        stored = await storage.get_run_by_idempotency_key(key)
        if run_id is not None:
            assert stored is not None and stored.run_id == run_id
        elif stored is not None:
            # Only a write the server took before it froze may land unseen; start() must
            # then have said it could not tell.
            assert "did not answer whether" in error, f"{key}: raised {error!r}, yet stored"
        if stored is not None:
            runs[stored.run_id] = 1000 + int(key.rsplit("-", 1)[1])


# -- the scenario ------------------------------------------------------------------------------


async def _take_away(server: PrivateServer, mode: str) -> None:
    if mode == "freeze":
        server.freeze()
    else:
        await server.stop(crash=mode == "crash")


async def _bring_back(server: PrivateServer, mode: str) -> None:
    if mode == "freeze":
        server.thaw()
    else:
        await server.start()


async def _outage_scenario(
    storage: StorageBackend,
    server: PrivateServer,
    *,
    runs: int,
    down: float,
    mode: str,
    flow: Any = fanout,
) -> None:
    tag = f"{server.name}-{mode}-{utcnow().timestamp():.0f}"
    started = await asyncio.gather(*(start(flow, n, storage=storage) for n in range(runs)))
    ids = dict(zip(started, range(runs), strict=True))
    await asyncio.sleep(0.25)  # in the middle of the second round of most runs
    in_flight = await _unfinished(storage, ids)
    await _take_away(server, mode)
    back = asyncio.Event()
    probes = asyncio.create_task(_probes_while_away(storage, tag, 3, back))
    await asyncio.sleep(down)
    await _bring_back(server, mode)
    back.set()
    outcomes = await probes
    # A frozen server makes each storage call of start() wait out its timeout.
    bound = START_BOUND if mode != "freeze" else 5 * FAST_TIMEOUT + START_BOUND
    await _check_probes(storage, outcomes, ids, bound)
    await _assert_all_sound(storage, ids)
    assert in_flight, "every run had finished before the outage: the test proved nothing"


async def _unfinished(storage: StorageBackend, runs: dict[str, int]) -> int:
    found = await asyncio.gather(*(storage.get_run(run_id) for run_id in runs))
    return sum(1 for run in found if run is not None and not run.status.is_terminal)


async def test_runs_survive_a_short_crash(storage: StorageBackend, server: PrivateServer) -> None:
    await _outage_scenario(storage, server, runs=20, down=2.0, mode="crash")


async def test_limited_runs_survive_a_short_crash_and_keep_their_limit(
    storage: StorageBackend, server: PrivateServer
) -> None:
    """Twenty runs behind a concurrency limit of 3, most of them queued when the server
    crashes: gate writes and hand-offs fail with it; every run still completes soundly
    and no more than 3 are ever inside a round at once."""
    most_inside[0] = 0
    await _outage_scenario(storage, server, runs=20, down=2.0, mode="crash", flow=limited_fanout)
    assert 2 <= most_inside[0] <= 3


@pytest.mark.outages
@pytest.mark.parametrize(
    ("mode", "down"), [("crash", 2.0), ("crash", 10.0), ("stop", 10.0)], ids=str
)
async def test_hundred_runs_survive_an_outage(
    storage: StorageBackend, server: PrivateServer, mode: str, down: float
) -> None:
    await _outage_scenario(storage, server, runs=100, down=down, mode=mode)


@pytest.mark.outages
async def test_hundred_runs_survive_a_frozen_server(
    fast_storage: StorageBackend, server: PrivateServer
) -> None:
    await _outage_scenario(fast_storage, server, runs=100, down=5.0, mode="freeze")


# -- the backend itself while the server is away -----------------------------------------------


async def _finished_run(storage: StorageBackend) -> str:
    run_id = await start(fanout, 7, storage=storage)
    assert (await wait_for_run(run_id, timeout=30, storage=storage)).result == expected(7)
    return str(run_id)


async def _assert_fails_typed_and_fast(storage: StorageBackend, run_id: str, bound: float) -> None:
    calls: dict[str, Any] = {
        "get_run": lambda: storage.get_run(run_id),
        "get_events": lambda: storage.get_events(run_id),
        "append_events": lambda: storage.append_events(run_id, [], expected_last_sequence=0),
        "claim_due_runs": lambda: storage.claim_due_runs(utcnow(), "probe", utcnow()),
    }
    for name, call in calls.items():
        began = time.monotonic()
        with pytest.raises(StorageUnavailableError):
            await call()
        took = time.monotonic() - began
        assert took < bound, f"{name} took {took:.1f}s to fail"


async def test_calls_fail_fast_and_typed_while_down_then_work_again(
    storage: StorageBackend, server: PrivateServer
) -> None:
    run_id = await _finished_run(storage)
    await server.stop(crash=True)
    await _assert_fails_typed_and_fast(storage, run_id, bound=START_BOUND / 2)
    await server.start()
    # The pooled connections died with the server: the first calls after it is back must
    # not be handed a dead one.
    assert (await storage.get_run(run_id)) is not None
    assert len(await storage.get_events(run_id)) > 0


async def test_a_frozen_server_times_calls_out_instead_of_hanging(
    fast_storage: StorageBackend, server: PrivateServer
) -> None:
    storage = fast_storage
    run_id = await _finished_run(storage)
    server.freeze()
    try:
        await _assert_fails_typed_and_fast(storage, run_id, bound=2 * FAST_TIMEOUT + 1)
        key, new_id, error, took = await _probe(storage, "frozen-probe", 5)
        assert new_id is None and took < 5 * FAST_TIMEOUT + START_BOUND, (error, took)
    finally:
        server.thaw()
    assert (await storage.get_run(run_id)) is not None
    stored = await storage.get_run_by_idempotency_key(key)
    assert stored is None or "did not answer whether" in error, error
