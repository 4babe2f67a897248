"""Who may do what: bearer tokens, the browser's session cookie and its CSRF checks, the
open (tokenless) server, and the refusal to serve an open server beyond loopback.

The login pages that set the cookie belong to the dashboard (tests/server/test_ui*.py);
here the cookie is made by the app's own ``Authenticator`` and used on API routes."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest
from click.testing import CliRunner
from fastapi import FastAPI

from pyworkflow import start
from pyworkflow.cli import main
from pyworkflow.core.exceptions import ConfigurationError
from pyworkflow.primitives.hook_tokens import hash_token
from pyworkflow.runtime import get_runtime
from pyworkflow.server import ServerSettings, check_bind, create_app
from pyworkflow.server.auth import CSRF_HEADER, SESSION_COOKIE, Authenticator, Principal
from tests.server.conftest import ADMIN_TOKEN, READ_TOKEN, client
from tests.server.flows import srv_untyped_hook
from tests.server.hook_flows import token_of, wait_status

UNKNOWN_HOOK = f"/api/hooks/{'0' * 64}/resume"  # admin route: 404 once past auth
EVIL = "https://evil.example"


@pytest.mark.parametrize(
    ("token", "read_status", "admin_status"),
    [
        (ADMIN_TOKEN, 200, 404),
        (READ_TOKEN, 200, 403),
        ("wrong-token-0123456789abcdef", 401, 401),
        (None, 401, 401),
    ],
    ids=["admin", "read", "wrong", "none"],
)
async def test_bearer_tokens(
    app: FastAPI, token: str | None, read_status: int, admin_status: int
) -> None:
    async with client(app, token) as http:
        assert (await http.get("/api/hooks")).status_code == read_status
        assert (await http.post(UNKNOWN_HOOK, json={})).status_code == admin_status
        assert (await http.get("/healthz")).status_code == 200
        refused = await http.get("/api/hooks")
        if read_status == 401:
            assert refused.headers["www-authenticate"] == "Bearer"
            assert ADMIN_TOKEN not in refused.text and READ_TOKEN not in refused.text


async def test_other_authorization_schemes_are_refused(app: FastAPI) -> None:
    async with client(app, token=None) as http:
        basic = await http.get("/api/hooks", headers={"Authorization": f"Basic {ADMIN_TOKEN}"})
        assert basic.status_code == 401
        lower = await http.get("/api/hooks", headers={"Authorization": f"bearer {READ_TOKEN}"})
        assert lower.status_code == 200


def _browser(app: FastAPI, cookie: str, **headers: str) -> httpx.AsyncClient:
    """A client that proves itself with the session cookie only, as a browser does."""
    http = client(app, token=None)
    http.headers.update(headers)
    http.cookies.set(SESSION_COOKIE, cookie)
    return http


def _auth(app: FastAPI) -> Authenticator:
    found: Authenticator = app.state.pyworkflow.auth
    return found


async def _open_hook_url() -> str:
    run_id = await start(srv_untyped_hook)
    await wait_status(run_id, "suspended")
    return f"/api/hooks/{hash_token(token_of(run_id, 'srv_raw'))}/resume"


async def test_session_cookie_reads_and_acts_with_the_csrf_token(app: FastAPI) -> None:
    auth = _auth(app)
    cookie = auth.new_session("admin")
    csrf = auth.csrf_token(Principal("admin", "cookie", session=cookie))
    url = await _open_hook_url()
    async with _browser(app, cookie) as browser:
        assert (await browser.get("/api/hooks")).status_code == 200
        missing = await browser.post(url, json="go")
        assert missing.status_code == 403 and "CSRF" in missing.json()["detail"]
        wrong = await browser.post(url, json="go", headers={CSRF_HEADER: "0" * 64})
        assert wrong.status_code == 403
        evil = await browser.post(url, json="go", headers={CSRF_HEADER: csrf, "Origin": EVIL})
        assert evil.status_code == 403 and "cross-origin" in evil.json()["detail"]
        cross = await browser.post(
            url, json="go", headers={CSRF_HEADER: csrf, "Sec-Fetch-Site": "cross-site"}
        )
        assert cross.status_code == 403 and "cross-site" in cross.json()["detail"]
        allowed = await browser.post(
            url,
            json="go",
            headers={
                CSRF_HEADER: csrf,
                "Origin": "http://testserver",
                "Sec-Fetch-Site": "same-origin",
            },
        )
        assert allowed.status_code == 202, allowed.text


async def test_csrf_token_belongs_to_its_session(app: FastAPI) -> None:
    auth = _auth(app)
    other = auth.new_session("read")
    foreign = auth.csrf_token(Principal("read", "cookie", session=other))
    async with _browser(app, auth.new_session("admin")) as browser:
        refused = await browser.post(UNKNOWN_HOOK, json={}, headers={CSRF_HEADER: foreign})
        assert refused.status_code == 403


async def test_read_session_cannot_act(app: FastAPI) -> None:
    auth = _auth(app)
    cookie = auth.new_session("read")
    csrf = auth.csrf_token(Principal("read", "cookie", session=cookie))
    async with _browser(app, cookie) as browser:
        assert (await browser.get("/api/hooks")).status_code == 200
        refused = await browser.post(UNKNOWN_HOOK, json={}, headers={CSRF_HEADER: csrf})
        assert refused.status_code == 403 and "admin" in refused.json()["detail"]


async def test_expired_tampered_and_junk_cookies_are_refused(app: FastAPI) -> None:
    settings = app.state.pyworkflow.settings
    expired = Authenticator(dataclasses.replace(settings, session_seconds=-10)).new_session("admin")
    read = _auth(app).new_session("read")
    role, expires, signature = read.split(".")
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    cookies = {
        "expired": expired,
        "read promoted to admin": f"admin.{expires}.{signature}",
        "later expiry": f"read.{int(expires) + 3600}.{signature}",
        "flipped signature": f"{role}.{expires}.{flipped}",
        "unsigned": f"admin.{expires}.",
        "garbage": "nonsense",
    }
    for why, cookie in cookies.items():
        async with _browser(app, cookie) as browser:
            assert (await browser.get("/api/hooks")).status_code == 401, why
    # Bytes a browser may send that are not ASCII: refused like any junk, not a crash.
    for raw in (b"admin.\xb2\xb3.abc", f"admin.{expires}.\xe9".encode("latin-1")):
        async with client(app, token=None) as http:
            junk = await http.get(
                "/api/hooks", headers={"Cookie": SESSION_COOKIE.encode() + b"=" + raw}
            )
            assert junk.status_code == 401, raw
            csrf = await http.post(
                UNKNOWN_HOOK,
                json={},
                headers={"Cookie": f"{SESSION_COOKIE}={read}", CSRF_HEADER: b"\xe9"},  # type: ignore[dict-item]
            )
            assert csrf.status_code == 403, raw


async def test_changing_the_admin_token_ends_its_sessions(app: FastAPI) -> None:
    state = app.state.pyworkflow
    old_admin = state.auth.new_session("admin")
    read = state.auth.new_session("read")
    # What a restart with a new admin token (and the same read token) amounts to.
    state.settings = dataclasses.replace(state.settings, token="a-brand-new-admin-token-0123")
    state.auth = Authenticator(state.settings)
    async with _browser(app, old_admin) as browser:
        assert (await browser.get("/api/hooks")).status_code == 401
    async with _browser(app, read) as browser:
        assert (await browser.get("/api/hooks")).status_code == 200
    async with client(app, ADMIN_TOKEN) as http:
        assert (await http.get("/api/hooks")).status_code == 401


@pytest.fixture
async def open_app(backend_url: str) -> AsyncIterator[FastAPI]:
    """An app with no token at all (what ``check_bind`` allows on loopback only)."""
    import tests.server.flows  # noqa: F401 - registers the workflows

    application = create_app(backend_url, settings=ServerSettings())
    yield application
    await get_runtime("local").shutdown()
    await application.state.pyworkflow.storage.close()


def _local(app: FastAPI, host: str = "127.0.0.1:8080") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}")


async def test_open_server_refuses_cross_origin_browser_posts(open_app: FastAPI) -> None:
    url = await _open_hook_url()
    csrf = _auth(open_app).csrf_token(Principal("admin", "open"))
    async with _local(open_app) as http:
        assert (await http.get("/api/hooks")).status_code == 200
        evil = await http.post(url, json=1, headers={"Origin": EVIL})
        assert evil.status_code == 403
        cross = await http.post(url, json=1, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403
        no_csrf = await http.post(url, json=1, headers={"Origin": "http://127.0.0.1:8080"})
        assert no_csrf.status_code == 403  # its own page, but without the page's token
        curl = await http.post(url, json=1)  # no Origin, no cookie: a script, not a page
        assert curl.status_code == 202, curl.text
    async with _local(open_app) as http:
        page = await http.post(
            UNKNOWN_HOOK, json=1, headers={"Origin": "http://127.0.0.1:8080", CSRF_HEADER: csrf}
        )
        assert page.status_code == 404  # past auth and CSRF: the hook is unknown


@pytest.mark.parametrize("host", ["localhost:8080", "[::1]:8080", "127.0.0.1"])
async def test_open_server_answers_loopback_host_names(open_app: FastAPI, host: str) -> None:
    async with _local(open_app, host) as http:
        assert (await http.get("/api/hooks")).status_code == 200


async def test_open_server_refuses_other_host_names(open_app: FastAPI) -> None:
    """DNS rebinding: a page on evil.example re-points its name at 127.0.0.1, so the
    browser sends ``Host: evil.example`` and treats the server as same-origin."""
    async with _local(open_app, "evil.example:8080") as http:
        read = await http.get("/api/hooks")
        assert read.status_code == 403 and "localhost" in read.json()["detail"]
        act = await http.post(UNKNOWN_HOOK, json={}, headers={"Origin": "http://evil.example:8080"})
        assert act.status_code == 403
        assert (await http.get("/healthz")).status_code == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "dashboard.example.com"])
def test_open_server_is_not_served_beyond_loopback(host: str) -> None:
    with pytest.raises(ConfigurationError, match="without a token"):
        check_bind(host, ServerSettings())
    check_bind(host, ServerSettings(token=ADMIN_TOKEN))  # with a token: allowed


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"])
def test_open_server_may_serve_loopback(host: str) -> None:
    check_bind(host, ServerSettings())


def test_dashboard_command_refuses_an_open_public_address() -> None:
    result = CliRunner().invoke(main, ["dashboard", "--host", "0.0.0.0", "--port", "9"])
    assert result.exit_code != 0
    assert "without a token" in result.output and "PYWORKFLOW_DASHBOARD_TOKEN" in result.output


def test_short_or_equal_tokens_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="at least 16"):
        ServerSettings(token="short")
    with pytest.raises(ConfigurationError, match="must differ"):
        ServerSettings(token=ADMIN_TOKEN, read_token=ADMIN_TOKEN)
