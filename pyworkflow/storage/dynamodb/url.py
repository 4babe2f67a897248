"""DynamoDB storage URLs: ``dynamodb://[KEY:SECRET@]TABLE?region=..&endpoint_url=..&create_table=..``.

Parsing lives here alone (no AWS SDK import), so the backend only turns the parsed
options into a session and a client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from pyworkflow.core.exceptions import ConfigurationError
from pyworkflow.storage.dynamodb.table import DEFAULT_REGION, DEFAULT_TABLE

_OPTIONS = frozenset({"region", "endpoint_url", "create_table"})
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


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


def parse_url(url: str) -> DynamoDBURL:
    """The options of a ``dynamodb://`` URL.

    Raises:
        ConfigurationError: not a ``dynamodb://`` URL, a path after the table name,
            an unknown option, half a ``KEY:SECRET@`` pair, or an invalid flag.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "dynamodb":
        raise ConfigurationError(f"not a DynamoDB URL: expected dynamodb://TABLE, got {url!r}")
    if parts.path.strip("/"):
        raise ConfigurationError(
            f"DynamoDB URL takes the table as its host, not a path: "
            f"use dynamodb://TABLE?region=..., got path {parts.path!r}"
        )
    params = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(params) - _OPTIONS
    if unknown:
        raise ConfigurationError(
            f"unsupported option(s) {', '.join(sorted(unknown))} in DynamoDB URL; "
            f"supported: {', '.join(sorted(_OPTIONS))}"
        )
    options = {name: values[-1] for name, values in params.items()}
    userinfo, _, host = parts.netloc.rpartition("@")
    credentials = None
    if userinfo:
        key, sep, secret = userinfo.partition(":")
        if not sep or not key or not secret:
            raise ConfigurationError(
                "DynamoDB URL credentials must be KEY:SECRET@ (both parts), or omitted "
                "to use the standard AWS credential chain"
            )
        credentials = (unquote(key), unquote(secret))
    return DynamoDBURL(
        unquote(host) or DEFAULT_TABLE,
        options.get("region") or DEFAULT_REGION,
        options.get("endpoint_url") or None,
        _flag("create_table", options.get("create_table", "true")),
        credentials,
    )


def _flag(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigurationError(f"DynamoDB URL option {name}={value!r} must be true or false")
