"""The HTTP API, webhook receiver and web dashboard (extra ``pyworkflow-engine[server]``).

``create_app()`` builds the FastAPI application over the configured storage; serve it with
``pyworkflow dashboard`` or mount it into an ASGI app of your own::

    from fastapi import FastAPI
    from pyworkflow.server import create_app

    app = FastAPI()
    app.mount("/workflows", create_app())

See docs/dashboard.md.
"""

from __future__ import annotations

from pyworkflow.core.exceptions import ConfigurationError

try:
    import fastapi  # noqa: F401 - probe for the extra before importing what needs it
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by the base-install test
    raise ConfigurationError(
        'the HTTP API and dashboard need the server extra: pip install "pyworkflow-engine[server]"'
    ) from exc

from pyworkflow.server.app import ServerState, create_app
from pyworkflow.server.settings import ServerSettings, check_bind

__all__ = ["ServerSettings", "ServerState", "check_bind", "create_app"]
