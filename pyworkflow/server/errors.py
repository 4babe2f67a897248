"""The library's errors as HTTP answers: one JSON shape, ``{"detail": "..."}``, with the
status a client can act on. Nothing internal (tracebacks, storage URLs) is sent."""

from __future__ import annotations

import traceback

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from pyworkflow.core.exceptions import (
    ConfigurationError,
    HookAlreadyReceivedError,
    HookExpiredError,
    HookPayloadError,
    NotFoundError,
    PayloadTooLargeError,
    RunEndedError,
    SerializationError,
    StorageError,
    StorageUnavailableError,
)
from pyworkflow.utils.log import logger

#: Error class -> HTTP status, most specific first.
STATUS: tuple[tuple[type[Exception], int], ...] = (
    (NotFoundError, 404),
    (HookAlreadyReceivedError, 409),
    (HookExpiredError, 409),
    (RunEndedError, 409),
    (PayloadTooLargeError, 413),
    (HookPayloadError, 422),
    (SerializationError, 422),  # a value JSON cannot hold (after PayloadTooLargeError)
    (ConfigurationError, 409),
    (StorageUnavailableError, 503),
)


def status_of(exc: Exception) -> int | None:
    """The HTTP status for ``exc``, or ``None`` when it is not a known client error."""
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return None


def install_error_handlers(app: FastAPI) -> None:
    """Map the library's errors to answers on ``app``."""

    async def known(_request: Request, exc: Exception) -> JSONResponse:
        if refused := _unstorable(exc):
            return refused
        status = status_of(exc) or 500
        if status == 503:
            # The message names the server (user@host/db): for the log, not the client.
            logger.warning("dashboard: storage unavailable: {}", _first_line(exc))
            return JSONResponse(
                {"detail": "storage is unavailable; try again shortly"}, status_code=503
            )
        body: dict[str, object] = {"detail": _first_line(exc)}
        if isinstance(exc, HookPayloadError):
            body["errors"] = list(exc.errors)
        return JSONResponse(body, status_code=status)

    async def invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ValidationError)
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": "payload is invalid", "errors": errors}, status_code=422)

    async def bad_request(_request: Request, exc: Exception) -> JSONResponse:
        # FastAPI's own shape is a bare list under "detail"; keep one shape everywhere.
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"]) or "request"
        return JSONResponse(
            {"detail": f"invalid {where}: {first['msg']}", "errors": errors}, status_code=422
        )

    async def bad_value(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": _first_line(exc)}, status_code=400)

    async def storage_failed(request: Request, exc: Exception) -> JSONResponse:
        # Its own handler, not the catch-all's: Starlette re-raises into the server after
        # the catch-all answers, and uvicorn then drops the keep-alive connection.
        return _unstorable(exc) or await unexpected(request, exc)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A plain traceback: loguru's own (``opt(exception=...)``) shows the values of
        # locals where the handler has ``diagnose`` on (its default), and the request's
        # path and headers hold hook tokens and API tokens.
        trace = "".join(traceback.format_exception(exc)).rstrip()
        logger.error("dashboard: {} {} failed\n{}", request.method, _route(request), trace)
        return JSONResponse({"detail": "internal error (see the server's log)"}, status_code=500)

    for kind, _status in STATUS:
        app.add_exception_handler(kind, known)
    app.add_exception_handler(ValidationError, invalid)
    app.add_exception_handler(RequestValidationError, bad_request)
    app.add_exception_handler(ValueError, bad_value)
    app.add_exception_handler(StorageError, storage_failed)
    app.add_exception_handler(Exception, unexpected)


#: SQLSTATEs of a value the database refuses: a NUL character (PostgreSQL's text cannot
#: hold one), another character outside its encoding, or a value longer than its column.
_REFUSED_VALUE = {
    "22021": "the request holds a NUL character (\\u0000), which the database refuses",
    "22P05": "the request holds a character the database refuses",
    "22001": "a value in the request is longer than the database accepts",
}


def _unstorable(exc: BaseException) -> JSONResponse | None:
    """400 when the database refused a value the client sent (found by its error code
    anywhere in the exception's causes: backends wrap driver errors)."""
    seen: BaseException | None = exc
    for _ in range(8):  # causes chain a few levels deep at most
        if seen is None:
            return None
        reason = _REFUSED_VALUE.get(str(getattr(seen, "sqlstate", "")))
        if reason:
            return JSONResponse({"detail": reason}, status_code=400)
        seen = seen.__cause__ or seen.__context__
    return None


def _route(request: Request) -> str:
    """The path template that matched (``/hooks/{token}``): the path itself may hold a
    hook token, which must not reach the log."""
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    return template if isinstance(template, str) else "(no route)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
