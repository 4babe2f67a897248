"""Structured logging with workflow context."""

from pyworkflow.observability.logging import configure_logging, get_logger

__all__ = ["configure_logging", "get_logger"]
