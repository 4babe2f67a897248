"""The dashboard's pages over HTTP (no browser): login and sessions, what each page shows,
the actions and their guards (admin role, CSRF token, same origin), escaping, security
headers, and the app mounted under a prefix. SQLite and PostgreSQL (``app`` fixture)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from pyworkflow import get_workflow_run, start
from pyworkflow.schedules import create_schedule, get_schedule
from pyworkflow.server import ServerSettings, create_app
from pyworkflow.storage.schemas import WorkerRecord
from tests.server.conftest import ADMIN_TOKEN, READ_TOKEN, client
from tests.server.flows import (
    srv_approval,
    srv_fails,
    srv_price_watch,
    srv_quick,
    srv_sleeper,
    srv_untyped_hook,
)
from tests.server.test_runs_api import _wait_status


async def _login(http: httpx.AsyncClient, token: str) -> str:
    """Log ``http`` in with ``token``; the CSRF token of its pages."""
    answer = await http.post("/login", data={"token": token, "next": ""})
    assert answer.status_code == 303, answer.text
    return _csrf((await http.get("/workflows")).text)


def _csrf(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([0-9a-f]*)">', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def browser(app: FastAPI, base_url: str = "http://testserver") -> httpx.AsyncClient:
    """A client with no bearer token: it proves who it is with the session cookie."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


# -- login ----------------------------------------------------------------------------------


async def test_pages_ask_for_a_login_and_come_back_after_it(app: FastAPI) -> None:
    async with browser(app) as http:
        asked = await http.get("/runs/run_x", params={"seen": 1})
        assert asked.status_code == 303
        login = urlsplit(asked.headers["location"])
        assert login.path == "/login" and parse_qs(login.query)["next"] == ["/runs/run_x?seen=1"]
        # HTMX (polling a fragment) is told to load the login page instead.
        polled = await http.get("/", headers={"HX-Request": "true"})
        assert polled.status_code == 401 and polled.headers["HX-Redirect"].startswith("/login")

        wrong = await http.post("/login", data={"token": "not-a-valid-token-at-all"})
        assert wrong.status_code == 401 and "not valid" in wrong.text
        done = await http.post("/login", data={"token": READ_TOKEN, "next": "/workers"})
        assert done.status_code == 303 and done.headers["location"] == "/workers"
        assert (await http.get("/workers")).status_code == 200


async def test_the_session_cookie_is_http_only_strict_and_holds_no_token(app: FastAPI) -> None:
    async with browser(app) as http:
        answer = await http.post("/login", data={"token": ADMIN_TOKEN})
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
        assert ADMIN_TOKEN not in cookie
    async with browser(app, "https://dashboard.example") as http:
        answer = await http.post("/login", data={"token": ADMIN_TOKEN})
        assert "Secure" in answer.headers["set-cookie"]


