"""Serving an app with uvicorn (what ``pyworkflow dashboard`` runs)."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI


def serve(app: FastAPI, host: str, port: int) -> None:
    """Serve ``app`` until interrupted. uvicorn's access log is off: its lines would hold
    request paths, and ``/hooks/{token}`` paths carry secrets."""
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")
