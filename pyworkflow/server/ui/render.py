"""What every dashboard page shares: templates, links, the login check, form reading and
the error pages.

Pages are server-rendered Jinja2 with autoescaping on (stored data is never marked safe).
Links are built from the route names and the ASGI ``root_path``, so they stay right when
the app is mounted under a prefix. Every page answer carries a Content-Security-Policy
that allows this origin's scripts and styles only (no inline code), and ``no-store``:
pages show run data and the CSRF token.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from pyworkflow.server.app import state
from pyworkflow.server.auth import Principal, current_principal
from pyworkflow.server.errors import status_of
from pyworkflow.storage.schemas import utcnow
from pyworkflow.utils.duration import human_duration
from pyworkflow.utils.log import logger

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
STATIC = Path(__file__).resolve().parent.parent / "static"
STATIC_ROUTE = "pyworkflow_static"

#: Payload text longer than this is shown cut, with a "show all" that opens the rest.
PREVIEW_CHARS = 600

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """A page was asked for without a valid login: answered with a redirect to it."""


# -- links ----------------------------------------------------------------------------------


def root(request: Request) -> str:
    """Where the app is mounted (``""`` at the top of the server)."""
    return str(request.scope.get("root_path") or "").rstrip("/")


def path_for(request: Request, name: str, /, **params: Any) -> str:
    """The path of route ``name`` of this app, under its mount point (path parameters
    are percent-encoded: run ids are user data)."""
    quoted = {key: quote(str(value), safe="") for key, value in params.items()}
    return root(request) + str(request.app.url_path_for(name, **quoted))


def with_query(path: str, **params: Any) -> str:
    """``path`` with the non-empty ``params`` as its query string."""
    kept = {key: value for key, value in params.items() if value not in (None, "")}
    return f"{path}?{urlencode(kept)}" if kept else path


def current_path(request: Request) -> str:
    """This request's path and query as the browser sees it (mount point included)."""
    base, path = root(request), str(request.scope["path"])
    if base and path.startswith(base + "/"):  # servers put the mount point into the path
        path = path[len(base) :]
    query = request.url.query
    return base + path + (f"?{query}" if query else "")


def is_htmx(request: Request) -> bool:
    """Whether HTMX asked (it wants the page's fragment, not the whole page)."""
    return request.headers.get("hx-request") == "true"


# -- formatting -----------------------------------------------------------------------------


def pretty(value: Any) -> str:
    """A JSON tree as indented text (a stored string payload stays as it is)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def compact(value: Any) -> str:
    """A JSON tree with one line per top-level key or item (nested values stay on their
    line): most payloads read at a glance, and long ones cut cleanly for a preview."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value:
        lines = [f"  {_one_line(str(key))}: {_one_line(item)}" for key, item in value.items()]
        return "{\n" + ",\n".join(lines) + "\n}"
    if isinstance(value, list) and value:
        return "[\n" + ",\n".join(f"  {_one_line(item)}" for item in value) + "\n]"
    return _one_line(value)


def _one_line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """The start of ``text`` (the template offers the rest behind "show all")."""
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def when(value: datetime | None) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SS`` UTC (``-`` for none)."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def relative(value: datetime | None) -> str:
    """``3m05s ago`` / ``in 12s`` from now."""
    if value is None:
        return ""
    seconds = (value - utcnow()).total_seconds()
    if abs(seconds) < 1:
        return "now"
    text = f"{int(abs(seconds))}s" if abs(seconds) < 60 else human_duration(abs(seconds))
    return f"in {text}" if seconds > 0 else f"{text} ago"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template is HTML; stored data is never marked safe
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        pretty=pretty,
        compact=compact,
        preview=preview,
        when=when,
        relative=relative,
        duration=human_duration,
    )
    env.globals.update(preview_chars=PREVIEW_CHARS)
    return env


templates = Jinja2Templates(env=_environment())


