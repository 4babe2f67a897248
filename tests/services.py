"""Local servers the tests use, and the rule for when one is missing.

Under CI (``CI`` set) a missing server fails the test; on a laptop it skips with the
command that starts it. Addresses come from environment variables with the standard
local defaults, so a developer can point the tests at their own servers.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

SERVICES = {
    "postgres": (
        "PYWORKFLOW_TEST_POSTGRES_URL",
        "postgresql://postgres@127.0.0.1:5432/test",
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    ),
    "mysql": (
        "PYWORKFLOW_TEST_MYSQL_URL",
        "mysql://root@127.0.0.1:3306/test",
        "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
    ),
    "redis": (
        "PYWORKFLOW_TEST_REDIS_URL",
        "redis://127.0.0.1:6379/0",
        'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
    ),
    "rabbitmq": (
        "PYWORKFLOW_TEST_RABBITMQ_URL",
        "amqp://guest:guest@127.0.0.1:5672//",
        "rabbitmq-server -detached",
    ),
}


def service_url(name: str) -> str:
    """The URL of service ``name`` (environment override or the local default)."""
    env, default, _ = SERVICES[name]
    return os.environ.get(env) or default


def require_service(name: str) -> str:
    """Return the service's URL if its port answers; else fail (CI) or skip (laptop)."""
    url = service_url(name)
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 0
    try:
        with socket.create_connection((host, port), timeout=2):
            return url
    except OSError as exc:
        _, _, start = SERVICES[name]
        message = f"{name} is not reachable at {host}:{port} ({exc}); start it with: {start}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
