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
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import (
    SplitResult,
    parse_qsl,
    unquote_plus,
    urlencode,
    urlsplit,
    urlunsplit,
)

from redis.asyncio.connection import parse_url as _redis_parse_url

from pyworkflow.core.exceptions import ConfigurationError

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

    Also masks a ``password`` query option, and everything up to the last ``@`` when an
    ``@`` comes after the host: a password holding an unencoded ``/``, ``?`` or ``#``
    ends the host part early, and its tail would show.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable redis URL>"
    if _misplaced_at(parts):
        return f"{parts.scheme}://***@{url.rpartition('@')[2]}"
    redacted = parts
    if parts.password is not None:
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        redacted = redacted._replace(netloc=f"{user}:***@{hostinfo}")
    query = "&".join(map(_mask_password_option, parts.query.split("&")))
    if query != parts.query:
        redacted = redacted._replace(query=query)
    # Rebuilt only when something was masked: urlunsplit may normalise the text.
    return url if redacted is parts else urlunsplit(redacted)


def _mask_password_option(pair: str) -> str:
    # Not an option the backend takes, but its value must not show in the error.
    name, eq, _ = pair.partition("=")
    return f"{name}=***" if eq and unquote_plus(name).strip().lower() == "password" else pair


def _misplaced_at(parts: SplitResult) -> bool:
    """Whether an ``@`` follows the host part (a unix socket path may hold one)."""
    if parts.scheme.lower() == "unix" and not parts.netloc:
        return False
    return "@" in parts.path + parts.query + parts.fragment


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
    clean, url_prefix = _split_prefix(url)
    if url_prefix is not None:
        if prefix != DEFAULT_PREFIX and prefix != url_prefix:
            raise ConfigurationError(
                f"Redis key prefix given twice: prefix={prefix!r} and "
                f"?prefix={url_prefix} in the URL"
            )
        prefix = url_prefix
    names = [value for name, value in parse_qsl(urlsplit(clean).query) if name == "client_name"]
    return RedisURL(clean, _check_prefix(prefix), names[-1] if names else None)


def _split_prefix(url: str) -> tuple[str, str | None]:
    """``(url without the prefix option, prefix or None)``; validates scheme and options."""
    safe = redact_url(url)
    parts = _split(url, safe)
    db = parts.path.strip("/")
    if parts.scheme.lower() != "unix" and db and not db.isdigit():
        # redis-py would silently fall back to db 0: the wrong data, quietly.
        raise ConfigurationError(
            f"invalid Redis URL {safe!r}: the path must be a database number (/0, /1, ...)"
        )
    options = parse_qsl(parts.query, keep_blank_values=True)
    unknown = {name for name, _ in options if name != "prefix" and name not in URL_OPTIONS}
    if unknown:
        raise ConfigurationError(
            f"unsupported option(s) {', '.join(sorted(unknown))} in Redis URL {safe!r}; "
            f"supported: {', '.join(sorted(URL_OPTIONS | {'prefix'}))}"
        )
    prefixes = [value for name, value in options if name == "prefix"]
    rest = [(name, value) for name, value in options if name != "prefix"]
    clean = urlunsplit(parts._replace(query=urlencode(rest)))
    try:
        # redis-py's own parser: casts every option, checks the db number.
        _redis_parse_url(clean)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"invalid Redis URL {safe!r}: {exc}") from None
    return clean, (prefixes[-1] if prefixes else None)


def _split(url: str, safe: str) -> SplitResult:
    """``url``'s parts, once its scheme, host and port are known to be well formed."""
    invalid = f"invalid Redis URL {safe!r}"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError(f"{invalid}: {exc}") from None
    if _misplaced_at(parts):
        # The host, port and db redis-py would read are then pieces of the password.
        raise ConfigurationError(
            f"{invalid}: '@' after the host; percent-encode '/', '?', '#' and '@' in the "
            "user name, password and options (%2F, %3F, %23, %40)"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ConfigurationError(f"{invalid}: {exc}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise ConfigurationError(
            f"{invalid}: scheme must be one of {', '.join(s + '://' for s in SCHEMES)}"
        )
    return parts


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not prefix:
        raise ConfigurationError("Redis key prefix must be a non-empty string")
    if "{" in prefix or "}" in prefix:
        raise ConfigurationError(
            f"Redis key prefix {prefix!r} may not contain braces (it becomes the hash tag "
            "'{prefix}')"
        )
    return prefix
