"""Storage URLs: split them, read and check their query-string options, redact secrets.

Every backend reads its URL through this module, so all of them reject an unknown
option the same way (the message lists the supported ones), name the option whose value
is bad, and never echo a credential: :func:`redact_url` hides the password of the
user-info part and the value of every query parameter whose name says it carries a
secret (``password``, ``token``, ``secret``, ``aws_secret_access_key``, ...). A backend
whose URL holds credentials in other places passes its own :func:`redact_url` flavour
(``keep_user``, ``query_at``) to :func:`parse_url` as ``redact``::

    url = parse_url(raw, name="MySQL", schemes=("mysql",), options=("max_size",))
    max_size = url.count("max_size", 10)  # ConfigurationError naming max_size if bad
    raise StorageError(f"cannot reach {url.safe}")  # never shows the password
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import (
    SplitResult,
    parse_qsl,
    unquote,
    unquote_plus,
    urlencode,
    urlsplit,
)

from pyworkflow.core.exceptions import ConfigurationError

#: What a redacted secret reads as.
REDACTED = "***"
#: A query parameter whose lower-cased name contains one of these carries a secret.
SECRET_WORDS = (
    "password",
    "passwd",
    "secret",
    "token",
    "access_key",
    "api_key",
    "apikey",
    "private_key",
    "credential",
    "signature",
    "auth",
)
#: Short parameter names that carry a secret (too short to match inside other names).
SECRET_NAMES = frozenset({"pwd", "sig", "key"})

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_PAIR_SEPARATOR = re.compile(r"([&;])")
_HOST_END = re.compile(r"[/?#]")
_T = TypeVar("_T")


# -- redaction ------------------------------------------------------------------------------


def is_secret_option(name: str) -> bool:
    """Whether a query parameter called ``name`` carries a secret (its value is hidden)."""
    lowered = unquote_plus(name).lower()
    return lowered in SECRET_NAMES or any(word in lowered for word in SECRET_WORDS)


def redact_url(url: str, *, keep_user: bool = True, query_at: bool = True) -> str:
    """``url`` safe to show in a message or log: the password and secret query values
    read ``***``; everything else is kept as written.

    Works on the text and never raises, so a malformed URL is redacted too, including a
    password holding an unencoded ``@``, ``/``, ``?`` or ``#``, and a ``user:password``
    that lost its ``@`` (a host part whose "port" is not a number is hidden).

    Args:
        url: the URL (or any text).
        keep_user: show the user name; ``False`` hides the whole user-info, for URLs
            whose user name is itself a credential (an AWS access key id).
        query_at: whether a query value may hold an ``@``. ``False``, for URLs that take
            no such value, makes the last ``@`` after a host part end the user-info
            wherever it is (a password holding an unencoded ``?`` then ``=``).
    """
    match = _SCHEME.match(url)
    start = match.end() if match else 0
    rest = url[start:]
    at = _userinfo_end(rest, query_at)
    if at is None:
        rest = _redact_bare_host(rest)
    elif not keep_user:
        rest = REDACTED + rest[at:]
    else:
        user, colon, _ = rest[:at].partition(":")
        if colon:
            rest = f"{user}:{REDACTED}{rest[at:]}"
    return url[:start] + _redact_query(rest)


def _redact_bare_host(rest: str) -> str:
    """Hide a host part that is not ``host[:port]``: a ``user:password`` whose ``@`` is
    missing would show there."""
    host = _HOST_END.split(rest, maxsplit=1)[0]
    _, _, port = host.partition(":")
    if port and not host.startswith("[") and not (port.isascii() and port.isdigit()):
        return REDACTED + rest[len(host) :]
    return rest


def _userinfo_end(rest: str, query_at: bool = True) -> int | None:
    """Where the ``user:password`` part of ``rest`` ends (its ``@``), if it has one."""
    if not query_at and not _HOST_END.match(rest):  # the host part is not empty
        at = rest.rfind("@")
        return at if at >= 0 else None
    stop = len(rest)
    for delimiter in "?#":
        found = rest.find(delimiter)
        if found >= 0:
            stop = min(stop, found)
    at = rest.rfind("@", 0, stop)
    if at >= 0:
        return at
    # An '@' after a '?' or '#' that no query pair precedes ends a password holding
    # that character unencoded ("u:pa?ss@host"); an '@' in a query value does not.
    at = rest.find("@", stop)
    if at >= 0 and not any(c in rest[stop + 1 : at] for c in "=&;"):
        return at
    return None


def _redact_query(text: str) -> str:
    head, question, query = text.partition("?")
    query, hash_, fragment = query.partition("#")
    if not question:
        head, hash_, fragment = text.partition("#")
    return head + question + _redact_pairs(query) + hash_ + _redact_pairs(fragment)


def _redact_pairs(query: str) -> str:
    parts = _PAIR_SEPARATOR.split(query)
    for i in range(0, len(parts), 2):
        name, equals, _ = parts[i].partition("=")
        if equals and is_secret_option(name):
            parts[i] = f"{name}={REDACTED}"
    return "".join(parts)


# -- option values --------------------------------------------------------------------------


def _bad_value(name: str, value: str, where: str, expected: str, hide: bool) -> ConfigurationError:
    shown = REDACTED if hide or is_secret_option(name) else value
    return ConfigurationError(f"option {name}={shown!r}{where} must be {expected}", option=name)


def parse_flag(name: str, value: str, where: str = "", *, hide: bool = False) -> bool:
    """A boolean option (``true/false``, ``1/0``, ``yes/no``, ``on/off``).

    Args:
        name: the option, named in the error.
        value: its text.
        where: appended to the option in the error (e.g. `` in storage URL '...'``).
        hide: show ``***`` for the value in the error (a secret option's always is).

    Raises:
        ConfigurationError: ``value`` is none of those words.
    """
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _bad_value(name, value, where, "true or false", hide)


def parse_count(name: str, value: str, where: str = "", *, hide: bool = False) -> int:
    """A non-negative integer option (see :func:`parse_flag` for the arguments).

    Raises:
        ConfigurationError: ``value`` is not made of decimal digits.
    """
    if not (value.isascii() and value.isdigit()):
        raise _bad_value(name, value, where, "a non-negative integer", hide)
    return int(value)


def parse_seconds(name: str, value: str, where: str = "", *, hide: bool = False) -> float:
    """A duration option in seconds (see :func:`parse_flag` for the arguments).

    Raises:
        ConfigurationError: ``value`` is not a number.
    """
    try:
        return float(value)
    except ValueError:
        raise _bad_value(name, value, where, "a number of seconds", hide) from None


# -- parsing --------------------------------------------------------------------------------


def split_url(
    url: str,
    *,
    name: str = "storage",
    schemes: Collection[str] | None = None,
    server: bool = True,
    redact: Callable[[str], str] = redact_url,
) -> SplitResult:
    """``urlsplit(url)`` after checking its scheme (when ``schemes`` is given, any case)
    and, for a ``server`` URL, that its host and port parse (so ``.port`` cannot fail
    later; a local path such as ``file://dir:x/y`` has no port to check).

    Raises:
        ConfigurationError: a malformed URL, host or port, or another scheme (``name``
            names the kind of URL expected; the message shows the URL through
            ``redact``).
    """
    safe = redact(url)
    try:
        parts = urlsplit(url)
        if server:
            parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        # The parser's own message may quote part of the password: never show it.
        raise ConfigurationError(
            f"invalid {name} URL {safe!r}: its host or port is malformed "
            "(percent-encode special characters of the user name and password)"
        ) from None
    if schemes is not None and parts.scheme.lower() not in schemes:
        expected = " or ".join(f"{s}://" for s in schemes)
        raise ConfigurationError(
            f"not a {name} URL: {safe!r}; expected {expected} (unsupported scheme)"
        )
    return parts


@dataclass(frozen=True, slots=True)
class StorageURL:
    """A storage URL split into its parts, with its query options read and checked.

    Attributes:
        parts: the URL split (its port is known to parse).
        options: the options the caller reads itself (the last value of a repeated one).
        rest: the other options, in order: what the caller hands to its driver.
        safe: the URL redacted (:func:`redact_url`): what messages show.
    """

    parts: SplitResult
    options: dict[str, str]
    rest: tuple[tuple[str, str], ...]
    safe: str

    @property
    def where(self) -> str:
        """Where an option came from, for error messages."""
        return f" in storage URL {self.safe!r}"

    def flag(self, name: str, default: bool) -> bool:
        """Option ``name`` as a boolean (:func:`parse_flag`), or ``default`` if absent."""
        return self._read(parse_flag, name, default)

    def count(self, name: str, default: int) -> int:
        """Option ``name`` as a non-negative integer, or ``default`` if absent."""
        return self._read(parse_count, name, default)

    def seconds(self, name: str, default: float) -> float:
        """Option ``name`` as a number of seconds, or ``default`` if absent."""
        return self._read(parse_seconds, name, default)

    def _read(self, parse: Callable[..., _T], name: str, default: _T) -> _T:
        value = self.options.get(name)
        if value is None:
            return default
        # A value the redacted URL does not show (the tail of a password holding an
        # unencoded '?') stays hidden in the error too.
        hidden = (name, value) not in _query_pairs(self.safe)
        return parse(name, value, self.where, hide=hidden)

    def driver_url(self, scheme: str | None = None) -> str:
        """The URL without the caller's options (and fragment), optionally re-schemed.

        It keeps the ``//`` of an empty host (``unix:///run/redis.sock``), which
        ``urlunsplit`` drops for schemes it does not know.
        """
        query = urlencode(self.rest)
        return (
            f"{scheme or self.parts.scheme}://{self.parts.netloc}{self.parts.path}"
            f"{'?' if query else ''}{query}"
        )

    @property
    def username(self) -> str | None:
        """The user name, percent-decoded."""
        name = self.parts.username
        return None if name is None else unquote(name)

    @property
    def password(self) -> str | None:
        """The password, percent-decoded (never put it in a message)."""
        password = self.parts.password
        return None if password is None else unquote(password)


def parse_url(
    url: str,
    *,
    name: str = "storage",
    schemes: Collection[str] | None = None,
    options: Collection[str] = (),
    passthrough: Collection[str] | None = (),
    server: bool = True,
    redact: Callable[[str], str] = redact_url,
) -> StorageURL:
    """Split ``url`` (:func:`split_url`) and sort its query options.

    Args:
        url: the storage URL.
        name: the kind of URL, for errors (``"PostgreSQL"``).
        schemes: accepted schemes (lower case), or ``None`` for any.
        options: option names the caller reads itself (:attr:`StorageURL.options`).
        passthrough: other accepted names, kept in :attr:`StorageURL.rest` for the
            driver; ``None`` accepts any name.
        server: the URL names a server (see :func:`split_url`), not a local path.
        redact: what makes the URL safe for messages (:func:`redact_url`, or a backend's
            flavour of it); :attr:`StorageURL.safe` is its result.

    Raises:
        ConfigurationError: a malformed URL, another scheme, or an option outside
            ``options`` and ``passthrough`` (the message lists the supported ones).
    """
    parts = split_url(url, name=name, schemes=schemes, server=server, redact=redact)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    safe = redact(url)
    if passthrough is not None:
        allowed = {*options, *passthrough}
        unknown = {key for key, _ in pairs if key not in allowed}
        if unknown:
            raise _unsupported(unknown, allowed, safe)
    return StorageURL(
        parts=parts,
        options={key: value for key, value in pairs if key in options},
        rest=tuple((key, value) for key, value in pairs if key not in options),
        safe=safe,
    )


def _unsupported(unknown: set[str], allowed: set[str], safe: str) -> ConfigurationError:
    # Name only the options the redacted URL shows: a name it hides may be a piece of
    # a password holding an unencoded '?'.
    shown = sorted(unknown & {key for key, _ in _query_pairs(safe)})
    names = ", ".join(shown)
    return ConfigurationError(
        f"unsupported option(s) {names}{' ' if names else ''}in storage URL {safe!r}; "
        f"supported: {', '.join(sorted(allowed)) or 'none'}"
    )


def _query_pairs(text: str) -> list[tuple[str, str]]:
    """The query options of a URL's text (a redacted one need not parse as a URL)."""
    query = text.partition("?")[2].partition("#")[0]
    return parse_qsl(query, keep_blank_values=True)


__all__ = [
    "REDACTED",
    "SECRET_NAMES",
    "SECRET_WORDS",
    "StorageURL",
    "is_secret_option",
    "parse_count",
    "parse_flag",
    "parse_seconds",
    "parse_url",
    "redact_url",
    "split_url",
]
