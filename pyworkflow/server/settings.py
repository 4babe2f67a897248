"""What the HTTP server needs to know besides storage: its tokens and limits.

Tokens come from ``configure()``/``PYWORKFLOW_DASHBOARD_TOKEN`` (admin: every route) and
``PYWORKFLOW_DASHBOARD_READ_TOKEN`` (read-only: ``GET`` routes and ``/metrics``), or are
passed to :func:`pyworkflow.server.create_app` directly. With no token at all the server
is open, which :func:`check_bind` allows on a loopback address only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from pyworkflow.core.config import get_config
from pyworkflow.core.exceptions import ConfigurationError

#: The largest webhook or API request body accepted (bytes); larger ones get 413.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: The shortest token accepted: a guessable API token is no protection.
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class ServerSettings:
    """Options of one app; :meth:`from_config` fills unset tokens from the configuration."""

    token: str | None = field(default=None, repr=False)
    read_token: str | None = field(default=None, repr=False)
    public_metrics: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # How often live views (server-sent events) look at storage for changes, seconds.
    live_poll_interval: float = 1.0
    # How long a browser login lasts, seconds.
    session_seconds: int = 12 * 3600

    def __post_init__(self) -> None:
        for name in ("token", "read_token"):
            value = getattr(self, name)
            if value is not None and len(value) < MIN_TOKEN_LENGTH:
                raise ConfigurationError(
                    f"dashboard {name.replace('_', ' ')} must be at least {MIN_TOKEN_LENGTH} "
                    "characters long"
                )
        if self.token is not None and self.token == self.read_token:
            raise ConfigurationError("the dashboard's admin and read-only tokens must differ")
        if self.max_body_bytes < 1:
            raise ConfigurationError("max_body_bytes must be a positive number of bytes")

    @property
    def open(self) -> bool:
        """No token configured: every request is an admin's (loopback only)."""
        return self.token is None and self.read_token is None

    @classmethod
    def from_config(
        cls,
        *,
        token: str | None = None,
        read_token: str | None = None,
        public_metrics: bool | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        live_poll_interval: float = 1.0,
    ) -> ServerSettings:
        """Arguments given win; the rest comes from :func:`pyworkflow.get_config`."""
        config = get_config()
        return cls(
            token=token if token is not None else config.dashboard_token,
            read_token=read_token if read_token is not None else config.dashboard_read_token,
            public_metrics=(
                public_metrics if public_metrics is not None else config.dashboard_public_metrics
            ),
            max_body_bytes=max_body_bytes,
            live_poll_interval=live_poll_interval,
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, settings: ServerSettings) -> None:
    """Refuse to serve an open (tokenless) server on an address others can reach.

    Raises:
        ConfigurationError: ``host`` is not a loopback address and no token is set.
    """
    if settings.open and not is_loopback(host):
        raise ConfigurationError(
            f"refusing to serve the dashboard on {host} without a token: set "
            "PYWORKFLOW_DASHBOARD_TOKEN (admin) and optionally PYWORKFLOW_DASHBOARD_READ_TOKEN "
            "(read-only), or bind to 127.0.0.1"
        )
