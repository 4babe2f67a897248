"""The web dashboard: server-rendered pages over the same storage as the JSON API.

Pages: the runs list (``/``), a run (``/runs/{run_id}``), hooks (``/hooks``, admins),
schedules, workflows and workers, plus ``/login`` and ``/logout``. Static files (HTMX,
CSS, one small script) are served from ``/static``. See docs/dashboard.md.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from pyworkflow.server.ui import hooks, login, overview, runs, schedules
from pyworkflow.server.ui.render import STATIC, STATIC_ROUTE


def install(app: FastAPI) -> None:
    """Add the dashboard's pages and static files to ``app``."""
    for module in (login, runs, hooks, schedules, overview):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name=STATIC_ROUTE)
