"""Redis URLs: parsing, validation and redaction, the only module of the backend that
reads a URL (see :meth:`RedisStorageBackend.from_url`)::

    redis://[[user]:password@]host[:port][/db][?prefix=NAME&option=value...]
    rediss://...                        (TLS)
    unix:///path/to/redis.sock?db=0&prefix=NAME

``prefix`` (default ``pyworkflow``) namespaces every key, so several applications or
tests can share one database. The other query options are redis-py connection options
(``socket_timeout``, ``socket_connect_timeout``, ``max_connections``,
``health_check_interval``, ``timeout``, ``client_name``, ``ssl_cert_reqs``, ...).
``storage_from_url`` routes ``redis://``; build ``rediss://`` and ``unix://`` backends
with :meth:`RedisStorageBackend.from_url` (or the constructor). Passwords are never
echoed: error messages and ``repr`` show the URL with the password replaced by ``***``.

What every storage URL shares (splitting, option checks, redaction) is
:mod:`pyworkflow.storage.urls`; this module adds the Redis rules: the key prefix, the
database number, unix sockets, no ``@`` after the host, and redis-py's own parse.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio.connection import parse_url as _redis_parse_url

from pyworkflow.core.exceptions import ConfigurationError
from pyworkflow.storage import urls

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "pyworkflow"
SCHEMES = ("redis", "rediss", "unix")
# redis-py connection options a URL may carry besides ``prefix``.
URL_OPTIONS = frozenset(
    {
        "db",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "max_connections",
        "health_check_interval",
        "timeout",
        "client_name",
        "protocol",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
    }
)


@dataclass(frozen=True, slots=True)
class RedisURL:
    """A validated backend URL.

    Attributes:
        url: what redis-py connects with: the URL without ``prefix`` (it may hold a
            password: never show it, show :attr:`safe`).
        prefix: the key prefix (from the URL, else the ``prefix`` argument).
        client_name: the URL's ``client_name`` option, if any.
    """

    url: str
    prefix: str
    client_name: str | None

    @property
    def safe(self) -> str:
        """:attr:`url` with its password replaced by ``***``."""
        return redact_url(self.url)


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: safe to log.

    :func:`pyworkflow.storage.urls.redact_url`, for URLs that take no ``@`` in an
    option: the last ``@`` after the host ends the user-info wherever it is, so a
    password holding an unencoded ``/``, ``?`` or ``#`` is hidden whole. Secret query
    options (``password``, ...) are masked too.
    """
    return urls.redact_url(url, query_at=False)


def parse_url(url: str, prefix: str = DEFAULT_PREFIX) -> RedisURL:
    """Validate ``url`` and settle the key prefix.

    Args:
        url: a ``redis://``, ``rediss://`` or ``unix://`` URL, maybe with ``?prefix=``.
        prefix: the prefix asked for besides the URL; a URL ``prefix`` wins over the
            default, and must agree with any other value.

    Raises:
        ConfigurationError: wrong scheme, malformed port or db, unknown option, a prefix
            given twice, or an invalid prefix (the message never contains the password).
    """
    parsed = _parse(url)
    url_prefix = parsed.options.get("prefix")
    if url_prefix is not None:
        if prefix != DEFAULT_PREFIX and prefix != url_prefix:
            raise ConfigurationError(
                f"Redis key prefix given twice: prefix={prefix!r} and "
                f"?prefix={url_prefix} in the URL"
            )
        prefix = url_prefix
    names = [value for name, value in parsed.rest if name == "client_name"]
    return RedisURL(parsed.driver_url(), _check_prefix(prefix), names[-1] if names else None)


def _parse(url: str) -> urls.StorageURL:
    """``url`` split, its options checked, and accepted by redis-py."""
    if _misplaced_at(url):
        # The host, port and db redis-py would read are then pieces of the password.
        raise ConfigurationError(
            f"invalid Redis URL {redact_url(url)!r}: '@' after the host; percent-encode "
            "'/', '?', '#' and '@' in the user name, password and options (%2F, %3F, %23, "
            "%40)"
        )
    parsed = urls.parse_url(
        url,
        name="Redis",
        schemes=SCHEMES,
        options=("prefix",),
        passthrough=URL_OPTIONS,
        redact=redact_url,
    )
    db = parsed.parts.path.strip("/")
    if parsed.parts.scheme.lower() != "unix" and db and not db.isdigit():
        # redis-py would silently fall back to db 0: the wrong data, quietly.
        raise ConfigurationError(
            f"invalid Redis URL {parsed.safe!r}: the path must be a database number (/0, /1, ...)"
        )
    try:
        # redis-py's own parser: casts every option, checks the db number.
        _redis_parse_url(parsed.driver_url())
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"invalid Redis URL {parsed.safe!r}: {exc}") from None
    return parsed


def _misplaced_at(url: str) -> bool:
    """Whether an ``@`` follows the host part (an empty one, as in a unix socket URL,
    excepted: its path may hold one)."""
    rest = url.partition("://")[2]
    host_end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    return host_end > 0 and "@" in rest[host_end:]


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not prefix:
        raise ConfigurationError("Redis key prefix must be a non-empty string")
    if "{" in prefix or "}" in prefix:
        raise ConfigurationError(
            f"Redis key prefix {prefix!r} may not contain braces (it becomes the hash tag "
            "'{prefix}')"
        )
    return prefix
