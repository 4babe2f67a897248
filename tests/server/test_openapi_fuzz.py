"""Property-based test of every route in the OpenAPI schema (schemathesis): whatever the
parameters and bodies, valid or not, no answer is a 500.

The server is a real ``pyworkflow dashboard`` subprocess on SQLite and on PostgreSQL
(which refuses more text than SQLite does), not the in-process
ASGI app): the runs the fuzzer starts, cancels and resumes then execute in a process of
their own, not on an event loop this test session shares with other tests. Before the
fuzzing, runs in every state, hooks (open and received) and schedules are stored, and
path parameters are drawn from their ids as often as from the fuzzer's inventions.
Event-stream routes are left out (they stay open; their own tests cover them).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode

from pyworkflow.schedules import create_schedule
from pyworkflow.storage.config import storage_from_url
from tests.server.conftest import ADMIN_TOKEN
from tests.server.live_server import LiveServer, dashboard
from tests.services import require_service
from tests.storage.backend_postgres import admin_execute, new_schema, with_options

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
#: Requests per operation and backend (valid and invalid drawn alike); bounds the time.
MAX_EXAMPLES = 30


@dataclass
class Seeded:
    """A running server and the ids of what is stored in it, by path parameter kind."""

    server: LiveServer
    ids: dict[str, list[str]] = field(default_factory=dict)

    def known(self, parameter: str) -> list[str]:
        for kind, values in self.ids.items():
            if kind in parameter:
                return values
        return []


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Seeded]:
    """A dashboard over a fresh SQLite file or PostgreSQL schema, with runs, hooks and
    schedules stored."""
    workdir = tmp_path_factory.mktemp("fuzz")
    schema = ""
    if request.param == "sqlite":
        url = f"sqlite:///{workdir / 'fuzz.db'}"
    else:
        schema = new_schema()
        url = with_options(require_service("postgres"), schema=schema, application_name=schema)
    try:
        with dashboard(url, workdir) as server:
            found = Seeded(server)
            with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as http:
                found.ids["run"] = _start_runs(http)
                found.ids["key"] = _hooks(http)
                found.ids["name"] = ["srv_quick", "srv_sleeper", "srv_approval", "no_such_flow"]
            found.ids["schedule"] = asyncio.run(_schedules(url))
            yield found
    finally:
        if schema:
            asyncio.run(admin_execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def _start_runs(http: httpx.Client) -> list[str]:
    calls: list[tuple[str, list[Any]]] = [
        ("srv_quick", [2]),
        ("srv_fails", []),
        ("srv_sleeper", [3600]),
        ("srv_approval", ["order-1"]),
        ("srv_approval", ["order-2"]),
        ("srv_untyped_hook", []),
        ("srv_parent", [2]),
    ]
    ids = []
    for name, args in calls:
        answer = http.post(f"/api/workflows/{name}/runs", json={"args": args})
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["run_id"])
    return ids


def _hooks(http: httpx.Client) -> list[str]:
    """The keys of the three hooks the seeded runs wait on; one of them received."""
    deadline = time.monotonic() + 15
    hooks: list[dict[str, Any]] = []
    while len(hooks) < 3 and time.monotonic() < deadline:
        hooks = http.get("/api/hooks").json()["hooks"]
        time.sleep(0.05)
    assert len(hooks) == 3, hooks
    typed = next(h for h in hooks if h["name"] == "srv_approval")
    answer = http.post(
        f"/api/hooks/{typed['key']}/resume", json={"approved": True, "approver": "fuzz"}
    )
    assert answer.status_code == 202, answer.text
    return [h["key"] for h in hooks]


async def _schedules(url: str) -> list[str]:
    backend = storage_from_url(url)
    try:
        made = [
            await create_schedule(workflow_name="srv_quick", spec=spec, args=(1,), storage=backend)
            for spec in ("0 9 * * mon-fri", "1h")
        ]
    finally:
        await backend.close()
    return [s.schedule_id for s in made]


#: Inputs a fuzzer seldom draws that once answered 500: a NUL character (PostgreSQL
#: refuses it in text), a time zone offset that overflows at the ends of the calendar,
#: integers beyond 64 bits, an unpaired surrogate in a JSON body.
EDGE_REQUESTS: list[tuple[str, str, Any]] = [
    ("GET", "/api/runs?workflow=a%00b", None),
    ("GET", "/api/runs?tag=a%00b", None),
    ("GET", "/api/runs?idempotency_key=a%00b", None),
    ("GET", "/api/runs/a%00b", None),
    ("GET", "/api/runs/a%00b/events", None),
    ("POST", "/api/runs/a%00b/retry", None),
    ("GET", "/api/hooks?run_id=a%00b", None),
    ("GET", "/api/runs?since=0001-01-01T00:00:00%2B14:00", None),
    ("GET", "/api/runs?until=9999-12-31T23:59:59-14:00", None),
    ("GET", "/api/runs/{run}/events?after=99999999999999999999999", None),
    ("GET", "/api/runs/{run}/children?limit=500&cursor=99999999999999999999999:run_x", None),
    ("GET", "/api/hooks?offset=99999999999999999999999", None),
    ("POST", "/hooks/whk_%00", {}),
]


def test_inputs_the_fuzzer_seldom_draws(seeded: Seeded) -> None:
    run = seeded.ids["run"][0]
    with httpx.Client(base_url=seeded.server.url, headers=AUTH, timeout=10) as http:
        for method, path, body in EDGE_REQUESTS:
            answer = http.request(method, path.format(run=run), json=body)
            assert answer.status_code < 500, f"{method} {path}: {answer.text}"
        sleeper = http.post("/api/workflows/srv_sleeper/runs", json={"args": [3600]})
        run_id = sleeper.json()["run_id"]
        nul = http.post(f"/api/runs/{run_id}/cancel", json={"reason": "a\u0000b"})
        assert nul.status_code in (202, 400), nul.text
        if nul.status_code == 400:  # PostgreSQL: refused, and said why
            assert "NUL character" in nul.json()["detail"]
        hook = seeded.ids["key"][-1]
        surrogate = http.post(
            f"/api/hooks/{hook}/resume",
            content=b'"\\ud800"',
            headers={"Content-Type": "application/json"},
        )
        assert surrogate.status_code == 400 and "surrogate" in surrogate.json()["detail"]


def _operations(seeded: Seeded) -> list[APIOperation]:
    """Every operation of the server's schema, but event streams."""
    url = f"{seeded.server.url}/api/openapi.json"
    document = httpx.get(url, headers=AUTH).json()
    streams = {
        (method.upper(), path)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
        if "text/event-stream" in json.dumps(operation.get("responses", {}))
    }
    loaded = schemathesis.openapi.from_dict(document)
    found = [result.ok() for result in loaded.get_all_operations()]
    return [op for op in found if (op.method.upper(), op.path) not in streams]


