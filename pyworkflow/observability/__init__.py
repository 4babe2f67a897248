"""Structured logging with workflow context."""

from pyworkflow.observability.logging import configure_logging, forward_to_logging, get_logger
from pyworkflow.utils.log import set_log_level

__all__ = ["configure_logging", "forward_to_logging", "get_logger", "set_log_level"]
