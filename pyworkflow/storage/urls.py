"""Storage URLs: split them, read and check their query-string options, redact secrets.

Every backend reads its URL through this module, so all of them reject an unknown
option the same way (the message lists the supported ones), name the option whose value
is bad, and never echo a credential: :func:`redact_url` hides the password of the
user-info part and the value of every query parameter whose name says it carries a
secret (``password``, ``token``, ``secret``, ``aws_secret_access_key``, ...)::

    url = parse_url(raw, name="MySQL", schemes=("mysql",), options=("max_size",))
    max_size = url.count("max_size", 10)  # ConfigurationError naming max_size if bad
    raise StorageError(f"cannot reach {url.safe}")  # never shows the password
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import (
    SplitResult,
    parse_qsl,
    unquote,
    unquote_plus,
    urlencode,
    urlsplit,
    urlunsplit,
)

from pyworkflow.core.exceptions import ConfigurationError

#: What a redacted secret reads as.
REDACTED = "***"
#: A query parameter whose lower-cased name contains one of these carries a secret.
SECRET_WORDS = ("password", "passwd", "secret", "token", "access_key", "api_key", "apikey")
#: Short parameter names that carry a secret (too short to match inside other names).
SECRET_NAMES = frozenset({"pwd", "sig", "signature", "credential", "credentials"})

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_PAIR_SEPARATOR = re.compile(r"([&;])")


# -- redaction ------------------------------------------------------------------------------


def is_secret_option(name: str) -> bool:
    """Whether a query parameter called ``name`` carries a secret (its value is hidden)."""
    lowered = unquote_plus(name).lower()
    return lowered in SECRET_NAMES or any(word in lowered for word in SECRET_WORDS)


def redact_url(url: str) -> str:
    """``url`` safe to show in a message or log: the password and secret query values
    read ``***``; everything else is kept as written.

    Works on the text and never raises, so a malformed URL is redacted too, including a
    password holding an unencoded ``@``, ``/``, ``?`` or ``#``.
    """
    match = _SCHEME.match(url)
    start = match.end() if match else 0
    rest = url[start:]
    at = _userinfo_end(rest)
    if at is not None:
        user, colon, _ = rest[:at].partition(":")
        if colon:
            rest = f"{user}:{REDACTED}{rest[at:]}"
    return url[:start] + _redact_query(rest)


def _userinfo_end(rest: str) -> int | None:
    """Where the ``user:password`` part of ``rest`` ends (its ``@``), if it has one."""
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


def _bad_value(name: str, value: str, where: str, expected: str) -> ConfigurationError:
    shown = REDACTED if is_secret_option(name) else value
    return ConfigurationError(f"option {name}={shown!r}{where} must be {expected}", option=name)


def parse_flag(name: str, value: str, where: str = "") -> bool:
    """A boolean option (``true/false``, ``1/0``, ``yes/no``, ``on/off``).

    Args:
        name: the option, named in the error.
        value: its text.
        where: appended to the option in the error (e.g. `` in storage URL '...'``).

    Raises:
        ConfigurationError: ``value`` is none of those words.
    """
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _bad_value(name, value, where, "true or false")


def parse_count(name: str, value: str, where: str = "") -> int:
    """A non-negative integer option (see :func:`parse_flag` for the arguments).

    Raises:
        ConfigurationError: ``value`` is not made of decimal digits.
    """
    if not (value.isascii() and value.isdigit()):
        raise _bad_value(name, value, where, "a non-negative integer")
    return int(value)


def parse_seconds(name: str, value: str, where: str = "") -> float:
    """A duration option in seconds (see :func:`parse_flag` for the arguments).

    Raises:
        ConfigurationError: ``value`` is not a number.
    """
    try:
        return float(value)
    except ValueError:
        raise _bad_value(name, value, where, "a number of seconds") from None


# -- parsing --------------------------------------------------------------------------------


def split_url(
    url: str,
    *,
    name: str = "storage",
    schemes: Collection[str] | None = None,
    server: bool = True,
) -> SplitResult:
    """``urlsplit(url)`` after checking its scheme (when ``schemes`` is given, any case)
    and, for a ``server`` URL, that its host and port parse (so ``.port`` cannot fail
    later; a local path such as ``file://dir:x/y`` has no port to check).

    Raises:
        ConfigurationError: a malformed URL, host or port, or another scheme (``name``
            names the kind of URL expected; the message shows the URL redacted).
    """
    safe = redact_url(url)
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
        raise ConfigurationError(f"not a {name} URL: {safe!r}; expected {expected}")
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
        value = self.options.get(name)
        return default if value is None else parse_flag(name, value, self.where)

    def count(self, name: str, default: int) -> int:
        """Option ``name`` as a non-negative integer, or ``default`` if absent."""
        value = self.options.get(name)
        return default if value is None else parse_count(name, value, self.where)

    def seconds(self, name: str, default: float) -> float:
        """Option ``name`` as a number of seconds, or ``default`` if absent."""
        value = self.options.get(name)
        return default if value is None else parse_seconds(name, value, self.where)

    def driver_url(self, scheme: str | None = None) -> str:
        """The URL without the caller's options (and fragment), optionally re-schemed."""
        return urlunsplit(
            (
                scheme or self.parts.scheme,
                self.parts.netloc,
                self.parts.path,
                urlencode(self.rest),
                "",
            )
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

    Raises:
        ConfigurationError: a malformed URL, another scheme, or an option outside
            ``options`` and ``passthrough`` (the message lists the supported ones).
    """
    parts = split_url(url, name=name, schemes=schemes, server=server)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    safe = redact_url(url)
    if passthrough is not None:
        allowed = {*options, *passthrough}
        unknown = {key for key, _ in pairs if key not in allowed}
        if unknown:
            raise ConfigurationError(
                f"unsupported option(s) {', '.join(sorted(unknown))} in storage URL "
                f"{safe!r}; supported: {', '.join(sorted(allowed)) or 'none'}"
            )
    return StorageURL(
        parts=parts,
        options={key: value for key, value in pairs if key in options},
        rest=tuple((key, value) for key, value in pairs if key not in options),
        safe=safe,
    )


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
