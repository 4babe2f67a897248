"""``/healthz`` (no auth), ``/api/workflows`` and ``/api/workers``."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

router = APIRouter()


class Health(BaseModel):
    status: str


@router.get("/healthz", response_model=Health, tags=["system"])
async def healthz() -> Health:
    """Liveness of the server process (no token needed, touches no storage)."""
    return Health(status="ok")
