"""DynamoDB storage URLs: parsing ``dynamodb://[KEY:SECRET@]TABLE?region=..&endpoint_url=..``
and redacting URLs for messages.

Parsing and redaction live here alone (no AWS SDK import), on top of what every storage
URL shares (:mod:`pyworkflow.storage.urls`: splitting, option checks, redaction). This
module adds the DynamoDB rules: the table is the host, the user-info holds AWS
credentials. A message about a URL quotes :func:`redact_url` of it, never a raw part of
it: the URL may carry an access key id and a secret key, and neither may reach an error
message or a log line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

from pyworkflow.core.exceptions import ConfigurationError
from pyworkflow.storage import urls
from pyworkflow.storage.dynamodb.table import (
    _TABLE_NAME,
    DEFAULT_REGION,
    DEFAULT_TABLE,
    TABLE_NAME_RULE,
)

_OPTIONS = ("region", "endpoint_url", "create_table")
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

    :func:`pyworkflow.storage.urls.redact_url`, conservative on purpose: the whole
    user-info goes, the access key id included, up to the *last* ``@`` wherever it is
    (an AWS secret key often contains ``/``; left unencoded it pushes part of the secret
    past the first ``/`` or ``?``); so does a host part that is not ``host[:port]`` (a
    ``KEY:SECRET`` that lost its ``@``), and so do the values of query parameters named
    like credentials (``...secret...``, ``...token...``, ``...access_key...``).
    """
    return urls.redact_url(url, keep_user=False, query_at=False)


def redact_text(text: str) -> str:
    """``text`` (e.g. an SDK error message) with every URL in it redacted."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def parse_url(url: str) -> DynamoDBURL:
    """The options of a ``dynamodb://`` URL. Error messages show the URL redacted.

    Raises:
        ConfigurationError: not a ``dynamodb://`` URL, a path after the table name,
            an unknown option, half a ``KEY:SECRET@`` pair, an invalid flag or an
            invalid table name.
    """
    # The redacted URL cannot show where a parse went wrong inside the credentials.
    hint = _ENCODE_HINT if "@" in url else ""
    try:
        parsed = urls.parse_url(
            url,
            name="DynamoDB",
            schemes=("dynamodb",),
            options=_OPTIONS,
            server=False,
            redact=redact_url,
        )
        create_table = parsed.flag("create_table", True)
    except ConfigurationError as exc:
        raise ConfigurationError(exc.message + hint, **exc.metadata) from None

    def fail(problem: str) -> ConfigurationError:
        return ConfigurationError(f"{problem}; got {parsed.safe!r}{hint}")

    if parsed.parts.path.strip("/"):
        raise fail("DynamoDB URL takes the table as its host, not a path: use dynamodb://TABLE")
    userinfo, _, host = parsed.parts.netloc.rpartition("@")
    credentials = _credentials(userinfo, fail) if userinfo else None
    table_name = unquote(host) or DEFAULT_TABLE
    if not _TABLE_NAME.match(table_name):
        raise fail(f"invalid DynamoDB table name in the URL ({TABLE_NAME_RULE})")
    return DynamoDBURL(
        table_name,
        parsed.options.get("region") or DEFAULT_REGION,
        parsed.options.get("endpoint_url") or None,
        create_table,
        credentials,
    )


def _credentials(userinfo: str, fail: Callable[[str], ConfigurationError]) -> tuple[str, str]:
    key, sep, secret = userinfo.partition(":")
    if not sep or not key or not secret:
        raise fail(
            "DynamoDB URL credentials must be KEY:SECRET@ (both parts), or omitted to use "
            "the standard AWS credential chain"
        )
    return unquote(key), unquote(secret)
