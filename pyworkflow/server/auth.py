"""Who is asking: bearer tokens, the browser's session cookie, and CSRF checks.

Two roles: ``read`` (every ``GET``, ``/metrics``) and ``admin`` (everything). An API
client sends ``Authorization: Bearer <token>``. A browser logs in once with the token and
then carries a session cookie (HttpOnly, SameSite=Strict) that holds no token: only the
role, an expiry and an HMAC of both keyed by that role's token, so changing a token ends
its sessions. A state-changing request that a browser made (cookie, or an open server)
must come from this origin and carry the page's CSRF token (``X-CSRF-Token`` header or
``csrf_token`` form field); bearer requests carry no ambient credential and need neither.
An open server (no token; loopback addresses only) treats every request addressed to
``localhost``/``127.0.0.1``/``[::1]`` as an admin's and refuses other ``Host`` names, so
a page that re-points its own host name at 127.0.0.1 (DNS rebinding) gets nothing.
``POST /hooks/{token}`` is outside all of this: the hook token is its credential.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

from pyworkflow.server.settings import ServerSettings, is_loopback

Role = Literal["read", "admin"]
SESSION_COOKIE = "pyworkflow_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_EXPIRY = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() accepts "²"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: its role and how it proved it."""

    role: Role
    via: Literal["bearer", "cookie", "open"]
    session: str = ""  # the session cookie's value (cookie logins): the CSRF token's seed

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Authenticator:
    """Checks credentials against one app's :class:`ServerSettings`."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        # Seeds the CSRF token of an open (tokenless) server; new on every start.
        self._open_secret = secrets.token_bytes(32)

    # -- tokens ---------------------------------------------------------------------------

    def role_of_token(self, token: str) -> Role | None:
        """The role ``token`` grants, compared in constant time, or ``None``."""
        given = token.encode()
        if self.settings.token and hmac.compare_digest(given, self.settings.token.encode()):
            return "admin"
        if self.settings.read_token and hmac.compare_digest(
            given, self.settings.read_token.encode()
        ):
            return "read"
        return None

    def identify(self, request: Request) -> Principal | None:
        """The caller of ``request``, or ``None`` when it proved nothing."""
        if self.settings.open:  # no token to check: the Host header decides
            return Principal("admin", "open") if addressed_to_loopback(request) else None
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and credentials:
            role = self.role_of_token(credentials.strip())
            return Principal(role, "bearer") if role else None
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            role = self._session_role(cookie)
            if role:
                return Principal(role, "cookie", session=cookie)
        return None

    # -- browser sessions -------------------------------------------------------------------

    def new_session(self, role: Role) -> str:
        """A session cookie value for ``role``, valid for ``session_seconds``."""
        expires = int(time.time()) + self.settings.session_seconds
        body = f"{role}.{expires}"
        return f"{body}.{self._sign(role, body)}"

    def _session_role(self, value: str) -> Role | None:
        role, _, rest = value.partition(".")
        expires, _, signature = rest.partition(".")
        if role not in ("read", "admin") or not _EXPIRY.fullmatch(expires):
            return None
        if int(expires) < time.time():
            return None
        expected = self._sign(role, f"{role}.{expires}")  # type: ignore[arg-type]
        if not expected or not _same(signature, expected):
            return None
        return role  # type: ignore[return-value]

    def _sign(self, role: Role, body: str) -> str:
        token = self.settings.token if role == "admin" else self.settings.read_token
        if not token:
            return ""
        key = hashlib.sha256(b"pyworkflow-session\0" + token.encode()).digest()
        return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()

    # -- CSRF -------------------------------------------------------------------------------

    def csrf_token(self, principal: Principal) -> str:
        """The token a page of ``principal`` sends back with state-changing requests."""
        seed = principal.session.encode() if principal.session else self._open_secret
        return hmac.new(seed, b"pyworkflow-csrf", hashlib.sha256).hexdigest()

    def check_csrf(self, request: Request, principal: Principal, form_token: str | None) -> None:
        """Refuse a browser's state-changing request from another site or without the
        page's CSRF token (bearer requests pass: browsers never add that header)."""
        if request.method in _SAFE_METHODS or principal.via == "bearer":
            return
        origin = request.headers.get("origin")
        fetch_site = request.headers.get("sec-fetch-site")
        if origin is not None and origin.rstrip("/") != _own_origin(request):
            raise HTTPException(403, "cross-origin request refused")
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            raise HTTPException(403, "cross-site request refused")
        from_browser = principal.via == "cookie" or origin is not None or fetch_site is not None
        if not from_browser:
            return  # an open server's script client (curl): no ambient credential to abuse
        sent = request.headers.get(CSRF_HEADER) or form_token or ""
        if not _same(sent, self.csrf_token(principal)):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page")


def _same(given: str, expected: str) -> bool:
    """Constant-time equality of a client's string (``compare_digest`` of two ``str``
    raises ``TypeError`` when one holds a non-ASCII character: a 500 for a junk cookie)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def addressed_to_loopback(request: Request) -> bool:
    """Whether the request's ``Host`` names this machine (``localhost``, ``127.0.0.1``,
    ``[::1]``). An open server answers only those: a web page whose host name an
    attacker re-points at 127.0.0.1 (DNS rebinding) is same-origin with it otherwise."""
    host = request.headers.get("host", "")
    try:
        name = urlsplit(f"//{host}").hostname
    except ValueError:
        return False
    return name is not None and is_loopback(name)


def _own_origin(request: Request) -> str:
    host = request.headers.get("host", request.url.netloc)
    return f"{request.url.scheme}://{host}"


async def current_principal(request: Request) -> Principal:
    """Dependency: the caller, or 401."""
    auth: Authenticator = request.app.state.pyworkflow.auth
    principal = auth.identify(request)
    if principal is None and auth.settings.open:
        raise HTTPException(
            403,
            "this server has no token, so it answers requests addressed to localhost or "
            "127.0.0.1 only: set PYWORKFLOW_DASHBOARD_TOKEN to serve other host names",
        )
    if principal is None:
        raise HTTPException(401, "missing or invalid token", headers={"WWW-Authenticate": "Bearer"})
    return principal


async def require_read(request: Request) -> Principal:
    """Dependency of read routes: any valid credential."""
    return await current_principal(request)


async def require_admin(request: Request) -> Principal:
    """Dependency of state-changing routes: the admin role, CSRF-checked for browsers."""
    principal = await current_principal(request)
    if not principal.is_admin:
        raise HTTPException(403, "this action needs the admin token")
    request.app.state.pyworkflow.auth.check_csrf(request, principal, None)
    return principal
