"""DynamoDB storage URLs: parsing ``dynamodb://[KEY:SECRET@]TABLE?region=..&endpoint_url=..``
and redacting URLs for messages.

Parsing and redaction live here alone (no AWS SDK import). A message about a URL quotes
:func:`redact_url` of it, never a raw part of it: the URL may carry an access key id and
a secret key, and neither may reach an error message or a log line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from pyworkflow.core.exceptions import ConfigurationError
from pyworkflow.storage.dynamodb.table import (
    _TABLE_NAME,
    DEFAULT_REGION,
    DEFAULT_TABLE,
    TABLE_NAME_RULE,
)

_OPTIONS = frozenset({"region", "endpoint_url", "create_table"})
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

REDACTED = "***"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# A host part that is plainly a host: name or [IPv6], with an optional numeric port.
_HOST_PORT = re.compile(r"(\[[^\]/?#@]*\]|[^:/?#@\[\]]*)(:\d*)?")
_QUERY_VALUE = re.compile(r"([?&;]([^=&;#]*)=)([^&;#]*)")
_SECRET_NAME = re.compile(r"secret|token|passw|pwd|key|credential|signature|auth", re.IGNORECASE)
_ENCODE_HINT = " (URL-encode any '/', '?', '#', '@' or ':' in KEY and SECRET)"
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


@dataclass(frozen=True, slots=True)
class DynamoDBURL:
    """The options a ``dynamodb://`` URL names.

    Attributes:
        table_name: the table (the URL's host; ``pyworkflow`` when empty).
        region: the AWS region.
        endpoint_url: a non-AWS endpoint, or ``None``.
        create_table: whether to create a missing table.
        credentials: ``(access key id, secret key)`` from ``KEY:SECRET@``, else ``None``
            (the standard AWS credential chain). Left out of the repr.
    """

    table_name: str
    region: str
    endpoint_url: str | None
    create_table: bool
    credentials: tuple[str, str] | None = field(default=None, repr=False)


def redact_url(url: str) -> str:
    """``url`` with every part that may hold a credential replaced by ``***``.

    Conservative on purpose: everything from ``://`` up to the *last* ``@`` goes (an AWS
    secret key often contains ``/``; left unencoded it pushes part of the secret past the
    first ``/`` or ``?``), so does a host part that is not ``host[:port]`` (a
    ``KEY:SECRET`` that lost its ``@``), and so do the values of query parameters named
    like credentials (``...secret...``, ``...token...``, ``...key...``). Text that does
    not start with ``scheme://`` is hidden whole.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return REDACTED
    if "@" in rest:
        rest = f"{REDACTED}@{rest.rpartition('@')[2]}"
    else:
        host = re.split(r"[/?#]", rest, maxsplit=1)[0]
        if not _HOST_PORT.fullmatch(host):
            rest = REDACTED + rest[len(host) :]
    return f"{scheme}://{_QUERY_VALUE.sub(_redact_value, rest)}"


def redact_text(text: str) -> str:
    """``text`` (e.g. an SDK error message) with every URL in it redacted."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def _redact_value(match: re.Match[str]) -> str:
    if _SECRET_NAME.search(unquote(match.group(2))):
        return match.group(1) + REDACTED
    return match.group(0)


def parse_url(url: str) -> DynamoDBURL:
    """The options of a ``dynamodb://`` URL. Error messages show the URL redacted.

    Raises:
        ConfigurationError: not a ``dynamodb://`` URL, a path after the table name,
            an unknown option, half a ``KEY:SECRET@`` pair, an invalid flag or an
            invalid table name.
    """
    shown = redact_url(url)
    # The redacted URL cannot show where a parse went wrong inside the credentials.
    hint = _ENCODE_HINT if "@" in url else ""

    def fail(problem: str) -> ConfigurationError:
        return ConfigurationError(f"{problem}; got {shown!r}{hint}")

    parts = urlsplit(url)
    if parts.scheme.lower() != "dynamodb":
        raise fail("not a DynamoDB URL: expected dynamodb://TABLE")
    if parts.path.strip("/"):
        raise fail("DynamoDB URL takes the table as its host, not a path: use dynamodb://TABLE")
    options = _options(parts.query, shown, fail)
    userinfo, _, host = parts.netloc.rpartition("@")
    credentials = _credentials(userinfo, fail) if userinfo else None
    create_table = options.get("create_table", "true").lower()
    if create_table not in _TRUE | _FALSE:
        raise fail("DynamoDB URL option create_table must be true or false")
    table_name = unquote(host) or DEFAULT_TABLE
    if not _TABLE_NAME.match(table_name):
        raise fail(f"invalid DynamoDB table name in the URL ({TABLE_NAME_RULE})")
    return DynamoDBURL(
        table_name,
        options.get("region") or DEFAULT_REGION,
        options.get("endpoint_url") or None,
        create_table in _TRUE,
        credentials,
    )


def _options(query: str, shown: str, fail: Callable[[str], ConfigurationError]) -> dict[str, str]:
    params = parse_qs(query, keep_blank_values=True)
    unknown = set(params) - _OPTIONS
    if unknown:
        # Name only the options the redacted URL still shows: text before the last "@"
        # may be part of a secret.
        visible = parse_qs(urlsplit(shown).query, keep_blank_values=True)
        names = "".join(f"{n} " for n in sorted(unknown) if n in visible)
        supported = ", ".join(sorted(_OPTIONS))
        raise fail(f"unsupported option(s) {names}in DynamoDB URL; supported: {supported}")
    return {name: values[-1] for name, values in params.items()}


def _credentials(userinfo: str, fail: Callable[[str], ConfigurationError]) -> tuple[str, str]:
    key, sep, secret = userinfo.partition(":")
    if not sep or not key or not secret:
        raise fail(
            "DynamoDB URL credentials must be KEY:SECRET@ (both parts), or omitted to use "
            "the standard AWS credential chain"
        )
    return unquote(key), unquote(secret)
