"""The dashboard mounted into an application of your own, under ``/workflows``::

    PYWORKFLOW_DASHBOARD_TOKEN=... uvicorn app:app --port 8000

then open http://127.0.0.1:8000/workflows/ (the API is at /workflows/api/...).
"""

from __future__ import annotations

from fastapi import FastAPI

from pyworkflow.server import create_app

app = FastAPI(title="My service")


@app.get("/")
async def home() -> dict[str, str]:
    return {"workflows": "/workflows/"}


# modules: this process imports them, so it can run (and start again) their workflows.
app.mount("/workflows", create_app(modules=["flows"]))
