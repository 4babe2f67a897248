"""Placeholder: filled in by the live work of issue 16."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api")
