"""The FastAPI application: :func:`create_app` wires storage, auth and the routers.

Everything goes through the public and storage APIs, so the app serves any configured
backend, and it can be mounted into a user's own ASGI app
(``app.mount("/workflows", create_app())``): it needs no lifespan events (storage connects
on first use) and builds every link relative to where it is mounted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from pyworkflow.core.config import configure, discover_workflows, get_storage
from pyworkflow.engine.observing import set_up_default_observers
from pyworkflow.server.auth import Authenticator, require_read
from pyworkflow.server.errors import install_error_handlers
from pyworkflow.server.limits import BodyLimit
from pyworkflow.server.settings import ServerSettings
from pyworkflow.storage.base import StorageBackend


@dataclass
class ServerState:
    """What every route reaches through ``request.app.state.pyworkflow``."""

    storage: StorageBackend
    settings: ServerSettings
    auth: Authenticator
    # Workflow modules this process imported (``--module``): it can run their code.
    modules: list[str] = field(default_factory=list)
    connected: bool = False

    async def backend(self) -> StorageBackend:
        """The storage, connected on first use (a mounted app sees no startup event)."""
        if not self.connected:
            await self.storage.connect()
            self.connected = True
        return self.storage


def create_app(
    storage: StorageBackend | str | None = None,
    *,
    settings: ServerSettings | None = None,
    modules: list[str] | None = None,
    ui: bool = True,
) -> FastAPI:
    """The HTTP API (``/api``), webhook receiver (``/hooks/{token}``), ``/healthz`` and,
    with ``ui``, the web dashboard.

    Args:
        storage: a backend or storage URL; default: the configured storage.
        settings: tokens and limits; default: :meth:`ServerSettings.from_config`.
        modules: workflow modules to import, so this process can start their runs
            (otherwise it starts runs only under the Celery runtime).
        ui: serve the HTML dashboard too (``False``: API and webhooks only).
    """
    # The process's configuration, not just this app's: runs started or resumed here
    # (local runtime) must use the storage the app shows.
    if storage is not None:
        configure(storage=storage)
    if modules:
        configure(modules=list(modules))
        discover_workflows()
    backend = get_storage()
    settings = settings or ServerSettings.from_config()
    set_up_default_observers()  # /metrics lists pyworkflow's metrics from the first scrape
    app = FastAPI(
        title="PyWorkflow",
        summary="Durable workflow runs: inspect, control, deliver hooks.",
        version=_version(),
        # Served by _include_docs behind the read token, like every other route.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.pyworkflow = ServerState(
        storage=backend,
        settings=settings,
        auth=Authenticator(settings),
        modules=list(modules or []),
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    _include_routers(app, ui=ui)
    _include_docs(app)
    return app


def _include_docs(app: FastAPI) -> None:
    """``/api/openapi.json`` and the interactive ``/api/docs``, for read-token holders."""

    @app.get("/api/openapi.json", include_in_schema=False, dependencies=[Depends(require_read)])
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/api/docs", include_in_schema=False, dependencies=[Depends(require_read)])
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(openapi_url=f"{root}/api/openapi.json", title="PyWorkflow API")


def _include_routers(app: FastAPI, *, ui: bool) -> None:
    from pyworkflow.server import webhooks
    from pyworkflow.server.routes import hooks, live, metrics, runs, schedules, system

    # live before runs: /api/runs/stream must not be taken for /api/runs/{run_id}.
    for module in (system, live, runs, hooks, schedules, webhooks, metrics):
        app.include_router(module.router)
    if ui:
        from pyworkflow.server import ui as pages

        pages.install(app)


def _version() -> str:
    from pyworkflow import __version__

    return __version__


def state(request: Request) -> ServerState:
    """The :class:`ServerState` of the app serving ``request``."""
    found: ServerState = request.app.state.pyworkflow
    return found


async def storage_of(request: Request) -> StorageBackend:
    """Dependency: the app's storage, connected."""
    return await state(request).backend()