def page(
    request: Request,
    principal: Principal | None,
    template: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Render ``template`` with what every page needs (links, role, CSRF token)."""
    auth = state(request).auth
    values: dict[str, Any] = {
        "principal": principal,
        "is_admin": principal is not None and principal.is_admin,
        "csrf": auth.csrf_token(principal) if principal is not None else "",
        "open_server": state(request).settings.open,
        "link": lambda name, **params: path_for(request, name, **params),
        "static": lambda file: path_for(request, STATIC_ROUTE, path=file).replace("%2F", "/"),
        "with_query": with_query,
        "here": current_path(request),
        "nav": "",
        "version": request.app.version,
    }
    values.update(context or {})
    response = templates.TemplateResponse(request, template, values, status_code=status_code)
    response.headers["Vary"] = "HX-Request, Cookie"
    return response


# -- who is asking --------------------------------------------------------------------------


async def viewer(request: Request) -> Principal:
    """Dependency of every page: the caller, as the API knows it; a missing or stale login
    (401) becomes a redirect to the login page."""
    try:
        return await current_principal(request)
    except HTTPException as exc:
        if exc.status_code == 401:
            raise LoginRequired from None
        raise


async def admin(request: Request) -> Principal:
    """Dependency of pages only admins see (the hooks page)."""
    principal = await viewer(request)
    if not principal.is_admin:
        raise HTTPException(403, "this page needs the admin token")
    return principal


@dataclass(frozen=True)
class Form:
    """A submitted (URL-encoded) form of an admin, CSRF-checked."""

    principal: Principal
    fields: dict[str, list[str]]

    def get(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[0] if values else default


async def read_form(request: Request) -> dict[str, list[str]]:
    """The request's URL-encoded form, what browsers and HTMX send (413 over the body
    limit, 415 for a body of another type)."""
    limit = state(request).settings.max_body_bytes
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"form over {limit} bytes")
    if not body:
        return {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise HTTPException(415, "send the form URL-encoded (application/x-www-form-urlencoded)")
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=1000)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "the form is not valid URL-encoded UTF-8") from None


async def admin_form(request: Request) -> Form:
    """Dependency of every action: an admin's form carrying this page's CSRF token."""
    principal = await viewer(request)
    if not principal.is_admin:
        raise HTTPException(403, "this action needs the admin token")
    fields = await read_form(request)
    form_token = (fields.get("csrf_token") or [""])[0]
    state(request).auth.check_csrf(request, principal, form_token)
    return Form(principal, fields)


# -- answers --------------------------------------------------------------------------------


def login_redirect(request: Request) -> Response:
    """Send a caller without a login to the login page, back here afterwards."""
    here = current_path(request)
    login = with_query(path_for(request, "ui_login"), next=here)
    if is_htmx(request):  # a fragment request: HTMX must load the whole login page
        return Response(status_code=401, headers={"HX-Redirect": login})
    return RedirectResponse(login, status_code=303)


def error_page(request: Request, status_code: int, detail: str) -> Response:
    principal = state(request).auth.identify(request)
    context = {"detail": detail, "status_code": status_code}
    return page(request, principal, "error.html", context, status_code=status_code)


class PageRoute(APIRoute):
    """A route whose errors are pages (not the API's JSON) and whose answers carry the
    security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired:
                response = login_redirect(request)
            except HTTPException as exc:
                response = error_page(request, exc.status_code, str(exc.detail))
            except (RequestValidationError, ValidationError) as exc:
                response = error_page(request, 422, _invalid(exc))
            except Exception as exc:
                response = _failure(request, exc)
            response.headers.update(SECURITY_HEADERS)
            return response

        return answer


def _invalid(exc: RequestValidationError | ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path"))
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "invalid input: " + "; ".join(parts)


def _failure(request: Request, exc: Exception) -> Response:
    status = status_of(exc)
    if status is not None:
        return error_page(request, status, _first_line(exc))
    if isinstance(exc, ValueError):
        return error_page(request, 400, _first_line(exc))
    logger.failure(exc, "dashboard: {} {} failed", request.method, request.url.path)
    return error_page(request, 500, "internal error (see the server's log)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
