"""Logging in with a token, and out.

The login form takes the admin or the read-only token and answers with the session
cookie (:meth:`Authenticator.new_session`): HttpOnly, SameSite=Strict, Secure when the
request came over https (behind a TLS proxy: run uvicorn with ``--proxy-headers``), and
scoped to the app's mount point. The token itself is never stored in the browser.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import RedirectResponse

from pyworkflow.server.app import state
from pyworkflow.server.auth import SESSION_COOKIE, Principal
from pyworkflow.server.ui.render import PageRoute, page, path_for, read_form, root, viewer

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _safe_next(request: Request, target: str) -> str:
    """``target`` if it is a path inside this app, else the runs page (no open redirect)."""
    base = root(request) + "/"
    inside = target.startswith(base) and not target.startswith("//") and "\\" not in target
    return target if inside else path_for(request, "ui_runs")


@router.get("/login", name="ui_login")
async def login_form(request: Request, next: str = "") -> Response:
    auth = state(request).auth
    principal = auth.identify(request)
    if principal is not None:  # logged in already, or an open server: nothing to ask
        return RedirectResponse(_safe_next(request, next), status_code=303)
    return page(request, None, "login.html", {"next": next, "error": ""})


@router.post("/login", name="ui_login_submit")
async def login(request: Request) -> Response:
    # Another site cannot log a browser in with a token of its choosing.
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise HTTPException(403, "cross-site login refused")
    fields = await read_form(request)
    token = (fields.get("token") or [""])[0].strip()
    target = (fields.get("next") or [""])[0]
    auth = state(request).auth
    role = auth.role_of_token(token) if token else None
    if role is None:
        context = {"next": target, "error": "That token is not valid here."}
        return page(request, None, "login.html", context, status_code=401)
    response = RedirectResponse(_safe_next(request, target), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        auth.new_session(role),
        max_age=state(request).settings.session_seconds,
        path=root(request) or "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout", name="ui_logout")
async def logout(request: Request, principal: Annotated[Principal, Depends(viewer)]) -> Response:
    fields = await read_form(request)
    state(request).auth.check_csrf(request, principal, (fields.get("csrf_token") or [""])[0])
    response = RedirectResponse(path_for(request, "ui_login"), status_code=303)
    response.delete_cookie(
        SESSION_COOKIE,
        path=root(request) or "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response