async def test_login_refuses_other_sites_and_foreign_redirects(app: FastAPI) -> None:
    async with browser(app) as http:
        elsewhere = await http.post(
            "/login", data={"token": ADMIN_TOKEN, "next": "https://evil.example/"}
        )
        assert elsewhere.headers["location"] == "/"
        sneaky = await http.post("/login", data={"token": ADMIN_TOKEN, "next": "//evil.example"})
        assert sneaky.headers["location"] == "/"
        forged = await http.post(
            "/login", data={"token": ADMIN_TOKEN}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert forged.status_code == 403


async def test_logout_ends_the_session(app: FastAPI) -> None:
    async with browser(app) as http:
        csrf = await _login(http, ADMIN_TOKEN)
        assert (await http.post("/logout", data={})).status_code == 403  # no CSRF token
        out = await http.post("/logout", data={"csrf_token": csrf})
        assert out.status_code == 303 and 'pyworkflow_session=""' in out.headers["set-cookie"]
        assert (await http.get("/")).status_code == 303


async def test_an_open_server_needs_no_login(backend_url: str) -> None:
    application = create_app(backend_url, settings=ServerSettings())
    try:
        async with browser(application, "http://127.0.0.1:8080") as http:
            page = await http.get("/")
            assert page.status_code == 200 and "open server" in page.text
            assert "Log out" not in page.text
    finally:
        await application.state.pyworkflow.storage.close()


# -- what pages show ------------------------------------------------------------------------


async def test_runs_page_filters_pages_and_refreshes(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pyworkflow.server.ui.runs.PAGE_SIZE", 2)
    quick = [await start(srv_quick, i) for i in range(3)]
    failed = await start(srv_fails)
    async with browser(app) as http:
        await _login(http, READ_TOKEN)
        first = await http.get("/", params={"workflow": "srv_quick"})
        shown = re.findall(r'data-run-id="([^"]+)"', first.text)
        assert shown == quick[::-1][:2]  # newest first, one page
        older = re.search(r'href="([^"]+)" rel="next"', first.text)
        assert older is not None
        rest = await http.get(older.group(1).replace("&amp;", "&"))
        assert re.findall(r'data-run-id="([^"]+)"', rest.text) == [quick[0]]
        assert 'hx-trigger="every 2s"' in first.text and "hx-trigger" not in rest.text

        by_status = await http.get("/", params={"status": "failed"})
        assert re.findall(r'data-run-id="([^"]+)"', by_status.text) == [failed]
        fragment = await http.get("/", params={"status": "failed"}, headers={"HX-Request": "true"})
        assert (
            fragment.text.lstrip().startswith('<div id="runs-table"')
            and "<html" not in fragment.text
        )

        bad = await http.get("/", params={"since": "yesterday-ish"})
        assert bad.status_code == 400 and "since (UTC)" in bad.text
        bad_cursor = await http.get("/", params={"cursor": "nonsense"})
        assert bad_cursor.status_code == 400 and "invalid cursor" in bad_cursor.text


async def test_run_page_shows_input_result_and_escapes_stored_data(app: FastAPI) -> None:
    hostile = "<script>alert(1)</script>"
    run_id = await start(srv_quick, hostile)  # str * 2 is a fine result too
    async with browser(app) as http:
        await _login(http, READ_TOKEN)
        page = await http.get(f"/runs/{run_id}")
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "&lt;script&gt;alert(1)" in page.text
        assert "srv_double" in page.text and 'class="bar st-completed' in page.text
        assert "workflow.started" in page.text and "step.completed" in page.text
        run = await get_workflow_run(run_id)
        assert run is not None
        unchanged = await http.get(
            f"/runs/{run_id}",
            params={"seen": run.last_sequence, "seen_status": "completed"},
            headers={"HX-Request": "true"},
        )
        assert unchanged.status_code == 204  # the poll keeps the page as it is
        assert (await http.get("/runs/run_nope")).status_code == 404


async def test_failed_run_shows_its_error_and_traceback(app: FastAPI) -> None:
    run_id = await start(srv_fails)
    async with browser(app) as http:
        await _login(http, READ_TOKEN)
        page = (await http.get(f"/runs/{run_id}")).text
        assert "FatalError</strong>: card declined" in page
        assert 'class="traceback"' in page and "Traceback (most recent call last)" in page


# -- actions --------------------------------------------------------------------------------


async def test_cancel_needs_the_admin_role_and_the_page_csrf_token(app: FastAPI) -> None:
    run_id = await start(srv_sleeper, 3600)
    async with browser(app) as reader:
        csrf = await _login(reader, READ_TOKEN)
        page = (await reader.get(f"/runs/{run_id}")).text
        assert 'id="cancel-run"' not in page and 'id="retry-run"' not in page
        refused = await reader.post(f"/runs/{run_id}/cancel", data={"csrf_token": csrf})
        assert refused.status_code == 403 and "admin" in refused.text
    async with browser(app) as admin:
        csrf = await _login(admin, ADMIN_TOKEN)
        assert 'id="cancel-run"' in (await admin.get(f"/runs/{run_id}")).text
        missing = await admin.post(f"/runs/{run_id}/cancel", data={})
        assert missing.status_code == 403 and "CSRF" in missing.text
        foreign = await admin.post(
            f"/runs/{run_id}/cancel",
            data={"csrf_token": csrf},
            headers={"Origin": "https://evil.example"},
        )
        assert foreign.status_code == 403
        assert (await get_workflow_run(run_id)).status == "suspended"  # type: ignore[union-attr]

        done = await admin.post(
            f"/runs/{run_id}/cancel", data={"csrf_token": csrf, "reason": "wrong address"}
        )
        assert done.status_code == 303 and done.headers["location"] == f"/runs/{run_id}"
        await _wait_status(run_id, "cancelled")
        assert "wrong address" in (await admin.get(f"/runs/{run_id}")).text


async def test_start_again_runs_the_same_input_and_links_both_runs(app: FastAPI) -> None:
    first = await start(srv_quick, 7)
    async with browser(app) as admin:
        csrf = await _login(admin, ADMIN_TOKEN)
        again = await admin.post(f"/runs/{first}/retry", data={"csrf_token": csrf})
        assert again.status_code == 303
        second = again.headers["location"].rsplit("/", 1)[-1]
        assert second != first
        await _wait_status(second, "completed")
        retried = await get_workflow_run(second)
        assert retried is not None and retried.input_args == (7,)
        assert f'href="/runs/{first}"' in (await admin.get(f"/runs/{second}")).text  # retry of
        assert f'href="/runs/{second}"' in (await admin.get(f"/runs/{first}")).text  # again as


async def test_resume_a_typed_hook_from_its_form(app: FastAPI) -> None:
    run_id = await start(srv_approval, "o-77")
    await _wait_status(run_id, "suspended")
    async with browser(app) as reader:
        await _login(reader, READ_TOKEN)
        assert (await reader.get("/hooks")).status_code == 403
    async with browser(app) as admin:
        csrf = await _login(admin, ADMIN_TOKEN)
        page = (await admin.get("/hooks")).text
        assert 'name="field.approved" value="true"' in page and 'name="field.approver"' in page
        assert "whk_" not in page  # no hook token is ever shown
        action = re.search(r'action="(/hooks/[0-9a-f]{64}/resume)"', page)
        assert action is not None

        refused = await admin.post(
            action.group(1),
            data={"csrf_token": csrf, "payload_json": '{"approved": "perhaps"}'},
        )
        assert refused.status_code == 422
        assert "approved" in refused.text and "approver" in refused.text  # what was wrong
        assert "perhaps" in refused.text  # what was typed stays in the form

        form = {"csrf_token": csrf, "field.approved": "true", "field.approver": "kim"}
        delivered = await admin.post(action.group(1), data=form)
        assert delivered.status_code == 303 and delivered.headers["location"] == f"/runs/{run_id}"
        await _wait_status(run_id, "completed")
        run = await get_workflow_run(run_id)
        assert run is not None and run.result == {"order_id": "o-77", "approved": True, "by": "kim"}
        again = await admin.post(action.group(1), data=form)
        assert again.status_code == 409  # a hook takes one payload


async def test_an_untyped_hook_gets_a_json_text_area(app: FastAPI) -> None:
    run_id = await start(srv_untyped_hook)
    await _wait_status(run_id, "suspended")
    async with browser(app) as admin:
        csrf = await _login(admin, ADMIN_TOKEN)
        page = (await admin.get("/hooks")).text
        assert 'name="payload_json"' in page and "field." not in page
        action = re.search(r'action="(/hooks/[0-9a-f]{64}/resume)"', page)
        assert action is not None
        bad = await admin.post(action.group(1), data={"csrf_token": csrf, "payload_json": "{"})
        assert bad.status_code == 422 and "not valid JSON" in bad.text
        await admin.post(action.group(1), data={"csrf_token": csrf, "payload_json": '[1, "two"]'})
        await _wait_status(run_id, "completed")
        run = await get_workflow_run(run_id)
        assert run is not None and run.result == [1, "two"]


async def test_schedule_actions(app: FastAPI) -> None:
    await create_schedule(srv_quick, "0 3 * * *", 5, schedule_id="nightly")
    async with browser(app) as reader:
        await _login(reader, READ_TOKEN)
        page = (await reader.get("/schedules")).text
        assert "cron 0 3 * * *" in page and "03:00:00" in page  # the next fire time
        assert "Pause" not in page and "Trigger now" not in page
    async with browser(app) as admin:
        csrf = await _login(admin, ADMIN_TOKEN)
        form = {"csrf_token": csrf}
        assert (await admin.post("/schedules/nightly/pause", data=form)).status_code == 303
        paused = await get_schedule("nightly")
        assert paused is not None and paused.status == "paused" and paused.next_run_time is None
        assert (await admin.post("/schedules/nightly/resume", data=form)).status_code == 303
        assert (await get_schedule("nightly")).status == "active"  # type: ignore[union-attr]

        triggered = await admin.post("/schedules/nightly/trigger", data=form)
        run_id = triggered.headers["location"].rsplit("/", 1)[-1]
        await _wait_status(run_id, "completed")
        assert f'href="/runs/{run_id}"' in (await admin.get("/schedules")).text

        assert (await admin.post("/schedules/nightly/delete", data=form)).status_code == 303
        assert await get_schedule("nightly") is None
        gone = await admin.post("/schedules/nightly/delete", data=form)
        assert gone.status_code == 404 and "nightly" in gone.text


async def test_workflows_and_workers_pages(app: FastAPI) -> None:
    await start(srv_quick, 1)
    storage = await app.state.pyworkflow.backend()
    await storage.save_worker(WorkerRecord("celery@box-1", host="box-1", pid=42, queues=["steps"]))
    async with browser(app) as http:
        await _login(http, READ_TOKEN)
        workflows = (await http.get("/workflows")).text
        row = workflows[workflows.index("srv_quick</strong>") :]
        assert "tests.server.flows" in row and "completed" in row
        workers = (await http.get("/workers")).text
        assert "celery@box-1" in workers and "box-1" in workers and "steps" in workers


# -- the frame ------------------------------------------------------------------------------


async def test_pages_carry_a_content_security_policy_and_no_tokens(app: FastAPI) -> None:
    run_id = await start(srv_approval, "o-1")
    async with browser(app) as http:
        await _login(http, ADMIN_TOKEN)
        for path in ("/", f"/runs/{run_id}", "/hooks", "/schedules", "/workflows", "/workers"):
            page = await http.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-security-policy"].startswith("default-src 'self'")
            assert page.headers["cache-control"] == "no-store"
            assert ADMIN_TOKEN not in page.text and READ_TOKEN not in page.text
            assert "token_hash" not in page.text
            # Nothing the policy would block: no inline script, handler or style.
            assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), path
            assert not re.search(r"<[^>]+\s(on[a-z]+|style)=", page.text), path


async def test_mounted_under_a_prefix_every_link_and_cookie_stays_inside(app: FastAPI) -> None:
    parent = FastAPI()
    parent.mount("/workflows", app)
    run_id = await start(srv_quick, 2)
    async with browser(parent) as http:
        asked = await http.get("/workflows/")
        assert asked.headers["location"] == "/workflows/login?next=%2Fworkflows%2F"
        answer = await http.post(
            "/workflows/login", data={"token": READ_TOKEN, "next": "/workflows/"}
        )
        assert answer.headers["location"] == "/workflows/"
        assert "Path=/workflows" in answer.headers["set-cookie"]
        page = (await http.get("/workflows/")).text
        assert f'href="/workflows/runs/{run_id}"' in page
        assert 'href="/workflows/static/app.css"' in page
        assert (await http.get("/workflows/static/htmx.min.js")).status_code == 200
        assert (await http.get(f"/workflows/runs/{run_id}")).status_code == 200
        outside = await http.post(
            "/workflows/login", data={"token": READ_TOKEN, "next": "/elsewhere"}
        )
        assert outside.headers["location"] == "/workflows/"


async def test_why_over_http_and_on_the_run_page(app: FastAPI) -> None:
    """``GET /api/runs/{id}/why`` and the dashboard's run page say what a run waits for,
    with the command that moves it; readers may ask; an unknown run is a 404."""
    run_id = await start(srv_price_watch, 1)
    await _wait_status(run_id, "suspended")
    async with client(app, READ_TOKEN) as http:
        answer = await http.get(f"/api/runs/{run_id}/why")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "suspended" and body["stuck"] is False
        [cause] = body["causes"]
        assert cause["kind"] == "signal" and cause["message"] == "waiting for signal srv_price"
        assert cause["fix"] == f"pyworkflow runs signal {run_id} srv_price --payload JSON"
        assert cause["since"] is not None and cause["stuck"] is False
        assert (await http.get("/api/runs/run_nope/why")).status_code == 404
    async with browser(app) as http:
        await _login(http, READ_TOKEN)
        page = (await http.get(f"/runs/{run_id}")).text
        assert 'id="why"' in page and "What it waits for" in page
        assert "waiting for signal srv_price" in page and "runs signal" in page


async def test_an_admin_sends_a_signal_from_the_run_page(app: FastAPI) -> None:
    """The run page's signal form: a refused payload comes back on the page with what
    was wrong and what was typed (nothing stored); a valid one reaches the run."""
    run_id = await start(srv_price_watch, 1)
    await _wait_status(run_id, "suspended")
    async with browser(app) as http:
        csrf = await _login(http, ADMIN_TOKEN)
        page = (await http.get(f"/runs/{run_id}")).text
        assert 'id="signal-form"' in page
        form = {"csrf_token": csrf, "name": "srv_price", "payload": '{"sku": "a", "cents": "lots"}'}
        refused = await http.post(f"/runs/{run_id}/signal", data=form)
        assert refused.status_code == 422
        assert "cents: Input should be a valid integer" in refused.text
        assert "lots" in refused.text  # the values typed are kept
        not_json = await http.post(f"/runs/{run_id}/signal", data={**form, "payload": "{oops"})
        assert not_json.status_code == 422 and "payload: not JSON" in not_json.text
        sent = await http.post(
            f"/runs/{run_id}/signal", data={**form, "payload": '{"sku": "a", "cents": 42}'}
        )
        assert sent.status_code == 303
    await _wait_status(run_id, "completed")
    run = await get_workflow_run(run_id)
    assert run is not None and run.result == [42]
    waiting = await start(srv_price_watch, 1)
    await _wait_status(waiting, "suspended")
    async with browser(app) as http:  # readers see no form and may not send
        csrf = await _login(http, READ_TOKEN)
        assert 'id="signal-form"' not in (await http.get(f"/runs/{waiting}")).text
        denied = await http.post(f"/runs/{waiting}/signal", data={"csrf_token": csrf, "name": "x"})
        assert denied.status_code == 403


async def test_runs_page_marks_runs_queued_at_a_flow_control_gate(app: FastAPI) -> None:
    from datetime import timedelta

    from pyworkflow import get_storage
    from pyworkflow.engine.flow import QUEUED_LIMIT
    from pyworkflow.storage.schemas import RunStatus, RunUpdate, utcnow

    run_id = await start(srv_sleeper)
    other = await start(srv_quick, 1)
    storage = get_storage()
    run = await get_workflow_run(run_id)
    queued = {
        "status": RunStatus.PENDING,
        "lease_owner": QUEUED_LIMIT,
        "lease_expires_at": utcnow() + timedelta(minutes=5),
    }
    await storage.append_events(
        run_id, [], expected_last_sequence=run.last_sequence, update=RunUpdate(queued)
    )
    async with browser(app) as http:
        await _login(http, READ_TOKEN)
        page = (await http.get("/")).text
    row = page[page.index(f'data-run-id="{run_id}"') :].split("</tr>")[0]
    assert "queued: concurrency limit" in row
    plain = page[page.index(f'data-run-id="{other}"') :].split("</tr>")[0]
    assert "queued" not in plain