def _fuzz(operation: APIOperation, seeded: Seeded, session: requests.Session) -> None:
    """``MAX_EXAMPLES`` valid or invalid requests to ``operation``; half of its path
    parameters name stored objects."""
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases, data=st.data())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def call(case: Case, data: st.DataObject) -> None:
        for name in list(case.path_parameters or {}):
            known = seeded.known(name)
            if known and data.draw(st.booleans(), label=f"known {name}"):
                case.path_parameters[name] = data.draw(st.sampled_from(known), label=name)
        response = case.call(base_url=seeded.server.url, session=session, headers=AUTH, timeout=10)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} answered {response.status_code}: "
            f"{response.text[:300]}\n{case.as_curl_command(headers=AUTH)}"
        )

    call()


def test_no_route_answers_500(seeded: Seeded) -> None:
    """Fuzz every documented route; report every operation that answered 500 at once
    (with the server's log, which has the tracebacks)."""
    operations = _operations(seeded)
    assert len(operations) >= 8
    failures = []
    with requests.Session() as session:  # keep-alive: one connection, not one per request
        for operation in operations:
            try:
                _fuzz(operation, seeded, session)
            except AssertionError as exc:
                failures.append(f"{operation.label}: {exc}")
    assert not failures, (
        "\n\n".join(failures) + "\n--- server output ---\n" + (seeded.server.output()[-6000:])
    )


def test_schema_documents_the_hook_routes(seeded: Seeded) -> None:
    paths = httpx.get(f"{seeded.server.url}/api/openapi.json", headers=AUTH).json()["paths"]
    assert {"/api/hooks", "/api/hooks/{key}", "/api/hooks/{key}/resume", "/hooks/{token}"} <= set(
        paths
    )
    body = paths["/hooks/{token}"]["post"]["requestBody"]["content"]
    assert "application/json" in body
